/** `veritree images` and `veritree cat-layer`: what the store holds, and a layer rebuilt. */
import { fstatSync, write } from 'node:fs';
import type { Command } from 'commander';
import { listImages, openRepository, writeLayer } from '../../index.ts';
import { ERROR_CODES, VeritreeError } from '../../errors.ts';
import { formatBytes } from '../output.ts';
import { progressWanted } from '../startup-line.ts';
import { bar, liveLine } from '../progress.ts';
import { repoOption, resolveRepo } from '../repo-option.ts';
import { interruptSignal } from '../signals.ts';
import { layerStreamName } from '../../store/layout.ts';

/**
 * Where cat-layer's pieces go. A regular file is written with fs.write, on libuv's thread pool,
 * each piece whole before the next (it overlaps with reading and hashing the next batch); a pipe
 * or a terminal through process.stdout, the piece released once it has been flushed.
 */
function stdoutSink(): (b: Uint8Array) => Promise<void> {
  if (fstatSync(1).isFile()) {
    return async (b) => {
      for (let off = 0; off < b.length; ) {
        off += await new Promise<number>((resolve, reject) => write(1, b, off, b.length - off, null, (e, n) => (e ? reject(e) : resolve(n))));
      }
    };
  }
  return (b) => new Promise<void>((resolve, reject) => process.stdout.write(b, (e) => (e ? reject(e) : resolve())));
}

export function registerImages(program: Command): void {
  repoOption(
    program
      .command('images')
      .description('list tags with their manifest, config, layers and composefs image id (when written)')
      .option('--json', 'print one JSON array')
      .option('--image-id', "work out the composefs image id (repository's EROFS format) of images that have none written yet: reads every layer")
  ).action(
    async (o: { repo?: string; json?: boolean; imageId?: boolean }) => {
      const repo = await openRepository(resolveRepo(o.repo));
      const images = await listImages(repo);
      if (o.imageId) {
        const { computeImageId } = await import('../../erofs/store-image.ts');
        for (const im of images) im.imageId ??= (await computeImageId(repo, im.tag, { signal: interruptSignal() })).image;
      }
      if (o.json) {
        process.stdout.write(JSON.stringify(images) + '\n');
        return;
      }
      for (const im of images) {
        process.stdout.write(`${im.tag}\n  manifest ${im.manifest}\n  config   ${im.config}\n${im.imageId !== undefined ? `  image    ${im.imageId}\n` : ''}`);
        // Labelled as skopeo inspect names them: the blob's digest (what the manifest and
        // registries show), then the diff_id (the uncompressed tar's, which the store is keyed by).
        for (const [i, l] of im.layers.entries()) {
          process.stdout.write(`  layer ${i + 1}  blob ${l.digest}  ${formatBytes(l.size)} ${l.mediaType.split('.').pop()}\n           diff_id ${l.diffId}\n`);
        }
      }
      if (images.length === 0) process.stderr.write('no images\n');
    }
  );

  repoOption(
    program
      .command('cat-layer')
      .description("write a layer's tar, rebuilt byte for byte from the store, to stdout")
      .argument('<digest>', 'the layer\'s diff_id, or its blob digest as the manifest gives it (sha256:<hex> or <hex>)')
      .option('--no-progress', 'no live progress on stderr, even on a terminal')
  ).action(async (diffId: string, o: { repo?: string; progress: boolean }) => {
    if (process.stdout.isTTY) throw new VeritreeError(ERROR_CODES.USAGE, 'cat-layer writes a tar: redirect stdout to a file or a pipe');
    const repo = await openRepository(resolveRepo(o.repo));
    let want = diffId.replace(/^sha256:/, '');
    if (!(await repo.hasStream(layerStreamName(want)))) {
      // The digest users meet first is the blob's (in the manifest, in registries): map it.
      const hit = (await listImages(repo)).flatMap((im) => im.layers.map((l, i) => ({ im, l, i }))).find(({ l }) => l.digest === `sha256:${want}`);
      if (!hit) throw new VeritreeError(ERROR_CODES.USAGE, `no layer with the diff_id or blob digest sha256:${want} in ${repo.root} (veritree images lists them)`);
      process.stderr.write(`veritree: sha256:${want} is the blob digest of layer ${hit.i + 1} of ${hit.im.tag}; its diff_id is ${hit.l.diffId}\n`);
      want = hit.l.diffId.replace(/^sha256:/, '');
    }
    const line = liveLine(progressWanted(o.progress));
    try {
      await writeLayer(repo, want, stdoutSink(), {
        onBytes: (done, total) => line.show(`cat-layer: ${bar(done, total)} ${formatBytes(done)} / ${formatBytes(total)}, checked against its diff_id as it goes`),
      });
    } finally {
      line.done();
    }
  });
}
