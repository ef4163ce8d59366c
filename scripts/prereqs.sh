#!/usr/bin/env bash
# System packages flotilla's build needs, installed with apt-get when missing: OpenSSL
# headers for the git2 crate (found through pkg-config), and make and a C compiler for
# jemalloc, the `flotilla` binary's allocator, which is built from source.
set -euo pipefail
missing=()
pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev pkg-config)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v cc >/dev/null 2>&1 || missing+=(gcc)
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1; then
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -q && $sudo_cmd apt-get install -y -q "${missing[@]}"
  else
    echo "prereqs: install ${missing[*]}" >&2
    exit 1
  fi
fi
