#!/usr/bin/env bash
# veritree mkfs against mkcomposefs --from-file on the same dumpfile, interleaved, on tmpfs.
# Usage: scripts/bench-mkfs.sh [DUMPFILE[.gz]] [RUNS]   (VERITREE_BENCH_NODES: which Node binaries)
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
# Each Node that runs veritree: this one, then those scripts/test-nodes.sh fetched (.cache/nodes),
# or VERITREE_BENCH_NODES="/path/to/node ..." instead. Node 20 starts in about 60 ms, 22 and 24
# in about 20: a tenth of mkcomposefs's whole time, so the ratio depends on the Node.
if [ -n "${VERITREE_BENCH_NODES:-}" ]; then read -r -a nodes <<< "$VERITREE_BENCH_NODES"; else
  nodes=("$(command -v node)")
  for d in "$here"/.cache/nodes/*/package/bin/node; do [ -x "$d" ] && nodes+=("$d"); done
fi
echo "dumpfile: $src ($(wc -l < "$work/in.dump") lines), $runs interleaved runs, $(nproc) cores"
t() { local s e; s=$(date +%s%N); "$@" >/dev/null; e=$(date +%s%N); echo $(( (e - s) / 1000000 )); }
a=() times=()
for i in $(seq "$runs"); do
  a+=("$(t $mk --from-file "$work/in.dump" "$work/a.cfs")")
  for k in "${!nodes[@]}"; do
    times[k]+="$(t "${nodes[k]}" "$here/dist/src/cli/main.js" mkfs "$work/in.dump" "$work/b$k.cfs"),"
  done
done
for k in "${!nodes[@]}"; do
  cmp -s "$work/a.cfs" "$work/b$k.cfs" || { echo "images DIFFER (${nodes[k]})"; exit 1; }
done
echo "images: identical ($(stat -c %s "$work/a.cfs") bytes)"
args=("$(IFS=,; echo "${a[*]}")")
for k in "${!nodes[@]}"; do args+=("$("${nodes[k]}" --version)" "${times[k]%,}"); done
node -e '
const parse = (s) => s.split(",").map(Number).sort((x, y) => x - y);
const med = (x) => x[Math.floor(x.length / 2)];
const f = (x) => `${(med(x) / 1000).toFixed(3)} s (${(x[0] / 1000).toFixed(3)}-${(x[x.length - 1] / 1000).toFixed(3)})`;
const [mk, ...rest] = process.argv.slice(1);
const a = parse(mk);
console.log(`| command | median (range) | speed vs mkcomposefs |`);
console.log(`|---|---|---|`);
console.log(`| mkcomposefs --from-file | ${f(a)} | 1 |`);
for (let i = 0; i < rest.length; i += 2) {
  const b = parse(rest[i + 1]);
  console.log(`| veritree mkfs, Node ${rest[i].slice(1)} | ${f(b)} | ${(med(a) / med(b)).toFixed(2)}x |`);
}
' "${args[@]}"
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
