#!/usr/bin/env bash
# Install Debian's Chromium and its WebDriver for the end-to-end browser test.
# Idempotent and quiet; never fails the build: without apt (or root) the e2e test skips and says why.
set -u

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
here="$(cd "$(dirname "$0")" && pwd)"
if [ "$(bash "$here/apt-install.sh" install-browser "the browser test" chromium chromium-driver)" = installed ]; then
    echo "install-browser: installed $(/usr/bin/chromium --version 2>/dev/null | head -n1)" >&2
fi
exit 0
