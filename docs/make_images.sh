#!/usr/bin/env bash
# Remakes the README's two pictures from a build: the lecture-style graph of CS231n's circuit
# (tapegrad dot) and a screenshot of its step-through page at backward's first step (tapegrad
# html in Debian's chromium, driven by playwright-core as tests/browser drives it: run
# tools/setup.sh test first, which installs both). Usage: bash docs/make_images.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
tapegrad=${1:-build}/tools/tapegrad
"$tapegrad" dot 'q = x + y; f = q * z' x=-2 y=5 z=-4 -o docs/images/cs231n.png
node tests/browser/readme_screenshot.mjs "$tapegrad" docs/images/step_page.png
