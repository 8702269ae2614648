#!/usr/bin/env bash
# Install Debian's Tesseract language data (French, English, orientation) for the `tesseract` OCR
# engine (`prodcat ocr --engine tesseract`; the `ocr` extra's tesserocr wheel brings the library
# itself, not the trained data). Idempotent and quiet; never fails the build: without apt (or
# root) the tesseract tests skip and say why.
set -u

TESSDATA=/usr/share/tesseract-ocr/5/tessdata
if [ -f "$TESSDATA/fra.traineddata" ] && [ -f "$TESSDATA/eng.traineddata" ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-tesseract: apt-get not found; the tesseract OCR tests will be skipped" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "install-tesseract: not root and no sudo; the tesseract OCR tests will be skipped" >&2
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
log="$(mktemp -t install-tesseract.XXXXXX)"
if { $SUDO apt-get update -qq && \
     $SUDO apt-get install -y -qq --no-install-recommends \
         tesseract-ocr-fra tesseract-ocr-eng tesseract-ocr-osd; } >"$log" 2>&1; then
    echo "install-tesseract: installed $(ls "$TESSDATA" 2>/dev/null | tr '\n' ' ')" >&2
else
    echo "install-tesseract: apt-get failed (last lines below); the tesseract OCR tests will be skipped" >&2
    tail -n 5 "$log" >&2
fi
rm -f "$log"
exit 0
