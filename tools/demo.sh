#!/usr/bin/env bash
# The main demo: the lecture's headline result. The 11-layer XOR net with sigmoid
# hidden layers stalls at accuracy 0.5; the same net with ReLU solves it; the
# per-layer gradient norms show why. Ends with the paths of the pictures it drew.
set -euo pipefail
cd "$(dirname "$0")/.."
build/examples/deep_xor --out "$PWD/build/demo"
