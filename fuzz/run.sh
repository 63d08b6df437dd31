#!/usr/bin/env bash
# Runs libFuzzer targets of a -Dfuzz=true build for a bounded time each, two at a time (the
# machine has two cores), from the seeds in fuzz/corpus/. Prints one line per target with its
# executions; on a finding, the end of its log and the reproducer. Exits with the number of
# targets that had a finding. tools/setup.sh test runs it; see fuzz/README.md.
#   fuzz/run.sh BUILD_DIR TARGET...     each for TAPEGRAD_FUZZ_SECONDS (default 60) seconds
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
build=$1
shift
seconds=${TAPEGRAD_FUZZ_SECONDS:-60}
out=$build/fuzz-run  # per target: its log, the corpus it grew, its findings
mkdir -p "$out/findings"

# The limits a finding is measured against (fuzz/README.md): inputs up to 4 KiB, so one
# allocation over 256 MiB means a size taken on trust; 10 s for one input is a hang.
limits=(-max_len=4096 -rss_limit_mb=2048 -malloc_limit_mb=256 -timeout=10)

run_one() {
  local t=$1
  local log=$out/$t.log dict=()
  if [ -f "fuzz/$t.dict" ]; then dict=(-dict="fuzz/$t.dict"); fi
  mkdir -p "$out/corpus/$t"
  if "$build/fuzz/fuzz_$t" "$out/corpus/$t" "fuzz/corpus/$t" "${dict[@]}" "${limits[@]}" \
      -max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="$out/findings/$t-" \
      >"$log" 2>&1; then
    local runs
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    echo "fuzz $t: ${runs:-?} executions in $seconds s, no finding"
    return 0
  fi
  local reproducer
  reproducer=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
  {
    tail -n 60 "$log"
    echo "fuzz $t: FINDING (log $log); reproduce with $build/fuzz/fuzz_$t ${reproducer:-<no reproducer written>}"
  } >&2
  return 1
}

findings=0
while (($#)); do
  pids=()
  for t in "${@:1:2}"; do
    run_one "$t" &
    pids+=($!)
  done
  shift "${#pids[@]}"
  for p in "${pids[@]}"; do wait "$p" || findings=$((findings + 1)); done
done
exit "$findings"
