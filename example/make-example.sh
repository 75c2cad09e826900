#!/usr/bin/env bash
# Makes example/oci, the small OCI image that `npm start` imports. Run from the repository root;
# needs umoci (Debian package umoci). Two layers: a base, then a change that deletes a file
# (a whiteout) and adds a larger file, so the example shows objects, inline files and links.
set -euo pipefail
out=example/oci
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rm -rf "$out"
umoci init --layout "$out"
umoci new --image "$out:latest"
umoci unpack --rootless --image "$out:latest" "$work/bundle" >/dev/null
root="$work/bundle/rootfs"
mkdir -p "$root/etc" "$root/usr/bin" "$root/usr/share/doc/veritree"
printf 'NAME="veritree example"\nID=veritree\n' > "$root/etc/os-release"
printf 'example\n' > "$root/etc/hostname"
seq 1 3000 > "$root/usr/share/doc/veritree/numbers.txt"
printf '#!/bin/sh\necho "hello from the veritree example image"\n' > "$root/usr/bin/hello"
chmod 755 "$root/usr/bin/hello"
ln -s ../share/doc/veritree/numbers.txt "$root/usr/bin/numbers"
ln "$root/usr/bin/hello" "$root/usr/bin/hello-again"
umoci repack --image "$out:latest" "$work/bundle"
# Unpack again: repack diffs against the image the bundle was unpacked from.
rm -rf "$work/bundle"
umoci unpack --rootless --image "$out:latest" "$work/bundle" >/dev/null
rm "$root/etc/hostname"
head -c 300000 /dev/zero | tr '\0' 'v' > "$root/usr/share/doc/veritree/big.txt"
umoci repack --image "$out:latest" "$work/bundle"
umoci gc --layout "$out"
