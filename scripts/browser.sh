#!/usr/bin/env bash
# Makes sure a Chromium is installed for the inbox page's browser test
# (tests/devstack/test_inbox_page.py), installing Debian's package only when none is on PATH.
# CHROMIUM names another binary to use instead.
set -euo pipefail

log() { echo "browser: $*" >&2; }

apt_install() {
  if [ "$(id -u)" != 0 ]; then
    log "need root to install $*; install Debian's chromium, or set CHROMIUM to a Chromium binary"
    exit 1
  fi
  log "installing $* from Debian's packages"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if [ -n "${CHROMIUM:-}" ]; then
  [ -x "$CHROMIUM" ] && exit 0
  log "CHROMIUM=$CHROMIUM is not an executable"; exit 1
fi
command -v chromium >/dev/null || apt_install chromium
