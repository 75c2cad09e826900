/**
 * fsck --repair converges on composefs images: a damaged or missing image object is quarantined
 * and written again from its tag's layers, so the next fsck is clean, gc runs, and the tag stays.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, cleanup, hasTool, tempDir, veritree, spawnGuarded } from './helpers.ts';
import { toHex, verityDigest } from '../src/index.ts';
import { replaceFile } from './fixtures/damage.ts';

const importable = hasTool('umoci') ? false : 'skipped: umoci not installed';
let dir = '';
let template = '';
let image = '';
before(() => {
  if (importable) return;
  dir = tempDir('veritree-repair-image-');
  template = join(dir, 'template');
  assert.equal(veritree(['import', `oci:${join(ROOT, 'example', 'oci')}:latest`, 'ex', '--repo', template]).status, 0);
  const r = veritree(['image', 'ex', '--repo', template]);
  assert.equal(r.status, 0, r.stderr);
  image = r.stdout.trim();
});
after(() => dir && !process.env.VERITREE_KEEP && cleanup(dir));

function copy(name: string): string {
  const root = join(dir, name);
  spawnGuarded('cp', ['-a', template, root]);
  return root;
}

function objectPath(root: string, id: string): string {
  return join(root, 'objects', id.slice(0, 2), id.slice(2));
}

/** After the damage: fsck fails, --repair fixes it in one run, fsck and gc are then clean and the image is back. */
function repairConverges(root: string): void {
  assert.equal(veritree(['fsck', '--repo', root]).status, 1, 'the damage is seen');
  const fix = veritree(['fsck', '--repair', '--repo', root]);
  assert.equal(fix.status, 1, fix.stdout + fix.stderr);
  assert.match(fix.stdout, new RegExp(`wrote the composefs image of ex again: ${image}`));
  assert.doesNotMatch(fix.stdout, /removed tag/);
  const again = veritree(['fsck', '--repo', root]);
  assert.equal(again.status, 0, again.stdout);
  assert.equal(toHex(verityDigest(readFileSync(objectPath(root, image)), 'sha256')), image);
  const g = veritree(['gc', '--json', '--repo', root]);
  assert.equal(g.status, 0, g.stderr);
  const report = JSON.parse(g.stdout) as { streamsRemoved: string[]; imagesRemoved: string[] };
  assert.deepEqual([report.streamsRemoved, report.imagesRemoved], [[], []]);
  assert.equal(veritree(['fsck', '--repo', root]).status, 0);
  assert.equal(veritree(['image', 'ex', '--repo', root]).stdout.trim(), image);
}

test('fsck --repair: a damaged composefs image is quarantined and written again; fsck is then clean and gc runs', { skip: importable }, () => {
  const root = copy('damaged');
  const obj = objectPath(root, image);
  const b = readFileSync(obj);
  b[2000] = (b[2000] ?? 0) ^ 1;
  replaceFile(obj, b);
  repairConverges(root);
});

test('fsck --repair: a missing composefs image is written again; its dangling images/ link does not outlive the repair', { skip: importable }, () => {
  const root = copy('missing');
  rmSync(objectPath(root, image));
  // A stray images/<hex> link to an object nobody has: repair removes it.
  const stray = 'ab'.repeat(32);
  symlinkSync(`../objects/ab/${stray.slice(2)}`, join(root, 'images', stray));
  const fsck = veritree(['fsck', '--repo', root]);
  assert.match(fsck.stdout, /names its composefs image \w+, which is missing: veritree fsck --repair writes it again/);
  repairConverges(root);
  assert.equal(existsSync(join(root, 'images', stray)), false);
});

test('fsck --repair: an object an image names is quarantined; one repair leaves no image naming it, and importing again restores all', { skip: importable }, async () => {
  const root = copy('content');
  const { composefsImageObjects } = await import('../src/erofs/reader.ts');
  const victim = [...composefsImageObjects(readFileSync(objectPath(root, image))).objects].sort()[0] as string;
  const obj = objectPath(root, victim);
  const b = readFileSync(obj);
  b[0] = (b[0] ?? 0) ^ 1;
  replaceFile(obj, b);
  const fix = veritree(['fsck', '--repair', '--repo', root]);
  assert.equal(fix.status, 1, fix.stdout + fix.stderr);
  // A layer lost an object: the tag cannot stand, and says to import again.
  assert.match(fix.stdout, /removed tag ex: import it again/);
  assert.match(fix.stdout, new RegExp(`removed image link images/${image}`));
  const again = veritree(['fsck', '--repo', root]);
  assert.equal(again.status, 0, `one repair is enough: ${again.stdout}`);
  assert.equal(veritree(['gc', '--repo', root]).status, 0);
  assert.equal(veritree(['import', `oci:${join(ROOT, 'example', 'oci')}:latest`, 'ex', '--repo', root]).status, 0);
  assert.equal(veritree(['image', 'ex', '--repo', root]).stdout.trim(), image);
  assert.equal(veritree(['fsck', '--repo', root]).status, 0);
});

test('fsck --repair keeps a tag in a sub-folder of refs/oci/ that gc, fsck and images follow, and removes a broken one there (not the folder)', { skip: importable }, () => {
  const root = copy('nested-tag');
  const manifest = readdirSync(join(root, 'streams')).find((n) => n.startsWith('oci-manifest-')) as string;
  mkdirSync(join(root, 'streams', 'refs', 'oci', 'sub'));
  symlinkSync(`../../../${manifest}`, join(root, 'streams', 'refs', 'oci', 'sub', 'good'));
  symlinkSync('../../../oci-manifest-sha256:' + '1'.repeat(64), join(root, 'streams', 'refs', 'oci', 'sub', 'gone'));
  // Damage elsewhere, so that repair runs: a stream link to no object.
  symlinkSync(`../objects/00/${'0'.repeat(62)}`, join(root, 'streams', `oci-layer-sha256:${'2'.repeat(64)}`));
  const fix = veritree(['fsck', '--repair', '--repo', root]);
  assert.match(fix.stdout, /removed tag sub\/gone/);
  assert.doesNotMatch(fix.stdout, /removed tag (sub\/good|sub:|sub\b[^/])/);
  assert.ok(lstatSync(join(root, 'streams', 'refs', 'oci', 'sub', 'good')).isSymbolicLink(), 'the whole tag is kept');
  const tags = (JSON.parse(veritree(['images', '--json', '--repo', root]).stdout) as { tag: string }[]).map((t) => t.tag).sort();
  assert.deepEqual(tags, ['ex', 'sub/good']);
  const again = veritree(['fsck', '--repo', root]);
  assert.equal(again.status, 0, again.stdout);
});
