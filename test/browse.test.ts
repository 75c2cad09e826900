/**
 * `veritree ls`, `cat` and `diff`: an image browsed from the store without checkout or mount.
 * ls lists what checkout writes, cat gives a file's bytes (hashed as copied out: a damaged object
 * fails it), diff lists A/D/M between two images' trees, as ostree diff does.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { buildImage, hardlink, symlink, write } from './fixtures/oci.ts';
import { cleanup, skipUnless, tempDir, veritree } from './helpers.ts';

const dir = tempDir('veritree-browse-');
after(() => cleanup(dir));
const skip = skipUnless('umoci');

function setup(): { repo: string; big: Buffer } {
  const layout = join(dir, 'layout');
  const repo = join(dir, 'repo');
  const big = Buffer.alloc(300_000, 7);
  buildImage(layout, 'one', [
    (r) => {
      write(r, 'etc/os-release', 'ID=one\n');
      write(r, 'usr/bin/tool', big, 0o755);
      hardlink(r, 'usr/bin/tool2', 'usr/bin/tool');
      symlink(r, 'usr/bin/t', 'tool');
      write(r, 'var/gone', 'bye\n');
    },
  ]);
  buildImage(layout, 'two', [
    (r) => {
      write(r, 'etc/os-release', 'ID=two\n');
      rmSync(join(r, 'var', 'gone'));
      write(r, 'opt/new/file', 'new\n');
      chmodSync(join(r, 'usr', 'bin', 'tool'), 0o700);
    },
  ], { from: 'one' });
  for (const ref of ['one', 'two']) assert.equal(veritree(['import', `oci:${layout}:${ref}`, ref, '--repo', repo]).status, 0);
  return { repo, big };
}

test('ls, cat and diff browse stored images; cat refuses a damaged object', { skip }, () => {
  const { repo, big } = setup();
  const ls = veritree(['ls', 'one', '/usr/bin', '--repo', repo]);
  assert.equal(ls.status, 0, ls.stderr);
  assert.deepEqual(ls.stdout.trim().split('\n').map((l) => l.replace(/^(\S+) \d+ \d+ +\d+ /, '$1 ')), [
    'l00777 /usr/bin/t -> tool',
    '-00755 /usr/bin/tool',
    '-00755 /usr/bin/tool2 => /usr/bin/tool',
  ]);
  const all = veritree(['ls', '-R', 'one', '--repo', repo]).stdout;
  assert.match(all, /^-00644 0 0 +7 \/etc\/os-release$/m);
  assert.match(all, /^d00755 0 0 +0 \/var$/m);
  assert.equal(veritree(['ls', 'one', '/nope', '--repo', repo]).status, 2);

  assert.equal(veritree(['cat', 'one', 'etc/os-release', '--repo', repo]).stdout, 'ID=one\n');
  const cat = veritree(['cat', 'one', '/usr/bin/tool2', '--repo', repo]);
  assert.equal(cat.status, 0, cat.stderr);
  assert.equal(Buffer.from(cat.stdout, 'latin1').length, big.length);
  assert.equal(veritree(['cat', 'one', '/usr', '--repo', repo]).status, 2, 'a folder is not a file');

  const diff = veritree(['diff', 'one', 'two', '--repo', repo]);
  assert.equal(diff.status, 0, diff.stderr);
  // Both names of the tool are modified (one inode: its mode changed). The root is left out:
  // umoci dates it to the whole second, so it differs only when the two builds straddle one.
  assert.deepEqual(diff.stdout.trim().split('\n').filter((l) => l !== 'M /'), ['M /etc/os-release', 'A /opt', 'A /opt/new', 'A /opt/new/file', 'M /usr/bin/tool', 'M /usr/bin/tool2', 'D /var/gone']);
  assert.equal(veritree(['diff', 'one', 'one', '--repo', repo]).status, 2);

  // One flipped byte in the tool's object (same size): cat writes, then fails with exit 4.
  const objects = join(repo, 'objects');
  for (const d of readdirSync(objects)) {
    for (const f of readdirSync(join(objects, d))) {
      const p = join(objects, d, f);
      const b = readFileSync(p);
      if (b.length !== big.length) continue;
      b[1000] = 8;
      writeFileSync(p, b);
    }
  }
  const bad = veritree(['cat', 'one', '/usr/bin/tool', '--repo', repo]);
  assert.equal(bad.status, 4);
  assert.match(bad.stderr, /is damaged: its bytes hash to/);
});
