#!/usr/bin/env bash
# Installs the Debian packages tapegrad needs (only the missing ones), then
# configures and builds into build/. With an argument it goes on:
#   tools/setup.sh demo   runs the main demo
#   tools/setup.sh playground   builds the playground's page (build-wasm/, with emscripten) and
#                         writes it to build/playground.html, to open in any browser
#   tools/setup.sh bench  also installs the benchmarks' peers (libtorch-dev, python3-torch) and
#                         builds bench/ with the LibTorch peer (bench/README.md)
#   tools/setup.sh test   builds the playground (build-wasm/) and runs every test, then the
#                         core's tests in a build without BLAS and Graphviz (build-core/),
#                         then the suite again under ASan+UBSan
#                         (build-asan/), then the CLI tests with tapegrad under valgrind's
#                         memcheck, then each fuzz target for 40 s (build-fuzz/, fuzz/README.md)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  g++ meson ninja-build pkg-config cmake python3   # toolchain; cmake lets meson find doctest
  libfmt-dev doctest-dev libcli11-dev              # fmt, tests, command line
  libgraphviz-dev fonts-dejavu-core                # cgraph + gvc (PNG text needs a font)
  libopenblas-dev                                  # matmul for tensors
  libbenchmark-dev                                 # bench/
  nlohmann-json3-dev                               # checkpoint headers (safetensors JSON)
  zlib1g-dev dataset-fashion-mnist                 # gzip IDX files; Fashion-MNIST for nn
  gnuplot-nox                                      # the examples' plots
)
# Only the tests need these: PyTorch (checkpoints must load into torch.nn) is large, so a plain
# build does without it; chromium and Node.js play the step-through page in a real browser (a
# Node.js from elsewhere brings its own npm, which Debian's npm package would conflict with);
# valgrind checks the CLI's memory; clang builds the fuzz targets (fuzz/); clang-format checks
# that every C++ file is formatted (.clang-format, tests/format_check.sh).
test_packages=(python3-torch chromium valgrind clang libclang-rt-14-dev clang-format)
# The playground (playground/, build-wasm/): emscripten, its optimizer needing node-acorn, and
# npm for @viz-js/viz. The test command builds it too, for its browser test.
playground_packages=(emscripten node-acorn)
if ! command -v npm >/dev/null; then playground_packages+=(nodejs npm); fi
# The peers bench/torch_compare measures against: LibTorch's C++ frontend and PyTorch (large, so
# only this mode installs them).
bench_packages=(libtorch-dev python3-torch)
case "${1:-build}" in
  build | demo) ;;
  playground) packages+=("${playground_packages[@]}") ;;
  bench) packages+=("${bench_packages[@]}") ;;
  test) packages+=("${test_packages[@]}" "${playground_packages[@]}") ;;
  *) echo "usage: tools/setup.sh [build|demo|playground|bench|test]" >&2; exit 2 ;;
esac

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

quietly() {  # runs a command, showing its output only when it fails (compiler errors included)
  local log
  if ! log=$("$@" 2>&1); then
    printf '%s\n' "$log" >&2
    echo "setup: failed: $*" >&2
    exit 1
  fi
}

configure() {  # configure() DIR [meson options...]: set up once, then just rebuild
  local dir=$1; shift
  if [ ! -f "$dir/build.ninja" ]; then quietly meson setup "$dir" "$@"; fi
  quietly meson compile -C "$dir"
}
npm_ci() {  # npm_ci DIR: the npm packages DIR's package-lock.json pins, once
  if [ ! -d "$1/node_modules" ]; then
    echo "setup: npm ci in $1"
    quietly npm ci --prefix "$1" --no-audit --no-fund
  fi
}
configure build

case "${1:-build}" in
  build) ;;
  demo) bash tools/demo.sh ;;
  bench)
    # meson looks for LibTorch when it configures: a build/ set up before libtorch-dev was
    # installed must be configured again to gain the peer's target.
    quietly meson setup --reconfigure build
    quietly ninja -C build bench/scalar_bench bench/tensor_bench bench/torch_compare \
      bench/torch_compare_libtorch bench/hvp_compare
    echo "setup: benchmarks built; run ./build/bench/torch_compare (bench/README.md)"
    ;;
  playground)
    # The page (playground/README.md): the core and the program language compiled by emscripten,
    # in a build directory of its own; then tapegrad copies it where a browser can open it.
    npm_ci playground
    configure build-wasm --cross-file playground/emscripten.ini
    build/tools/tapegrad playground -o build/playground.html
    echo "setup: open build/playground.html in a browser (it needs no network)"
    ;;
  test)
    # Every pass runs even if one fails; one closing line counts them together.
    passed=0 failed=0 skipped=0 status=0
    count() {  # adds the test run just made in build dir $1 (with test setup $2) to the totals
      local p f s
      read -r p f s < <(grep -o '"result": "[A-Z]*"' "$1/meson-logs/testlog${2:+-$2}.json" |
        awk -F'"' '{ if ($4 == "OK") p++; else if ($4 == "SKIP") s++; else f++ }
                   END { print p + 0, f + 0, s + 0 }')
      passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
    }
    npm_ci tests/browser
    npm_ci playground
    # The playground's page, which the browser test opens (playground/README.md): the core and
    # the program language compiled by emscripten, in a build directory of its own.
    configure build-wasm --cross-file playground/emscripten.ini
    meson test -C build --print-errorlogs || status=1
    count build
    # The core alone, as the WebAssembly playground compiles it: no BLAS and no Graphviz
    # (build-core/). Its tests run every product through the packed kernel, wide ones too.
    configure build-core -Dblas=disabled -Dgraphviz=disabled
    meson test -C build-core --print-errorlogs || status=1
    count build-core
    configure build-asan --buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false
    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
      meson test -C build-asan --print-errorlogs || status=1
    count build-asan
    # The CLI tests with every tapegrad command (plain build) under valgrind: an error or a leak
    # outside Graphviz's font stack (tests/valgrind.supp) fails them with valgrind's report.
    meson test -C build --setup valgrind --print-errorlogs cli train_cli || status=1
    count build valgrind
    # The fuzz targets (fuzz/README.md), clang++ with ASan and UBSan in build-fuzz/: each runs
    # TAPEGRAD_FUZZ_SECONDS (40; 0 skips them) and counts as one test, failed on a finding.
    fuzz_targets=(program graph csv idx safetensors)
    if [ "${TAPEGRAD_FUZZ_SECONDS:-40}" != 0 ]; then
      if [ ! -f build-fuzz/build.ninja ]; then
        quietly env CXX=clang++ meson setup build-fuzz -Dfuzz=true -Dtests=disabled \
          --buildtype=debugoptimized -Db_sanitize=address,undefined -Db_lundef=false \
          -Ddefault_library=static
      fi
      quietly meson compile -C build-fuzz "${fuzz_targets[@]/#/fuzz_}"
      findings=0
      bash fuzz/run.sh build-fuzz "${fuzz_targets[@]}" || findings=$?
      passed=$((passed + ${#fuzz_targets[@]} - findings)) failed=$((failed + findings))
      if ((findings)); then status=1; fi
    fi
    line="tests: $passed passed, $failed failed"
    if ((skipped)); then line+=", $skipped skipped"; fi
    echo "$line"
    exit $status
    ;;
esac
