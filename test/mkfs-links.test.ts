/**
 * Hard-link chains in a dumpfile (each name linking to the one before): the reader resolves
 * each chain in one walk, so that mkfs stays linear in the number of links, and the image is
 * still mkcomposefs 1.0.8's, byte for byte.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cleanup, tempDir } from './helpers.ts';
import { mkcomposefs, type Mkcomposefs } from './fixtures/mkcomposefs.ts';
import { parseDumpfile } from '../src/erofs/dump-parse.ts';
import { NONE } from '../src/erofs/tree.ts';
import { writeComposefsImage } from '../src/erofs/writer.ts';

let dir = '';
let oracle: Mkcomposefs | string = 'skipped: not yet looked for';
before(() => {
  dir = tempDir('veritree-mkfs-links-');
  oracle = mkcomposefs();
});
after(() => dir && !process.env.VERITREE_KEEP && cleanup(dir));

/** A file and `n` links, each naming the one before (forward: the one after, written first). */
function chain(n: number, forward: boolean): string {
  const lines = ['/ 4096 40755 2 0 0 0 0.0 - - -', '/a 5 100644 1 0 0 0 0.0 - hello -'];
  const name = (i: number): string => `/l${String(i).padStart(6, '0')}`;
  for (let i = 0; i < n; i++) {
    const target = forward ? (i === n - 1 ? '/a' : name(i + 1)) : i === 0 ? '/a' : name(i - 1);
    lines.push(`${name(i)} 0 @100644 0 0 0 0 0.0 ${target} - -`);
  }
  return lines.join('\n') + '\n';
}

test('a chain of 50,000 hard links: every link names the file directly, the image is mkcomposefs\'s', async (t) => {
  // mkcomposefs itself is quadratic in a chain (40 s for 50,000 links): it checks 5,000.
  for (const [n, forward] of [[50_000, false], [50_000, true], [5_000, false], [5_000, true]] as const) {
    const dump = chain(n, forward);
    const tree = await parseDumpfile([Buffer.from(dump, 'latin1')]);
    // Row 1 is /a; every other non-root row is a link resolved straight to it: the writer's
    // question "which inode is this name" is one step per name, not one per link in the chain.
    let links = 0;
    for (let n = 2; n < tree.count; n++) {
      assert.equal(tree.linkTo[n], 1, `row ${n} names /a directly`);
      links++;
    }
    assert.equal(links, n);
    assert.equal(tree.linkTo[1], NONE);
    const bytes = writeComposefsImage(tree).bytes;
    if (n > 5_000) continue;
    if (typeof oracle === 'string') {
      t.diagnostic(oracle);
      continue;
    }
    const input = join(dir, `chain-${n}-${forward}.dump`);
    const out = join(dir, `chain-${n}-${forward}.cfs`);
    writeFileSync(input, dump);
    oracle.run(['--from-file', input, out]);
    assert.ok(bytes.equals(readFileSync(out)), `${forward ? 'forward' : 'backward'} chain: images differ`);
  }
});

test('a cycle of links, a link into a cycle and a chain ending at a folder are refused, naming the line', async () => {
  const root = '/ 4096 40755 2 0 0 0 0.0 - - -';
  const link = (p: string, to: string): string => `${p} 0 @100644 0 0 0 0 0.0 ${to} - -`;
  const cases: [string[], RegExp][] = [
    [[root, link('/a', '/b'), link('/b', '/c'), link('/c', '/a')], /dumpfile line 2: a cycle of hard links/],
    [[root, '/f 0 100644 1 0 0 0 0.0 - - -', link('/x', '/a'), link('/a', '/b'), link('/b', '/a')], /dumpfile line 3: a cycle of hard links/],
    [[root, '/d 4096 40755 2 0 0 0 0.0 - - -', link('/x', '/y'), link('/y', '/d')], /dumpfile line 3: a hard link to a directory/],
  ];
  for (const [lines, want] of cases) await assert.rejects(parseDumpfile([Buffer.from(lines.join('\n') + '\n')]), want);
});
