/** `veritree seal`, `veritree verify`: sealed images (composefs-rs's sealing_spec.rs). */
import { Option, type Command } from 'commander';
import { EXIT } from '../exit-codes.ts';
import { shown } from '../../oci/names.ts';
import { warn } from '../startup-line.ts';
import { lockTimeoutOption, lockWaitOptions, repoOption, resolveRepo } from '../repo-option.ts';
import { interruptSignal } from '../signals.ts';
import type { SealReport } from '../../verify/seal-check.ts';

/** One line per check and signature: `ok|MISMATCH|unchecked KEY ...`. */
function printChecks(r: SealReport): void {
  for (const c of r.checks) {
    const where = `${c.key}${c.layer !== undefined ? ` (layer ${c.layer + 1})` : ''} [${c.source}]`;
    if (c.status === 'ok') process.stdout.write(`ok ${where}: ${c.expected}\n`);
    else if (c.status === 'mismatch') process.stdout.write(`MISMATCH ${where}: expected ${c.expected}, computed ${c.found ?? '-'}${c.why ? ` (${c.why})` : ''}\n`);
    else process.stdout.write(`unchecked ${where}: ${c.why ?? ''}\n`);
  }
  for (const s of r.signatures) process.stdout.write(`signature ${s.key} [${s.source}]: ${s.bytes} bytes, carried, not checked\n`);
}

export function registerSeal(program: Command): void {
  repoOption(lockTimeoutOption(
    program
      .command('seal')
      .description('write a stored image as an OCI layout sealed with its composefs digests (composefs-rs sealing_spec.rs): inline annotations, or a referrer artifact')
      .argument('<image>', 'the tag')
      .requiredOption('--out <target>', 'oci:DIR[:REF] or oci-archive:FILE[:REF]; REF defaults to the tag')
      .addOption(new Option('--compression <c>', 'how layers are stored').choices(['gzip', 'none']).default('gzip'))
      .option('--artifact', 'leave the image unchanged and write a composefs referrer artifact (application/vnd.composefs.metadata.v1) beside it')
      .option('--json', 'print the report as one JSON object')
      .addHelpText('after', '\nInline: the manifest carries composefs.merged.erofs.v1.fsverity-sha256-12, the config descriptor\ncomposefs.config.fsverity-sha256-12, each layer composefs.layer.erofs.v1.fsverity-sha256-12\n(fsverity-sha512-12 in a SHA-512 repository).\nThe merged digest is that of the V1 composefs image (mkcomposefs --min-version=1).\nveritree import checks these digests and refuses an image whose content differs.')
  )).action(async (image: string, o: { repo?: string; out: string; compression: 'gzip' | 'none'; artifact?: boolean; json?: boolean; lockTimeout?: number }) => {
    const { sealImage } = await import('../../oci/seal.ts');
    const { openRepository } = await import('../../index.ts');
    const repo = await openRepository(resolveRepo(o.repo));
    const r = await sealImage(repo, image, o.out, {
      artifact: o.artifact === true,
      compression: o.compression,
      signal: interruptSignal(),
      onWarning: (p, m) => warn(`/${shown(p)}: ${m}`),
      ...lockWaitOptions(o.lockTimeout),
    });
    if (o.json) {
      process.stdout.write(JSON.stringify(r) + '\n');
      return;
    }
    for (const [k, v] of Object.entries(r.digests)) process.stdout.write(`${k}: ${v}\n`);
    process.stdout.write(`sealed ${image} (${r.mode}) to ${o.out}: manifest ${r.manifest}${r.artifact ? `, artifact ${r.artifact}` : ''}\n`);
  });

  repoOption(lockTimeoutOption(
    program
      .command('verify')
      .description("check a stored image against the seal it carries (inline composefs digests or the containers.composefs.fsverity label)")
      .argument('<image>', 'the tag')
      .option('--json', 'print the report as one JSON object')
      .addHelpText('after', '\nEach digest is computed from the image as the store holds it. Exit status: 0 when every digest\ncomputed matches, 1 when the image carries no seal, 3 (SEAL_MISMATCH) when one differs.\nDigests veritree cannot compute (SHA-512 images, erofs.v2, merged.bootable) are reported\nunchecked; signatures are reported, not checked.')
  )).action(async (image: string, o: { repo?: string; json?: boolean; lockTimeout?: number }) => {
    const { verifyImageSeal } = await import('../../verify/seal-verify.ts');
    const { assertSealHolds } = await import('../../verify/seal-check.ts');
    const { openRepository } = await import('../../index.ts');
    const repo = await openRepository(resolveRepo(o.repo));
    const r = await verifyImageSeal(repo, image, { signal: interruptSignal(), onWarning: (p, m) => warn(`/${shown(p)}: ${m}`), ...lockWaitOptions(o.lockTimeout) });
    if (o.json) process.stdout.write(JSON.stringify(r) + '\n');
    else printChecks(r);
    if (!r.sealed) {
      if (!o.json) process.stdout.write(`${image} carries no seal\n`);
      process.exitCode = EXIT.ISSUES;
      return;
    }
    assertSealHolds(r, image);
    if (!o.json) process.stdout.write(`the seal of ${image} holds: ${r.checks.filter((c) => c.status === 'ok').length} digests match\n`);
  });
}
