#!/usr/bin/env node
// `npm run test:quick`: the suite a developer runs between edits (after npm run build). It leaves
// out the full tier: the heavy tests inside every file (VERITREE_TEST_TIER=quick, test/helpers.ts
// heavy()) and the whole files below, which check veritree against other tools, and the CLI's
// surface and its answers to bad input, rather than the library's own behaviour. `npm test`,
// and so CI, runs every file.
//   node scripts/test-quick.mjs [node --test options...]
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const FULL_TIER = {
  'checkout.test.js': 'checkout against umoci unpack of the same images, entry by entry',
  'checkout-diff.test.js': 'checkout against umoci and tar on generated trees',
  'interop.test.js': "repositories against composefs-rs's layout and cfsctl's meta.json, with skopeo and umoci",
  'export.test.js': 'export read back by skopeo and umoci',
  'oci-archive.test.js': 'oci-archive files as podman and skopeo write them',
  'library.test.js': 'the package compiled in a TypeScript consumer',
  'progress-tty.test.js': 'progress drawn on a pseudo-terminal',
  'cli.test.js': "the CLI's options, exit statuses and messages",
  'digest-cli.test.js': '`digest` against fsverity digest, through the CLI',
  'image-formats.test.js': 'images of every format against mkcomposefs, through the CLI',
  'composefs-digest.test.js': 'images against the mkcomposefs oracle built from ../shared',
  'seal.test.js': 'sealed layouts written and imported through the CLI',
  'verify-source.test.js': '--verify-source through the CLI',
  'browse.test.js': 'ls, cat and diff through the CLI',
  'prune.test.js': 'prune and gc through the CLI',
  'bulk-import.test.js': 'import --all through the CLI',
  'repair-image.test.js': 'fsck --repair of images through the CLI',
  'native-fallback.test.js': 'the whole CLI with the native addon off',
  'hostile.test.js': 'hostile layers and names, through the CLI',
  'import-errors.test.js': 'every kind of bad layout, through the CLI',
  'store-trust.test.js': 'damaged and swapped store files under every command',
  'mount.test.js': 'images mounted for real (erofs, overlayfs, loop)',
  'erofs-sha512.test.js': 'SHA-512 images mounted for real',
  'erofs-v2-repo.test.js': 'V2 repositories through the CLI, images mounted for real',
};

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const dir = join(root, 'dist', 'test');
const missing = Object.keys(FULL_TIER).filter((f) => !existsSync(join(dir, f)));
if (missing.length > 0) {
  console.error(`test-quick: listed in FULL_TIER but not built: ${missing.join(', ')} (renamed? npm run build first)`);
  process.exit(2);
}
const files = readdirSync(dir)
  .filter((f) => f.endsWith('.test.js') && !(f in FULL_TIER))
  .sort()
  .map((f) => join(dir, f));
const args = process.argv.slice(2);
const reporter = args.some((a) => a.startsWith('--test-reporter')) ? [] : ['--test-reporter=spec'];
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=2', ...reporter, ...args, ...files], {
  stdio: 'inherit',
  env: { ...process.env, VERITREE_TEST_TIER: 'quick' },
});
process.exit(r.status ?? 1);
