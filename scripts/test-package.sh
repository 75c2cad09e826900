#!/usr/bin/env bash
# Installs veritree as a user would, outside this checkout, and runs its main jobs from there:
# from `npm pack` with --omit=dev (a production install: no TypeScript, no test tools), and from
# git (npm runs `prepare`, which builds dist/). Each install must run import, fsck and
# bench --quick on the example image.
#   scripts/test-package.sh        (CI runs it after the tests)
set -euo pipefail
cd "$(dirname "$0")/.."
here=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

run_jobs() { # $1: the folder of an install; $2, $3: its veritree command and package folder
  local bin="${2:-$1/node_modules/.bin/veritree}" pkg="${3:-$1/node_modules/veritree}" repo="$1/repo"
  # Where this checkout's addons built, the install's must have too (a file missing from the
  # package would otherwise fall back to JavaScript without a word).
  for addon in verity_kernel store_sys; do
    if [ -f "$here/native/build/Release/$addon.node" ] && [ ! -f "$pkg/native/build/Release/$addon.node" ]; then
      echo "the native addon $addon was not built in $1"; return 1
    fi
  done
  "$bin" import "oci:$here/example/oci:latest" example --repo "$repo" > /dev/null
  "$bin" fsck --repo "$repo" > /dev/null
  "$bin" ls example /usr/bin --repo "$repo" | grep -q ' /usr/bin/hello$'
  # export, then skopeo copies it and umoci unpacks it to the checkout's files.
  "$bin" export example "oci:$1/exported:ex" --repo "$repo" > /dev/null
  "$bin" checkout --copy example "$1/co" --repo "$repo" > /dev/null
  if command -v skopeo > /dev/null && command -v umoci > /dev/null; then
    skopeo copy -q "oci:$1/exported:ex" "oci:$1/copied:ex"
    umoci unpack --image "$1/copied:ex" "$1/bundle" > /dev/null
    diff -r "$1/bundle/rootfs" "$1/co"
  fi
  "$bin" bench --quick --out "$1/bench" > "$1/bench.log" 2>&1 || { cat "$1/bench.log"; return 1; }
  test -s "$1/bench/report.json"
}

echo "== npm pack, npm install --omit=dev"
mkdir -p "$work/pack" "$work/from-pack"
npm pack --silent --pack-destination "$work/pack" > /dev/null
(cd "$work/from-pack" && echo '{"name":"from-pack","version":"0.0.0","private":true}' > package.json &&
  npm install --omit=dev --no-audit --no-fund "$work"/pack/veritree-*.tgz > /dev/null 2>&1)
run_jobs "$work/from-pack"
echo "ok: import, fsck and bench --quick from a production install"

echo "== npm install from git"
mkdir -p "$work/from-git"
(cd "$work/from-git" && echo '{"name":"from-git","version":"0.0.0","private":true}' > package.json &&
  npm install --omit=dev --no-audit --no-fund "git+file://$here" > /dev/null 2>&1)
node --input-type=module -e "import('$work/from-git/node_modules/veritree/dist/src/index.js').then((m) => { if (typeof m.importImage !== 'function') process.exit(1); })"
run_jobs "$work/from-git"
echo "ok: import('veritree') resolves, and import, fsck and bench --quick run, from a git install"

# The README's global install, line for line: npm 11 cannot install -g from git in one step.
echo "== npm pack git+..., npm install -g ./veritree-0.1.0.tgz"
mkdir -p "$work/global"
(cd "$work/global" && npm pack --silent "git+file://$here" > /dev/null 2>&1 &&
  npm install -g --prefix "$work/global/prefix" --no-audit --no-fund ./veritree-0.1.0.tgz > /dev/null 2>&1)
run_jobs "$work/global" "$work/global/prefix/bin/veritree" "$work/global/prefix/lib/node_modules/veritree"
echo "ok: import, fsck and bench --quick from a global install of a package packed from git"
