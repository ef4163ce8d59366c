#!/usr/bin/env bash
# System packages flotilla's build needs (OpenSSL headers for the git2 crate, found through
# pkg-config), installed with apt-get when missing.
set -euo pipefail
if ! pkg-config --exists openssl 2>/dev/null; then
  if command -v apt-get >/dev/null 2>&1; then
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -q && $sudo_cmd apt-get install -y -q libssl-dev pkg-config
  else
    echo "prereqs: install the OpenSSL development headers and pkg-config" >&2
    exit 1
  fi
fi
