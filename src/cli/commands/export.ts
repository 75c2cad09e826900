/** `veritree export`: a stored image written back out as an OCI image layout. */
import { Option, type Command } from 'commander';
import { openRepository } from '../../index.ts';
import { ERROR_CODES, VeritreeError } from '../../errors.ts';
import { formatBytes } from '../output.ts';
import { progressWanted } from '../startup-line.ts';
import { bar, liveLine } from '../progress.ts';
import { lockTimeoutOption, lockWaitOptions, repoOption, resolveRepo } from '../repo-option.ts';
import { interruptSignal } from '../signals.ts';

export function registerExport(program: Command): void {
  repoOption(lockTimeoutOption(
    program
      .command('export')
      .description('write a stored image as an OCI image layout (oci:DIR[:REF]), its layers rebuilt from the store')
      .argument('<image>', 'the tag')
      .argument('<target>', 'oci:DIR[:REF]; REF defaults to the tag. DIR is made if missing; its other images are kept')
      .addOption(new Option('--compression <c>', 'how layers are stored').choices(['gzip', 'none']).default('gzip'))
      .option('--json', 'print the report as one JSON object')
      .option('--no-progress', 'no live progress on stderr, even on a terminal')
      .addHelpText('after', "\nThe config is the stored one, byte for byte (same digest). Each layer is rebuilt from the\nstore, checked against its diff_id as it is written, and compressed as asked, so the layer\nblobs and the manifest are new. Then: skopeo copy oci:DIR:REF ..., or umoci unpack.")
  )).action(async (image: string, target: string, o: { repo?: string; compression: 'gzip' | 'none'; json?: boolean; progress: boolean; lockTimeout?: number }) => {
    if (!target.startsWith('oci:') || target.length === 4) throw new VeritreeError(ERROR_CODES.USAGE, `target ${JSON.stringify(target)}: expected oci:DIR[:REF]`);
    const rest = target.slice(4);
    const colon = rest.indexOf(':');
    const dir = colon < 0 ? rest : rest.slice(0, colon);
    const ref = (colon < 0 ? '' : rest.slice(colon + 1)) || image;
    const { exportImage } = await import('../../oci/export.ts');
    const repo = await openRepository(resolveRepo(o.repo));
    const line = liveLine(progressWanted(o.progress));
    let r;
    try {
      line.show(`export: reading ${image}`);
      r = await exportImage(repo, image, dir, ref, {
        compression: o.compression,
        signal: interruptSignal(),
        onBytes: (done, total) => line.show(`export: ${bar(done, total)} ${formatBytes(done)} / ${formatBytes(total)} rebuilt, checked against the diff_ids`),
        ...lockWaitOptions(o.lockTimeout),
      });
    } finally {
      line.done();
    }
    if (o.json) process.stdout.write(JSON.stringify(r) + '\n');
    else process.stdout.write(`exported ${image} to oci:${dir}:${ref}: manifest ${r.manifest}, ${r.layers.length} layer${r.layers.length === 1 ? '' : 's'} (${o.compression})\n`);
  });
}
