#!/usr/bin/env bash
# The main demo: the quickstart program's circuit, f = (x + y) * z.
set -euo pipefail
cd "$(dirname "$0")/.."
build/examples/quickstart
