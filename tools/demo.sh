#!/usr/bin/env bash
# The main demo: the CS231n circuit f = (x + y) * z stepped through backward,
# chain rule by chain rule, with its computation graph written as SVG.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p build/demo
build/tools/tapegrad step 'q = x + y; f = q * z' x=-2 y=5 z=-4 -o "$PWD/build/demo/cs231n.svg"
