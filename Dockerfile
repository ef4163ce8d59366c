# syntax=docker/dockerfile:1
# The flotilla image: `flotilla node` with helm and kustomize for Helm and Kustomize sources.
#
#   docker build -t registry.example.com/flotilla:0.1.0 .
#
# The tools come from their official release tarballs. Pin them by passing the SHA-256 of
# each tarball (published next to it):
#   --build-arg HELM_SHA256=<sha256> --build-arg KUSTOMIZE_SHA256=<sha256>
# Without them the downloads are not verified.

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# --- build -----------------------------------------------------------------------------
FROM ${RUST_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release -p flotilla-node --locked \
 && install -m 0755 target/release/flotilla /usr/local/bin/flotilla

# --- tools -----------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS tools
ARG TARGETARCH=amd64
ARG HELM_VERSION=v4.1.4
ARG HELM_URL=https://get.helm.sh/helm-${HELM_VERSION}-linux-${TARGETARCH}.tar.gz
ARG HELM_SHA256=
ARG KUSTOMIZE_VERSION=v5.5.0
ARG KUSTOMIZE_URL=https://github.com/kubernetes-sigs/kustomize/releases/download/kustomize%2F${KUSTOMIZE_VERSION}/kustomize_${KUSTOMIZE_VERSION}_linux_${TARGETARCH}.tar.gz
ARG KUSTOMIZE_SHA256=
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /tools
RUN set -eu; \
    fetch() { \
      curl -fsSL -o "$1" "$2"; \
      if [ -n "$3" ]; then echo "$3  $1" | sha256sum -c -; \
      else echo "warning: $2 not verified (no checksum given)" >&2; fi; \
    }; \
    fetch helm.tgz "$HELM_URL" "$HELM_SHA256"; \
    tar -xzf helm.tgz --strip-components=1 "linux-${TARGETARCH}/helm"; \
    fetch kustomize.tgz "$KUSTOMIZE_URL" "$KUSTOMIZE_SHA256"; \
    tar -xzf kustomize.tgz kustomize; \
    chmod 0755 helm kustomize; \
    ./helm version --short; ./kustomize version

# --- runtime ---------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 flotilla \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/flotilla --shell /usr/sbin/nologin flotilla \
 && install -d -o 10001 -g 10001 /var/lib/flotilla
COPY --from=tools /tools/helm /tools/kustomize /usr/local/bin/
COPY --from=build /usr/local/bin/flotilla /usr/local/bin/flotilla
USER 10001:10001
ENV HOME=/tmp
# 7000 peers (Raft), 7001 flotilla.v1 API, 8080 metrics, probes and webhooks.
EXPOSE 7000 7001 8080
VOLUME ["/var/lib/flotilla"]
ENTRYPOINT ["flotilla", "node"]
