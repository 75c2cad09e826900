/**
 * The merged tree in columns (tree-nodes.ts): what readers see through `nodes` and the dump, and
 * entries the composefs rules refuse by name where a dumpfile line would have been refused.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mergeLayers, sortedPaths } from '../src/merge/merge.ts';
import * as tarStream from 'tar-stream';
import { layerEntries, type LayerEntry } from '../src/merge/layer-entries.ts';
import { SplitStreamBuilder } from '../src/store/splitstream.ts';
import { dumpLines } from '../src/merge/dump.ts';
import { parseDumpfile } from '../src/erofs/dump-parse.ts';
import { writeComposefsImage } from '../src/erofs/writer.ts';

function entry(rawPath: string, type: LayerEntry['type'] = 'file', extra: Partial<LayerEntry> = {}): LayerEntry {
  return { rawPath, type, mode: type === 'dir' ? 0o755 : 0o644, uid: 0, gid: 0, mtimeSec: 1, mtimeNsec: 0, size: 0, object: null, inline: new Uint8Array(0), linkname: '', devmajor: 0, devminor: 0, xattrs: new Map(), ...extra };
}

/** `keys` xattrs of `valueBytes` bytes each: spaces (escaped, four characters a byte in a dumpfile) or letters. */
function flood(keys: number, valueBytes: number, fill = 0x61): Map<string, Buffer> {
  return new Map(Array.from({ length: keys }, (_, i) => [`user.k${i}`, Buffer.alloc(valueBytes, fill)]));
}

test('composefs rules: a node whose xattrs no image can hold is refused by its path; the dump then makes an image', async () => {
  const layers = [[entry('usr', 'dir'), entry('usr/ok', 'file', { xattrs: flood(3, 10) }), entry('usr/spaces', 'file', { xattrs: flood(1000, 20, 0x20) }), entry('usr/area', 'file', { xattrs: flood(400, 80) }), entry('usr/name', 'file', { xattrs: new Map([['user.' + 'n'.repeat(300), Buffer.from('v')]]) })]];
  const cfs = mergeLayers(layers, { rules: 'composefs' });
  const refused = new Map(cfs.warnings.map((w) => [w.path, w.message]));
  assert.match(refused.get('usr/spaces') ?? '', /^refused: 1000 xattrs that take \d+ characters in a dumpfile line \(at most 65535\)$/);
  assert.match(refused.get('usr/area') ?? '', /^refused: 400 xattrs of \d+ bytes \(composefs allows 32767 on one inode\)$/);
  assert.match(refused.get('usr/name') ?? '', /^refused: an xattr name of 305 bytes/);
  assert.deepEqual([...cfs.nodes.keys()], ['', 'usr', 'usr/ok']);
  const dump = Buffer.from([...dumpLines(cfs)].join('\n') + '\n', 'latin1');
  assert.ok(writeComposefsImage(await parseDumpfile([dump])).bytes.length > 0);
  // Checkout's rules keep them: a folder takes any number of xattrs.
  const oci = mergeLayers(layers);
  assert.equal(oci.warnings.length, 0);
  assert.equal(oci.nodes.get('usr/spaces')?.xattrs.size, 1000);
});

test('nodes: get, has, size and the sorted order agree with the paths merged, after removals and replacements', () => {
  const tree = mergeLayers([
    [entry('b', 'dir'), entry('b/x', 'file', { size: 3, inline: Buffer.from('abc') }), entry('a/deep/f'), entry('b/y', 'hardlink', { linkname: 'b/x' }), entry('c', 'symlink', { linkname: '/b/x' })],
    [entry('a/.wh.deep'), entry('b/x', 'file', { size: 1, inline: Buffer.from('n') }), entry('d', 'char', { devmajor: 1, devminor: 3 })],
  ]);
  const order = sortedPaths(tree.nodes);
  assert.deepEqual(order, ['', 'a', 'b', 'b/x', 'b/y', 'c', 'd']);
  assert.equal(tree.nodes.size, order.length);
  assert.ok(!tree.nodes.has('a/deep') && !tree.nodes.has('a/deep/f'));
  // In order, back again, and out of order: the same nodes.
  for (const p of [...order, ...order.reverse(), 'd', 'b/y', '']) assert.equal(tree.nodes.get(p)?.path, p);
  assert.equal(Buffer.from(tree.nodes.get('b/x')?.inline ?? []).toString(), 'n');
  const y = tree.nodes.get('b/y');
  assert.equal(y?.hardlinkTo, null, 'its first name was replaced: the link keeps the old content as a file of its own');
  assert.equal(Buffer.from(y?.inline ?? []).toString(), 'abc');
  assert.deepEqual([tree.nodes.get('d')?.devmajor, tree.nodes.get('d')?.devminor, tree.nodes.get('c')?.symlinkTarget], [1, 3, '/b/x']);
  assert.equal(tree.nodes.get('nope'), undefined);
});

/** One entry as tar-stream packs it, without the end-of-archive blocks. */
async function packed(header: Partial<tarStream.Header> & { name: string }, content: Buffer): Promise<Buffer> {
  const pack = tarStream.pack();
  pack.entry(header, content);
  pack.finalize();
  const parts: Buffer[] = [];
  for await (const c of pack) parts.push(c as Buffer);
  const all = Buffer.concat(parts);
  return all.subarray(0, all.length - 1024);
}

test('layer entries read from the stream section run by run: the same entries as the tar, across every run boundary', async () => {
  // 3,000 entries with PAX names and xattrs, inline contents up to 2,000 bytes and some contents
  // as objects: the decoded section spans several runs of at most 4,096 chunks and 1 MiB, so
  // headers, PAX records, contents and object chunks fall across run ends.
  const b = new SplitStreamBuilder('sha256', 'layer');
  const want: { path: string; size: number; object: string | null; content: string | null; xattr: string | null }[] = [];
  for (let i = 0; i < 3000; i++) {
    const path = i % 7 === 0 ? `d/${'long-name-'.repeat(15)}${i}` : `d/f${i}`;
    const size = (i * 37) % 2000;
    const content = Buffer.alloc(size, i & 0xff);
    const pax = i % 5 === 0 ? { 'SCHILY.xattr.user.i': String(i) } : undefined;
    const bytes = await packed({ name: path, size, ...(pax ? { pax } : {}) }, content);
    const asObject = i % 3 === 0 && size > 0;
    const padded = Math.ceil(size / 512) * 512;
    const object = asObject ? i.toString(16).padStart(64, '0') : null;
    if (asObject) {
      b.addInline(bytes.subarray(0, bytes.length - padded));
      b.addObject(object as string, size);
      b.addInline(bytes.subarray(bytes.length - padded + size));
    } else b.addInline(bytes);
    want.push({ path, size, object, content: asObject ? null : content.toString('latin1'), xattr: pax ? String(i) : null });
  }
  b.addInline(Buffer.alloc(1024));
  const got = [];
  for await (const e of layerEntries(b.finish())) {
    got.push({ path: e.rawPath, size: e.size, object: e.object, content: e.object ? null : Buffer.from(e.inline ?? []).toString('latin1'), xattr: e.xattrs.get('user.i')?.toString() ?? null });
  }
  assert.equal(got.length, want.length);
  for (let i = 0; i < want.length; i++) assert.deepEqual(got[i], want[i], `entry ${i}`);
});
