#!/usr/bin/env bash
# The guest tier: test/verity-guest/*.test.ts inside a QEMU guest whose kernel has fs-verity
# (../shared/tools/verity-vm.sh), on its ext4 `-O verity` scratch disk, since the host's kernel
# may have none. Where the guest cannot start (verity-vm.sh exits 125, its reason on the line
# before), the tier is skipped with a message saying so; under CI=true that is a failure instead.
set -uo pipefail
cd "$(dirname "$0")/.."

VM=${VERITY_VM:-../shared/tools/verity-vm.sh}
# The whole tier must stay well under 15 minutes in the emulated guest; past this it is stopped.
LIMIT=${VERITY_GUEST_TIMEOUT:-840}

skip() {
  if [ "${CI:-}" = true ]; then
    echo "test-verity-guest: FAILED: the fs-verity guest tier could not run ($1); CI must run it" >&2
    exit 1
  fi
  echo "test-verity-guest: SKIPPED: the fs-verity guest tier could not run ($1)" >&2
  exit 0
}

[ -f "$VM" ] || skip "no guest launcher at $VM"
npm run build --silent || exit 1
start=$(date +%s)
# mount needs loop devices, erofs and overlayfs: modules of the guest's kernel, loaded first.
bash "$VM" --cwd "$PWD" --timeout "$LIMIT" -- sh -c \
  'modprobe -a loop erofs overlay; exec node --test --test-concurrency=1 --test-reporter=spec dist/test/verity-guest/*.test.js'
rc=$?
echo "test-verity-guest: exit $rc after $(( $(date +%s) - start )) s" >&2
[ "$rc" = 125 ] && skip "the guest did not start: see verity-vm's line above"
exit "$rc"
