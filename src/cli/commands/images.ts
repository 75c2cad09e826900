/** `veritree images` and `veritree cat-layer`: what the store holds, and a layer rebuilt. */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import type { Command } from 'commander';
import { catLayer, listImages, openRepository } from '../../index.ts';
import { ERROR_CODES, VeritreeError } from '../../errors.ts';
import { formatBytes } from '../output.ts';
import { repoOption, resolveRepo } from '../repo-option.ts';

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
      .argument('<diff-id>', 'the layer\'s diff_id (sha256:<hex> or <hex>)')
  ).action(async (diffId: string, o: { repo?: string }) => {
    if (process.stdout.isTTY) throw new VeritreeError(ERROR_CODES.USAGE, 'cat-layer writes a tar: redirect stdout to a file or a pipe');
    const repo = await openRepository(resolveRepo(o.repo));
    const hash = createHash('sha256');
    const want = diffId.replace(/^sha256:/, '');
    for await (const chunk of catLayer(repo, want)) {
      hash.update(chunk);
      if (!process.stdout.write(chunk)) await once(process.stdout, 'drain');
    }
    const got = hash.digest('hex');
    if (got !== want) {
      throw new VeritreeError(ERROR_CODES.STORE_CORRUPT, `rebuilt layer is sha256:${got}, not sha256:${want}: the store is damaged (run veritree fsck)`);
    }
  });
}
