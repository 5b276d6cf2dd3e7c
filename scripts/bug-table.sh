#!/usr/bin/env bash
# The simulator must catch deliberately broken variants of raft-core. For each variant, build
# raft-sim with RUSTFLAGS='--cfg raft_bug="NAME"', explore seeds 0..N, and report the first
# failing seed, how many seeds failed and which property caught it; then check that the
# unmodified build passes the same seeds. Prints a markdown table; exits 1 if a variant escapes
# or the unmodified build fails.
#
#   scripts/bug-table.sh            # seeds 0..1000, every variant
#   scripts/bug-table.sh 200 ack_before_persist count_duplicate_votes
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${1:-1000}
shift || true
VARIANTS=("$@")
if [ ${#VARIANTS[@]} -eq 0 ]; then
  VARIANTS=(vote_without_up_to_date_check commit_previous_term_by_counting truncate_on_stale_append ack_before_persist count_duplicate_votes)
fi

explore() { # $1 = binary
  "$1" explore --seeds "0..$SEEDS" --quiet --no-shrink || true
}

status=0
rows=()
for bug in "${VARIANTS[@]}"; do
  dir="target/bug-$bug"
  echo "building raft-sim with raft_bug=\"$bug\"..." >&2
  RUSTFLAGS="--cfg raft_bug=\"$bug\"" CARGO_TARGET_DIR="$dir" cargo build --profile quick-release -p raft-sim >&2
  out=$(explore "$dir/quick-release/raft-sim")
  count=$(sed -n 's/^violations: \([0-9]*\).*/\1/p' <<<"$out")
  first=$(sed -n 's/^VIOLATION (seed \([0-9]*\)): \(.*\)$/\1|\2/p' <<<"$out")
  if [ -z "$first" ]; then
    rows+=("| \`$bug\` | not caught | 0 | - |")
    status=1
  else
    seed=${first%%|*}
    property=${first#*|}
    rows+=("| \`$bug\` | $((seed + 1)) | $count of $SEEDS | $property |")
  fi
  echo "$bug: ${count:-0} violations, first: ${first:-none}" >&2
done

echo "checking the unmodified build on the same seeds..." >&2
cargo build --profile quick-release -p raft-sim >&2
clean=$(explore target/quick-release/raft-sim)
clean_count=$(sed -n 's/^violations: \([0-9]*\).*/\1/p' <<<"$clean")
[ "$clean_count" = "0" ] || status=1

echo
echo "| variant (\`--cfg raft_bug=...\`) | seeds until caught | failing seeds | property that caught it first |"
echo "|---|---:|---:|---|"
printf '%s\n' "${rows[@]}"
echo "| unmodified raft-core | - | $clean_count of $SEEDS | - |"
exit $status
