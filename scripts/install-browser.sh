#!/usr/bin/env bash
# Install Debian's Chromium and its WebDriver for the end-to-end browser test.
# Idempotent and quiet; never fails the build: without apt (or root) the e2e test skips and says why.
set -u

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-browser: apt-get not found; the browser test will be skipped" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "install-browser: not root and no sudo; the browser test will be skipped" >&2
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
log="$(mktemp -t install-browser.XXXXXX)"
if { $SUDO apt-get update -qq && \
     $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver; } >"$log" 2>&1; then
    echo "install-browser: installed $(/usr/bin/chromium --version 2>/dev/null | head -n1)" >&2
else
    echo "install-browser: apt-get failed (last lines below); the browser test will be skipped" >&2
    tail -n 5 "$log" >&2
fi
rm -f "$log"
exit 0
