#!/usr/bin/env bash
# Runs every shell command of the user documentation, as written, in a fast
# variant, so that no command in the docs can rot.
#   Commands: every line of every ```sh block in README.md and docs/*.md
#   (a line ending in \ continues on the next).
#   Fast variant (the only changes): training/sampling sizes shrink
#   (--steps N -> 3, --n N -> 16, --ref-n N -> 64, --ref-steps N -> 6,
#   --calls N -> 2), the C examples get --fast, `make demo` runs with
#   DEMO_SCALE=0.01, and every out/ path goes to $BUILD/docs_out/ so a
#   user's own out/ is left alone.
#   Not run (CI runs them itself): apt-get (a line "apt-get ... && CMD" runs
#   CMD) and `make test ...`.
# Usage: tests/docs_commands.sh [BUILD_DIR]    (BUILD_DIR must be `build`
# unless you also pass the docs' build/ paths through; default build)
# Prints "docs_commands: N passed, M failed"; exit 1 on any failure.
set -u
cd "$(dirname "$0")/.."
build=${1:-build}
work="$build/docs_out"
rm -rf "$work"; mkdir -p "$work"
docs=(README.md docs/*.md)
pass=0; fail=0; skip=0
list=$(mktemp); trap 'rm -f "$list"' EXIT

# 1. extract: "file<TAB>command" per command
for f in "${docs[@]}"; do
  awk -v F="$f" '
    /^```sh[ \t]*$/ { inside = 1; cmd = ""; next }
    /^```/ { inside = 0; next }
    inside {
      line = $0
      if (line ~ /\\$/) { sub(/\\$/, "", line); cmd = cmd line; next }
      cmd = cmd line
      if (cmd ~ /^[ \t]*(#.*)?$/) { cmd = ""; next }
      print F "\t" cmd; cmd = ""
    }' "$f"
done > "$list"

# 2. run each in the repository root
while IFS=$'\t' read -r file cmd; do
  # "apt-get install ... && rest": the packages are CI's business, run the rest
  if [[ "$cmd" =~ ^[[:space:]]*apt-get[^\&]*\&\&[[:space:]]*(.*)$ ]]; then
    cmd=${BASH_REMATCH[1]}
  fi
  case "$cmd" in
    *apt-get*|"make test"*|*" make test"*)
      echo "-- skip ($file): $cmd"; skip=$((skip+1)); continue;;
  esac
  fast=$(printf '%s' "$cmd" | sed -E \
      -e 's#(^|[ $/=])out/#\1'"$work"'/#g' \
      -e 's#--steps [0-9]+#--steps 3#g' -e 's#--n [0-9]+#--n 16#g' \
      -e 's#--ref-n [0-9]+#--ref-n 64#g' -e 's#--ref-steps [0-9]+#--ref-steps 6#g' \
      -e 's#--calls [0-9]+#--calls 2#g' \
      -e 's#build/examples/(tutorial|toy2d/toy2d)( |$)#build/examples/\1 --fast\2#' \
      -e 's#(^|&& )make demo#\1DEMO_SCALE=0.01 DEMO_OUT='"$work"'/demo make demo#')
  echo "-- run ($file): $fast"
  if out=$(bash -c "$fast" 2>&1); then
    pass=$((pass+1))
  else
    echo "$out" | tail -20
    echo "!! FAILED ($file): $cmd"
    fail=$((fail+1))
  fi
done < "$list"
echo "docs_commands: $pass passed, $fail failed ($skip skipped)"
[ $fail -eq 0 ]
