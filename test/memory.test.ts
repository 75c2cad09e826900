/**
 * Memory is bounded: a layer holding a 2 GiB file imports with a peak RSS under 512 MiB (a
 * guarantee, docs/guarantees.md). Heavy tier: `npm test` runs it, `npm run test:quick` does not.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createWriteStream, renameSync, statSync } from 'node:fs';
import { once } from 'node:events';
import { join } from 'node:path';
import * as tarStream from 'tar-stream';
import { cleanup, hasTool, heavy, must, tempDir, veritree } from './helpers.ts';
import { buildImage, lines, rewriteConfig, rewriteManifest, write } from './fixtures/oci.ts';

const SKIP = hasTool('umoci') ? false : 'skipped: umoci not installed';
const SIZE = 2 * 1024 ** 3;
const dirs: string[] = [];
after(() => dirs.forEach(cleanup));

/** Streams a plain tar with one SIZE-byte file into the layout as a new layer blob. */
async function writeHugeLayer(layout: string): Promise<{ digest: string; size: number; diffId: string }> {
  const tmp = join(layout, 'blobs', 'sha256', 'incoming');
  const out = createWriteStream(tmp);
  const hash = createHash('sha256');
  const pack = tarStream.pack();
  const consumed = (async () => {
    for await (const c of pack as AsyncIterable<Buffer>) {
      hash.update(c);
      if (!out.write(c)) await once(out, 'drain');
    }
    out.end();
    await once(out, 'finish');
  })();
  const entry = pack.entry({ name: 'big/huge.img', size: SIZE });
  const block = Buffer.alloc(1 << 20);
  for (let off = 0; off < SIZE; off += block.length) {
    block.writeUInt32LE(off / block.length, 0); // every MiB differs a little
    const last = off + block.length >= SIZE;
    if (last) entry.end(Buffer.from(block));
    else if (!entry.write(Buffer.from(block))) await once(entry, 'drain');
  }
  pack.finalize();
  await consumed;
  const hex = hash.digest('hex');
  renameSync(tmp, join(layout, 'blobs', 'sha256', hex));
  return { digest: `sha256:${hex}`, size: statSync(join(layout, 'blobs', 'sha256', hex)).size, diffId: `sha256:${hex}` };
}

test('a layer holding a 2 GiB file imports with peak RSS under 512 MiB, and rebuilds', { skip: SKIP || heavy(), timeout: 600_000 }, async () => {
  const dir = tempDir('veritree-mem-');
  dirs.push(dir);
  const layout = join(dir, 'mem');
  buildImage(layout, 'm', [(root) => write(root, 'etc/x', lines(10, 'x'))]);
  const layer = await writeHugeLayer(layout);
  rewriteConfig(layout, 'm', (c) => {
    c.rootfs.diff_ids = [layer.diffId];
  });
  rewriteManifest(layout, 'm', (m) => {
    m.layers = [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: layer.digest, size: layer.size }];
  });
  const repo = join(dir, 'repo');
  const r = veritree(['import', `oci:${layout}:m`, '--repo', repo, '--json'], { timeout: 540_000 });
  assert.equal(r.status, 0, r.stderr);
  const s = JSON.parse(r.stdout) as { peakRssBytes: number; objectsWritten: number; tarBytes: number };
  assert.equal(s.objectsWritten, 1);
  assert.ok(s.tarBytes > SIZE);
  assert.ok(s.peakRssBytes < 512 * 1024 ** 2, `peak RSS ${(s.peakRssBytes / 2 ** 20).toFixed(0)} MiB`);
  // The rebuilt layer hashes to the diff_id (streamed through sha256sum, never held whole).
  const sum = must('sh', ['-c', `node dist/src/cli/main.js cat-layer --repo ${repo} ${layer.diffId} | sha256sum`], { timeout: 540_000 });
  assert.equal(sum.split(' ')[0], layer.diffId.slice(7));
  console.log(`# 2 GiB layer: peak RSS ${(s.peakRssBytes / 2 ** 20).toFixed(0)} MiB`);
});
