#!/usr/bin/env bash
# apt-install.sh NAME WHAT PACKAGE...: install Debian packages a test needs, quietly; never fails
# the build. NAME prefixes the messages; WHAT names the tests that skip (and say why) when apt, or
# root, is missing or the install fails. Exit status: 0 always; prints "installed" on success.
set -u
name="$1"; what="$2"; shift 2

if ! command -v apt-get >/dev/null 2>&1; then
    echo "$name: apt-get not found; $what will be skipped" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "$name: not root and no sudo; $what will be skipped" >&2
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
log="$(mktemp -t "$name.XXXXXX")"
if { $SUDO apt-get update -qq && \
     $SUDO apt-get install -y -qq --no-install-recommends "$@"; } >"$log" 2>&1; then
    echo installed
else
    echo "$name: apt-get failed (last lines below); $what will be skipped" >&2
    tail -n 5 "$log" >&2
fi
rm -f "$log"
exit 0
