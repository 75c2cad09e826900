/**
 * `image` builds the writer's tree from the merged columns directly (src/merge/composefs-tree.ts):
 * the image must be byte for byte the one written from `veritree dump`'s text read back by the
 * dumpfile reader, for trees with every file type, hard links before and after their targets,
 * chained and orphaned links, whiteouts, xattrs (overlay ones included), odd names and times.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mergeLayers } from '../src/merge/merge.ts';
import type { LayerEntry } from '../src/merge/layer-entries.ts';
import { dumpLines } from '../src/merge/dump.ts';
import { parseDumpfile } from '../src/erofs/dump-parse.ts';
import { writeComposefsImage } from '../src/erofs/writer.ts';
import { cfsTreeOfNodes } from '../src/merge/composefs-tree.ts';
import { prng } from './helpers.ts';

function entry(rawPath: string, type: LayerEntry['type'] = 'file', extra: Partial<LayerEntry> = {}): LayerEntry {
  return { rawPath, type, mode: type === 'dir' ? 0o755 : 0o644, uid: 0, gid: 0, mtimeSec: 1, mtimeNsec: 0, size: 0, object: null, inline: new Uint8Array(0), linkname: '', devmajor: 0, devminor: 0, xattrs: new Map(), ...extra };
}

const OBJECT_A = 'ab'.repeat(32);
const OBJECT_B = '0123456789abcdef'.repeat(4);

/** Both images of these layers at each format version: from the columns, and through the dump text. */
async function bothImages(layers: LayerEntry[][]): Promise<void> {
  for (const minVersion of [0, 1]) {
    // At version 1 the merged tree is released as it is copied, as `image` does.
    const direct = writeComposefsImage(cfsTreeOfNodes(mergeLayers(layers, { rules: 'composefs' }).nodes, undefined, minVersion === 1), { minVersion });
    const text = Buffer.from([...dumpLines(mergeLayers(layers, { rules: 'composefs' }))].join('\n') + '\n', 'latin1');
    const viaDump = writeComposefsImage(await parseDumpfile([text]), { minVersion });
    assert.equal(direct.version, viaDump.version);
    assert.equal(direct.inodes, viaDump.inodes);
    assert.ok(direct.bytes.equals(viaDump.bytes), `images differ at version ${minVersion}`);
  }
}

test('composefs tree: every file type, links, whiteouts and xattrs give the dump path\'s image', async () => {
  const xattrs = new Map([
    ['user.a', Buffer.from('shared value')],
    ['trusted.overlay.opaque', Buffer.from('y')],
    ['security.selinux', Buffer.from('system_u:object_r:usr_t:s0\0')],
    ['user.key with space=and eq', Buffer.from('\n\t\\ - \xff', 'latin1')],
  ]);
  const lower = [
    entry('', 'dir', { mtimeSec: 5, xattrs: new Map([['security.selinux', Buffer.from('root')]]) }),
    entry('usr', 'dir', { uid: 70000, gid: 3, mtimeSec: -1, mtimeNsec: 999_999_999 }),
    entry('usr/a', 'hardlink', { linkname: 'usr/z' }),
    entry('usr/big', 'file', { size: 9000, object: OBJECT_A, inline: null, xattrs }),
    entry('usr/dup', 'file', { size: 70, object: OBJECT_A, inline: null }),
    entry('usr/inline', 'file', { size: 5, inline: Buffer.from('hello') }),
    entry('usr/empty', 'file'),
    entry('usr/sym', 'symlink', { linkname: '../etc/target with space' }),
    entry('usr/chr', 'char', { devmajor: 4, devminor: 300 }),
    entry('usr/blk', 'block', { devmajor: 8, devminor: 1 }),
    entry('usr/fifo', 'fifo'),
    entry('usr/z', 'file', { size: 3, inline: Buffer.from('zzz'), xattrs: new Map([['user.a', Buffer.from('shared value')]]) }),
    entry('usr/link2', 'hardlink', { linkname: 'usr/a' }),
    entry('usr/name\xe9\n\\', 'file', { size: 1, object: OBJECT_B, inline: null }),
    entry('usr/old', 'file', { mtimeSec: -(2 ** 40), mtimeNsec: 1 }),
    entry('usr/gone', 'file', { size: 1, inline: Buffer.from('g') }),
    entry('usr/orphan', 'hardlink', { linkname: 'usr/gone' }),
    entry('etc', 'dir'),
    entry('etc/sub', 'dir'),
  ];
  const upper = [entry('usr/.wh.gone'), entry('etc/.wh..wh..opq'), entry('etc/new', 'file', { size: 2, inline: Buffer.from('ok') }), entry('00', 'file')];
  await bothImages([lower, upper]);
});

test('composefs tree: seeded random trees give the dump path\'s image', async () => {
  for (let seed = 1; seed <= 12; seed++) {
    const rand = prng(seed);
    const pick = (n: number): number => Math.floor(rand() * n);
    const layer: LayerEntry[] = [];
    const files: string[] = [];
    const dirs = [''];
    for (let i = 0; i < 200; i++) {
      const dir = dirs[pick(dirs.length)] as string;
      const path = `${dir === '' ? '' : `${dir}/`}n${pick(50)}`;
      const kind = pick(10);
      const xattrs = pick(4) === 0 ? new Map([[`user.k${pick(3)}`, Buffer.from(`v${pick(3)}`)]]) : new Map<string, Buffer>();
      if (kind < 2) {
        layer.push(entry(path, 'dir', { xattrs, mtimeSec: pick(3) }));
        dirs.push(path);
      } else if (kind < 4 && files.length > 0) {
        layer.push(entry(path, 'hardlink', { linkname: files[pick(files.length)] as string }));
      } else if (kind < 5) {
        layer.push(entry(path, 'symlink', { linkname: `t${pick(100)}` }));
      } else if (kind < 7) {
        layer.push(entry(path, 'file', { size: 5000 + pick(10), object: pick(2) === 0 ? OBJECT_A : OBJECT_B, inline: null, xattrs }));
        files.push(path);
      } else {
        const size = pick(70);
        layer.push(entry(path, 'file', { size, inline: Buffer.alloc(size, 0x41 + pick(3)), xattrs, uid: pick(3) }));
        files.push(path);
      }
    }
    await bothImages([layer]);
  }
});

test('composefs tree: a name no image can hold is refused by its path', () => {
  // The merge refuses such an entry itself (with a warning): the name is set on the row here.
  const long = `usr/${'n'.repeat(256)}`;
  const merged = mergeLayers([[entry('usr', 'dir'), entry('usr/x')]], { rules: 'composefs' });
  merged.nodes.name[merged.nodes.find('usr/x')] = 'n'.repeat(256);
  assert.throws(() => cfsTreeOfNodes(merged.nodes), (e: Error & { code?: string }) => e.code === 'DUMPFILE_INVALID' && e.message.startsWith(`"/${long}": a name of 256 bytes`));
});

test('composefs tree: an aborted signal stops the copy', () => {
  const merged = mergeLayers([[entry('usr', 'dir'), entry('usr/x')]], { rules: 'composefs' });
  assert.throws(() => cfsTreeOfNodes(merged.nodes, AbortSignal.abort()), { name: 'AbortError' });
});
