/** `veritree images` and `veritree cat-layer`: what the store holds, and a layer rebuilt. */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import type { Command } from 'commander';
import { catLayer, listImages, openRepository } from '../../index.ts';
import { ERROR_CODES, VeritreeError } from '../../errors.ts';
import { formatBytes } from '../output.ts';
import { repoOption, resolveRepo } from '../repo-option.ts';
import { layerStreamName } from '../../store/layout.ts';

const OUT_BUFFER = 1 << 20;

export function registerImages(program: Command): void {
  repoOption(program.command('images').description('list tags with their manifest, config and layers').option('--json', 'print one JSON array')).action(
    async (o: { repo?: string; json?: boolean }) => {
      const images = await listImages(await openRepository(resolveRepo(o.repo)));
      if (o.json) {
        process.stdout.write(JSON.stringify(images) + '\n');
        return;
      }
      for (const im of images) {
        process.stdout.write(`${im.tag}\n  manifest ${im.manifest}\n  config   ${im.config}\n`);
        for (const [i, l] of im.layers.entries()) process.stdout.write(`  layer ${i + 1}  ${l.diffId}  (${formatBytes(l.size)} ${l.mediaType.split('.').pop()})\n`);
      }
      if (images.length === 0) process.stderr.write('no images\n');
    }
  );

  repoOption(
    program
      .command('cat-layer')
      .description("write a layer's tar, rebuilt byte for byte from the store, to stdout")
      .argument('<digest>', 'the layer\'s diff_id, or its blob digest as the manifest gives it (sha256:<hex> or <hex>)')
  ).action(async (diffId: string, o: { repo?: string }) => {
    if (process.stdout.isTTY) throw new VeritreeError(ERROR_CODES.USAGE, 'cat-layer writes a tar: redirect stdout to a file or a pipe');
    const repo = await openRepository(resolveRepo(o.repo));
    const hash = createHash('sha256');
    let want = diffId.replace(/^sha256:/, '');
    if (!(await repo.hasStream(layerStreamName(want)))) {
      // The digest users meet first is the blob's (in the manifest, in registries): map it.
      const hit = (await listImages(repo)).flatMap((im) => im.layers.map((l, i) => ({ im, l, i }))).find(({ l }) => l.digest === `sha256:${want}`);
      if (!hit) throw new VeritreeError(ERROR_CODES.USAGE, `no layer with the diff_id or blob digest sha256:${want} in ${repo.root} (veritree images lists them)`);
      process.stderr.write(`veritree: sha256:${want} is the blob digest of layer ${hit.i + 1} of ${hit.im.tag}; its diff_id is ${hit.l.diffId}\n`);
      want = hit.l.diffId.replace(/^sha256:/, '');
    }
    // A layer is mostly small pieces (512-byte headers, small files): one write per MiB, not
    // one per piece (on a file, each is a system call on this thread).
    let out = Buffer.allocUnsafe(OUT_BUFFER);
    let used = 0;
    const emit = async (b: Uint8Array): Promise<void> => {
      hash.update(b);
      if (!process.stdout.write(b)) await once(process.stdout, 'drain');
    };
    const flush = async (): Promise<void> => {
      if (used === 0) return;
      // A pipe may hold the buffer after write() returns: the next pieces go to a fresh one.
      const full = out.subarray(0, used);
      out = Buffer.allocUnsafe(OUT_BUFFER);
      used = 0;
      await emit(full);
    };
    for await (const chunk of catLayer(repo, want)) {
      if (used + chunk.length > OUT_BUFFER || chunk.length >= OUT_BUFFER / 2) await flush();
      if (chunk.length >= OUT_BUFFER / 2) await emit(chunk);
      else {
        out.set(chunk, used);
        used += chunk.length;
      }
    }
    await flush();
    const got = hash.digest('hex');
    if (got !== want) {
      throw new VeritreeError(ERROR_CODES.STORE_CORRUPT, `rebuilt layer is sha256:${got}, not sha256:${want}: the store is damaged (run veritree fsck)`);
    }
  });
}
