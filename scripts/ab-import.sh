#!/bin/sh
# A/B of two veritree builds on the same layouts, interleaved (A B A B ...), on tmpfs, each
# import into a fresh store. Prints the median and spread of each, and B/A.
#   scripts/ab-import.sh A_ROOT B_ROOT RUNS LAYOUT:REF [LAYOUT:REF ...]
# A_ROOT, B_ROOT: checkouts with dist/ built. Stores go to ${AB_WORK:-/dev/shm/veritree-ab}.
set -eu
a=$1 b=$2 runs=$3
shift 3
work=${AB_WORK:-/dev/shm/veritree-ab}
mkdir -p "$work"
for src in "$@"; do
  ta="" tb=""
  i=0
  while [ "$i" -lt "$runs" ]; do
    for side in a b; do
      root=$a; [ "$side" = b ] && root=$b
      rm -rf "$work/repo"
      s=$(date +%s.%N)
      node "$root/dist/src/cli/main.js" import "oci:$src" t --repo "$work/repo" --no-progress > /dev/null
      e=$(date +%s.%N)
      t=$(echo "$e - $s" | bc)
      if [ "$side" = a ]; then ta="$ta $t"; else tb="$tb $t"; fi
    done
    i=$((i + 1))
  done
  node -e '
    const f = (s) => s.trim().split(/\s+/).map(Number).sort((x, y) => x - y);
    const [a, b] = [f(process.argv[1]), f(process.argv[2])];
    const med = (v) => v[v.length >> 1];
    const show = (v) => `${med(v).toFixed(2)} s (${v[0].toFixed(2)}-${v[v.length - 1].toFixed(2)})`;
    console.log(`${process.argv[3]}: A ${show(a)}  B ${show(b)}  B/A ${(med(b) / med(a)).toFixed(2)} (time; <1 is faster)`);
  ' "$ta" "$tb" "$src"
done
rm -rf "$work/repo"
