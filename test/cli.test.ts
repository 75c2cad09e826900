/**
 * CLI conventions a newcomer meets in the first hour, on the example layout shipped in the repo
 * (no Debian tool needed): --repo before the command, sizes with units, "did you mean oci:",
 * a missing folder, a tag that moves, a checkout summary that adds up, npm start's next steps.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { plainLayerLayout } from './fixtures/oci.ts';
import { cleanup, must, ROOT, run, tempDir, veritree } from './helpers.ts';

const dir = tempDir('veritree-cli-');
after(() => cleanup(dir));
const example = join(ROOT, 'example', 'oci');

test('--repo is accepted before the command as well as after it', () => {
  const repo = join(dir, 'r1');
  assert.equal(veritree(['--repo', repo, 'import', `oci:${example}:latest`, 'ex']).status, 0);
  const before = veritree(['--repo', repo, 'images']);
  const after_ = veritree(['images', '--repo', repo]);
  assert.equal(before.status, 0, before.stderr);
  assert.equal(before.stdout, after_.stdout);
  assert.match(before.stdout, /^ex$/m);
  // Each layer labelled: the blob digest with its size and type, then the diff_id.
  const im = (JSON.parse(veritree(['images', '--repo', repo, '--json']).stdout) as { layers: { digest: string; diffId: string }[] }[])[0];
  const l1 = im?.layers[0];
  assert.ok(l1);
  assert.match(before.stdout, new RegExp(`^  layer 1  blob ${l1.digest}  \\S+ \\S+ \\S+\n {11}diff_id ${l1.diffId}$`, 'm'));
  assert.equal(veritree(['--repo', repo, 'fsck']).status, 0);
});

test('--max-layer-size takes units; a bad size is a usage error naming the forms', () => {
  const repo = join(dir, 'r2');
  assert.equal(veritree(['import', `oci:${example}:latest`, 'ex', '--repo', repo, '--max-layer-size', '1G']).status, 0);
  const small = veritree(['import', `oci:${example}:latest`, 'ex2', '--repo', join(dir, 'r2b'), '--max-layer-size', '1K']);
  assert.equal(small.status, 3, 'a 1 KiB limit refuses the example layers');
  assert.match(small.stderr, /inflates past --max-layer-size \(1024 bytes\)/);
  const bad = veritree(['import', `oci:${example}:latest`, '--repo', repo, '--max-layer-size', '1Q']);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /expected a size: bytes, or a number with K, M, G or T/);
});

test('a layout without oci: gets "did you mean"; a missing folder is named as missing', () => {
  const repo = join(dir, 'r3');
  const r = veritree(['import', `${example}:latest`, '--repo', repo]);
  assert.equal(r.status, 2);
  assert.match(r.stderr, new RegExp(`did you mean oci:${example}:latest\\?`));
  const m = veritree(['import', `oci:${join(dir, 'nope')}:latest`, '--repo', repo]);
  assert.equal(m.status, 3);
  assert.match(m.stderr, /nope: no such folder/);
});

test('a tag moved to another image is said so, in text and in --json', () => {
  const repo = join(dir, 'r4');
  assert.equal(veritree(['import', `oci:${example}:latest`, 'x', '--repo', repo]).status, 0);
  // the same image again: the tag does not move
  const same = veritree(['import', `oci:${example}:latest`, 'x', '--repo', repo, '--json']);
  assert.equal((JSON.parse(same.stdout) as { retaggedFrom: string | null }).retaggedFrom, null);
  // point x somewhere else by hand, then import: it moves back, and says from where
  const other = veritree(['images', '--repo', repo, '--json']);
  assert.equal(other.status, 0);
  run('sh', ['-c', `cd ${repo}/streams/refs/oci && ln -sfn ../../oci-config-sha256:$(ls ${repo}/streams | grep oci-config | head -1 | cut -d: -f2) x`]);
  const moved = veritree(['import', `oci:${example}:latest`, 'x', '--repo', repo]);
  assert.equal(moved.status, 0, moved.stderr);
  assert.match(moved.stdout, /tag +x moved here from /);
});

test("a tag derived from a REF never silently moves off another image; a NAME or --force moves it", () => {
  const repo = join(dir, 'r4b');
  // A second image whose ref is also `latest`.
  const src = join(dir, 'other-src');
  mkdirSync(src, { recursive: true });
  writeFileSync(join(src, 'hello'), 'another image\n');
  must('tar', ['-C', src, '-cf', join(dir, 'other.tar'), 'hello']);
  const other = join(dir, 'other-layout');
  plainLayerLayout(other, 'latest', readFileSync(join(dir, 'other.tar')));
  assert.equal(veritree(['import', `oci:${example}:latest`, '--repo', repo]).status, 0);
  const before = veritree(['images', '--repo', repo, '--json']).stdout;
  const refused = veritree(['import', `oci:${other}:latest`, '--repo', repo]);
  assert.equal(refused.status, 2, refused.stderr);
  assert.match(refused.stderr, /tag "latest" already names another image \(sha256:[0-9a-f]{64}\): give this image a NAME of its own, or --force/);
  assert.equal(veritree(['images', '--repo', repo, '--json']).stdout, before, 'the tag still names the first image');
  // In one run: two sources deriving the same tag; the second is refused, the first imported.
  const repo2 = join(dir, 'r4c');
  const both = veritree(['import', `oci:${example}:latest`, `oci:${other}:latest`, '--repo', repo2]);
  assert.equal(both.status, 2, both.stderr);
  assert.match(both.stderr, /tag "latest" is taken by another image of this run/);
  // The same image again under its derived tag is fine (and its summary reads no layer, and
  // claims no rate); a NAME or --force moves the tag.
  const again = veritree(['import', `oci:${example}:latest`, '--repo', repo]);
  assert.equal(again.status, 0);
  assert.match(again.stdout, /^ {2}time +\d+\.\d\d s, no layer read$/m);
  const forced = veritree(['import', `oci:${other}:latest`, '--force', '--repo', repo]);
  assert.equal(forced.status, 0, forced.stderr);
  assert.match(forced.stdout, /tag +latest moved here from /);
  const named = veritree(['import', `oci:${example}:latest`, 'latest', '--repo', repo]);
  assert.equal(named.status, 0, named.stderr);
  assert.match(named.stdout, /tag +latest moved here from /);
});

test('the checkout summary adds up', () => {
  const repo = join(dir, 'r5');
  assert.equal(veritree(['import', `oci:${example}:latest`, 'ex', '--repo', repo]).status, 0);
  const r = veritree(['checkout', 'ex', join(dir, 'co5'), '--repo', repo]);
  assert.equal(r.status, 0, r.stderr);
  const m = /: (\d+) files? \((\d+) written from the stream, (\d+) copied or reflinked from objects, (\d+) hard-linked to objects\)/.exec(r.stdout);
  assert.ok(m, r.stdout);
  const [total, a, b, c] = m.slice(1).map(Number) as [number, number, number, number];
  assert.equal(a + b + c, total);
});

test('npm start says where the store is and what to try next', () => {
  // start.mjs runs from the checkout, as npm start does.
  const there = run('sh', ['-c', `cd ${JSON.stringify(ROOT)} && node scripts/start.mjs`]);
  assert.equal(there.status, 0, there.stderr);
  assert.match(there.stdout, /The store is .*\.veritree-example/);
  assert.match(there.stdout, /npx veritree images --repo \.veritree-example/);
});

const AS_ROOT = process.getuid?.() === 0 ? false : 'skipped: needs root to mount a read-only tmpfs';

test('a repository on a read-only filesystem is named as such, not ENOENT', { skip: AS_ROOT }, () => {
  const mnt = join(dir, 'ro');
  run('mkdir', ['-p', mnt]);
  const m = run('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', mnt]);
  assert.equal(m.status, 0, m.stderr);
  try {
    const r = veritree(['import', `oci:${example}:latest`, 'x', '--repo', join(mnt, 'repo')]);
    assert.equal(r.status, 4);
    assert.match(r.stderr, /repo is not writable: Read-only file system \(creating the repository\)/);
  } finally {
    run('umount', [mnt]);
  }
});

test('--repo naming a file (or a path through one) says so; --json failures are JSON on stdout', () => {
  const file = join(dir, 'a-file');
  run('sh', ['-c', `echo x > ${file}`]);
  const r = veritree(['images', '--repo', file]);
  assert.equal(r.status, 4);
  assert.match(r.stderr, /a-file: it is a file, not a repository folder/);
  const deeper = veritree(['fsck', '--repo', join(file, 'sub'), '--json']);
  assert.equal(deeper.status, 4);
  assert.match(deeper.stderr, /a-file is a file, not a repository folder/);
  const j = JSON.parse(deeper.stdout) as { ok: boolean; code: string };
  assert.deepEqual([j.ok, j.code], [false, 'STORE_NOT_FOUND']);
  const none = veritree(['fsck', '--repo', join(dir, 'none'), '--json']);
  assert.equal((JSON.parse(none.stdout) as { code: string }).code, 'STORE_NOT_FOUND');
});

test('cat-layer takes a blob digest too, and says which diff_id it is', () => {
  const repo = join(dir, 'r6');
  assert.equal(veritree(['import', `oci:${example}:latest`, 'ex', '--repo', repo]).status, 0);
  const im = (JSON.parse(veritree(['images', '--repo', repo, '--json']).stdout) as { layers: { digest: string; diffId: string }[] }[])[0];
  const layer = im?.layers[0];
  assert.ok(layer);
  const r = run('sh', ['-c', `node ${JSON.stringify(join(ROOT, 'dist/src/cli/main.js'))} cat-layer ${layer.digest} --repo ${repo} | sha256sum`]);
  assert.equal(r.stdout.split(' ')[0], layer.diffId.slice(7));
  assert.match(r.stderr, new RegExp(`${layer.digest} is the blob digest of layer 1 of ex; its diff_id is ${layer.diffId}`));
  const bad = run('sh', ['-c', `node ${JSON.stringify(join(ROOT, 'dist/src/cli/main.js'))} cat-layer sha256:${'0'.repeat(64)} --repo ${repo} > /dev/null`]);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /no layer with the diff_id or blob digest/);
});

test('each command module registers the commands the program looks it up by, and the whole program has them all in order', async () => {
  const { COMMAND_MODULES, buildProgram } = await import('../src/cli/program.ts');
  const { Command } = await import('commander');
  for (const [names, load] of COMMAND_MODULES) {
    const p = new Command('veritree');
    (await load())(p);
    assert.deepEqual(p.commands.map((c) => c.name()), [...names]);
  }
  const all = await buildProgram(['node', 'veritree']);
  assert.deepEqual(all.commands.map((c) => c.name()), COMMAND_MODULES.flatMap(([names]) => [...names]));
  // Named first, a command comes with its module's siblings only, and its help is the same text.
  const one = await buildProgram(['node', 'veritree', 'mkfs']);
  assert.deepEqual(one.commands.map((c) => c.name()), ['mkfs', 'image', 'compute-id', 'mount', 'umount']);
  const helpOf = (p: typeof all): string => (p.commands.find((c) => c.name() === 'mkfs') as typeof all).helpInformation();
  assert.equal(helpOf(one), helpOf(all));
  assert.match(veritree(['mkfs', '--help']).stdout, /^Usage: veritree mkfs \[options\] <dumpfile> \[image\]/);
});
