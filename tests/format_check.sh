#!/usr/bin/env bash
# The .clang-format check of the test command: every C++ file of the project is as clang-format
# writes it (a table that reads better aligned is fenced with // clang-format off). Prints the
# files that differ and how to fix them. Usage: format_check.sh SOURCE_ROOT
set -euo pipefail
cd "$1"
if ! command -v clang-format >/dev/null; then
  echo "clang-format is missing: run tools/setup.sh test" >&2
  exit 1
fi
mapfile -t files < <(find autograd nn tools examples tests bench fuzz playground \
  -path '*/node_modules' -prune -o \( -name '*.cpp' -o -name '*.hpp' \) -print | sort)
bad=()
for f in "${files[@]}"; do
  clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
echo "${#files[@]} files checked, ${#bad[@]} not formatted"
if ((${#bad[@]})); then
  printf '  %s\n' "${bad[@]}"
  echo "fix with: clang-format -i ${bad[*]}"
  exit 1
fi
