#!/usr/bin/env bash
# Runs libFuzzer targets of a -Dfuzz=true build for a bounded time each, two at a time (the
# machine has two cores), from the seeds in fuzz/corpus/. Prints one line per target with its
# executions; on a finding, the end of its log and the reproducer. Exits with the number of
# targets that had a finding. tools/setup.sh test runs it; see fuzz/README.md.
#   fuzz/run.sh BUILD_DIR TARGET...     each for TAPEGRAD_FUZZ_SECONDS (default 40) seconds
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
build=$1
shift
seconds=${TAPEGRAD_FUZZ_SECONDS:-40}
out=$build/fuzz-run  # per target: its log, the corpus it grew, its findings
mkdir -p "$out/findings"

# The limits a finding is measured against (fuzz/README.md): one allocation over 256 MiB means a
# size taken on trust; 10 s for one input is a hang. Inputs are up to 4 KiB, except where size
# is the problem to find: programs whose graphs reach the drawing budget (1000 nodes take about
# 2 KiB of program, 10 KiB any program must stay fast at) and checkpoint headers near the
# parser's limits.
limits=(-rss_limit_mb=2048 -malloc_limit_mb=256 -timeout=10)
declare -A max_len=([graph]=16384 [safetensors]=65536)
# libFuzzer grows its inputs slowly (about 200 bytes in a minute): these try long ones at once.
declare -A len_control=([graph]=0 [safetensors]=0)
# A target fed the seeds and tokens of another.
declare -A seeds_of=([graph]=program)

run_one() {
  local t=$1
  local log=$out/$t.log dict=() seeds=${seeds_of[$1]:-$1}
  if [ -f "fuzz/$seeds.dict" ]; then dict=(-dict="fuzz/$seeds.dict"); fi
  mkdir -p "$out/corpus/$t"
  # Graphviz's font stack keeps what it caches for the process; LeakSanitizer is told which
  # leaks are theirs (fuzz/lsan.supp).
  if LSAN_OPTIONS=suppressions=fuzz/lsan.supp "$build/fuzz/fuzz_$t" "$out/corpus/$t" \
      "fuzz/corpus/$seeds" "${dict[@]}" "${limits[@]}" \
      -max_len="${max_len[$t]:-4096}" -len_control="${len_control[$t]:-100}" \
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
