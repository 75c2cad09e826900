#!/usr/bin/env bash
# veritree mkfs against mkcomposefs --from-file on the same dumpfile, interleaved, on tmpfs.
# Usage: scripts/bench-mkfs.sh [DUMPFILE[.gz]] [RUNS]
# Default dumpfile: the CentOS Stream 9 developer tree of the composefs conformance suite.
# mkcomposefs: the one on PATH, else 1.0.8 built from ../shared/tools (as the tests do).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
src=${1:-$here/../shared/vectors/composefs-assets/cs9-x86_64-developer.dump.gz}
runs=${2:-7}
work=$(mktemp -d /dev/shm/veritree-bench-mkfs.XXXXXX)
trap 'rm -rf "$work"' EXIT
if command -v mkcomposefs >/dev/null; then mk=mkcomposefs; else
  prefix=${TMPDIR:-/tmp}/veritree-mkcomposefs-1.0.8
  [ -x "$prefix/bin/mkcomposefs" ] || bash "$here/../shared/tools/build-mkcomposefs.sh" "$prefix" >/dev/null
  mk=$prefix/bin/mkcomposefs
  export LD_LIBRARY_PATH=$(dirname "$(find "$prefix" -name 'libcomposefs.so.1' | head -1)")
fi
case "$src" in *.gz) zcat "$src" > "$work/in.dump" ;; *) cp "$src" "$work/in.dump" ;; esac
vt="node $here/dist/src/cli/main.js"
echo "dumpfile: $src ($(wc -l < "$work/in.dump") lines), $runs interleaved runs, $(nproc) cores, $(node --version)"
t() { local s e; s=$(date +%s%N); "$@" >/dev/null; e=$(date +%s%N); echo $(( (e - s) / 1000000 )); }
a=() b=()
for i in $(seq "$runs"); do
  a+=("$(t $mk --from-file "$work/in.dump" "$work/a.cfs")")
  b+=("$(t $vt mkfs "$work/in.dump" "$work/b.cfs")")
done
cmp -s "$work/a.cfs" "$work/b.cfs" && echo "images: identical ($(stat -c %s "$work/a.cfs") bytes)" || { echo "images DIFFER"; exit 1; }
node -e '
const [a, b] = process.argv.slice(1).map((s) => s.split(",").map(Number).sort((x, y) => x - y));
const med = (x) => x[Math.floor(x.length / 2)];
const f = (x) => `${(med(x) / 1000).toFixed(2)} s (${(x[0] / 1000).toFixed(2)}-${(x[x.length - 1] / 1000).toFixed(2)})`;
console.log(`mkcomposefs --from-file   ${f(a)}`);
console.log(`veritree mkfs             ${f(b)}`);
console.log(`veritree speed / mkcomposefs speed: ${(med(a) / med(b)).toFixed(2)}x`);
' "$(IFS=,; echo "${a[*]}")" "$(IFS=,; echo "${b[*]}")"
# The same work warm, in one process: the library's parse and write, six times; the last two shown.
node --input-type=module -e '
const { readFileSync } = await import("node:fs");
const { parseDumpfile } = await import(process.argv[1] + "/dist/src/erofs/dump-parse.js");
const { writeComposefsImage } = await import(process.argv[1] + "/dist/src/erofs/writer.js");
const bytes = readFileSync(process.argv[2]);
for (let i = 1; i <= 6; i++) {
  const t0 = performance.now();
  const root = await parseDumpfile([bytes]);
  const t1 = performance.now();
  writeComposefsImage(root);
  const t2 = performance.now();
  if (i >= 5) console.log(`warm run ${i}: read ${((t1 - t0) / 1000).toFixed(2)} s, write ${((t2 - t1) / 1000).toFixed(2)} s`);
}' "$here" "$work/in.dump"
