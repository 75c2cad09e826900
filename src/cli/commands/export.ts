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
      .description('write a stored image as an OCI image layout (oci:DIR[:REF]) or a tar of one (oci-archive:FILE[:REF]), its layers rebuilt from the store')
      .argument('<image>', 'the tag')
      .argument('<target>', 'oci:DIR[:REF] (DIR is made if missing; its other images are kept) or oci-archive:FILE[:REF] (FILE is replaced whole); REF defaults to the tag')
      .addOption(new Option('--compression <c>', 'how layers are stored').choices(['gzip', 'none']).default('gzip'))
      .option('--json', 'print the report as one JSON object')
      .option('--no-progress', 'no live progress on stderr, even on a terminal')
      .addHelpText('after', "\nThe config is the stored one, byte for byte (same digest). Each layer is rebuilt from the\nstore, checked against its diff_id as it is written, and compressed as asked, so the layer\nblobs and the manifest are new. Then: skopeo copy oci:DIR:REF ..., or umoci unpack.")
  )).action(async (image: string, target: string, o: { repo?: string; compression: 'gzip' | 'none'; json?: boolean; progress: boolean; lockTimeout?: number }) => {
    const archive = target.startsWith('oci-archive:');
    const prefix = archive ? 'oci-archive:' : 'oci:';
    if (!target.startsWith(prefix) || target.length === prefix.length) throw new VeritreeError(ERROR_CODES.USAGE, `target ${JSON.stringify(target)}: expected oci:DIR[:REF] or oci-archive:FILE[:REF]`);
    const rest = target.slice(prefix.length);
    const colon = rest.indexOf(':');
    const dir = colon < 0 ? rest : rest.slice(0, colon);
    const ref = (colon < 0 ? '' : rest.slice(colon + 1)) || image;
    const { exportImage } = await import('../../oci/export.ts');
    const { exportImageArchive } = await import('../../oci/export-archive.ts');
    const repo = await openRepository(resolveRepo(o.repo));
    const line = liveLine(progressWanted(o.progress));
    let r;
    try {
      line.show(`export: reading ${image}`);
      r = await (archive ? exportImageArchive : exportImage)(repo, image, dir, ref, {
        compression: o.compression,
        signal: interruptSignal(),
        onBytes: (done, total) => line.show(`export: ${bar(done, total)} ${formatBytes(done)} / ${formatBytes(total)} rebuilt, checked against the diff_ids`),
        ...lockWaitOptions(o.lockTimeout),
      });
    } finally {
      line.done();
    }
    if (o.json) process.stdout.write(JSON.stringify(r) + '\n');
    else process.stdout.write(`exported ${image} to ${prefix}${dir}:${ref}: manifest ${r.manifest}, ${r.layers.length} layer${r.layers.length === 1 ? '' : 's'} (${o.compression})\n`);
  });
}
