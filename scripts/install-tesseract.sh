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
here="$(cd "$(dirname "$0")" && pwd)"
if [ "$(bash "$here/apt-install.sh" install-tesseract "the tesseract OCR tests" \
        tesseract-ocr-fra tesseract-ocr-eng tesseract-ocr-osd)" = installed ]; then
    echo "install-tesseract: installed $(ls "$TESSDATA" 2>/dev/null | tr '\n' ' ')" >&2
fi
exit 0
