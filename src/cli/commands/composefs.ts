/**
 * `veritree mkfs`, `image`, `mount` and `umount`: composefs EROFS images. Each action loads what
 * it uses: mkfs is a job of a few hundred milliseconds, and the library's entry (with the hash
 * back ends it re-exports) would add a tenth to it.
 */
import { createReadStream } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import { InvalidArgumentError, type Command } from 'commander';
import { lockTimeoutOption, lockWaitOptions, repoOption, resolveRepo } from '../repo-option.ts';
import { shown } from '../../oci/names.ts';
import { interruptSignal } from '../signals.ts';
import { parseErofsVersion } from '../options.ts';
import type { ErofsVersion } from '../../store/meta.ts';
import { warn } from '../startup-line.ts';

function parseVersion(v: string): number {
  if (v !== '0' && v !== '1') throw new InvalidArgumentError('composefs format versions are 0 and 1');
  return Number(v);
}

interface MkfsCliOptions {
  minVersion?: number;
  maxVersion?: number;
  printDigest?: boolean;
  printDigestOnly?: boolean;
  strict?: boolean;
}

export function registerComposefs(program: Command): void {
  program
    .command('mkfs')
    .description('write the composefs EROFS image of a dumpfile, byte for byte what mkcomposefs --from-file writes')
    .argument('<dumpfile>', "a composefs dumpfile (composefs-dump(5)), or - for standard input")
    .argument('[image]', 'the image file to write, or - for standard output')
    .option('--min-version <n>', 'lowest format version (default 0)', parseVersion)
    .option('--max-version <n>', 'highest format version (default 1; a tree with whiteouts is written at 1 when allowed)', parseVersion)
    .option('--print-digest', "print the image's fs-verity digest")
    .option('--print-digest-only', 'print the digest and write no image')
    .option('--strict', "also refuse what mkcomposefs refuses only under CFS_PARSE_STRICT: a missing final newline, a device number on a non-device, a symlink whose size is not its target's length")
    .addHelpText('after', '\nA bad dumpfile is refused with the number of the line at fault (exit 3). The image is written\nwhole or not at all.')
    .action(async (dumpfile: string, image: string | undefined, o: MkfsCliOptions) => {
      if (!o.printDigestOnly && image === undefined) throw new InvalidArgumentError('no image path given (or use --print-digest-only)');
      if (o.printDigestOnly && image !== undefined) throw new InvalidArgumentError('--print-digest-only writes no image: drop the image path');
      // Read in big pieces: a distro's dumpfile is megabytes, and each piece costs a turn of the event loop.
      const input = dumpfile === '-' ? process.stdin : createReadStream(dumpfile, { highWaterMark: 1 << 20 });
      const { imageOfDumpfile } = await import('../../erofs/mkfs.ts');
      const r = await imageOfDumpfile(input, {
        strict: o.strict === true,
        signal: interruptSignal(),
        ...(o.minVersion !== undefined ? { minVersion: o.minVersion } : {}),
        ...(o.maxVersion !== undefined ? { maxVersion: o.maxVersion } : {}),
      });
      if (image === '-') {
        if (process.stdout.isTTY) throw new InvalidArgumentError('standard output is a terminal: refusing to write an image to it');
        process.stdout.write(r.bytes);
      } else if (image !== undefined) {
        // A temporary name renamed into place: a failed or interrupted write leaves no image.
        const tmp = `${image}.tmp-${process.pid}`;
        await writeFile(tmp, r.bytes, { mode: 0o644 });
        await rename(tmp, image);
      }
      if (o.printDigest || o.printDigestOnly) {
        const { toHex, verityDigest } = await import('../../verity/index.ts');
        process.stdout.write(`${toHex(verityDigest(r.bytes, 'sha256'))}\n`);
      }
    });

  repoOption(lockTimeoutOption(
    program
      .command('image')
      .description("write the composefs EROFS image of a tagged image into the store, as composefs-rs does (images/<digest>, the config's composefs.image.v1 or composefs.image ref); print its digest")
      .argument('<image>', 'the tag')
      .option('--json', 'print the report as one JSON object')
      .option('--erofs-version <n>', "write this EROFS format only (0, 1 or 2) instead of the repository's (meta.json), as cfsctl --erofs-version", parseErofsVersion)
      .addHelpText(
        'after',
        "\nThe image is in the repository's EROFS format: V0 is what mkcomposefs --from-file writes for\n`veritree dump IMAGE`, V1 what mkcomposefs --min-version=1 writes, V2 what composefs-rs's legacy\nwriter writes. Images of meta.json's extra formats are written beside it. Running it again\nwrites nothing. Then: veritree mount IMAGE DIR (or cfsctl oci mount)."
      )
  )).action(async (tag: string, o: { repo?: string; json?: boolean; lockTimeout?: number; erofsVersion?: ErofsVersion }) => {
    const { openRepository, writeStoreImage } = await import('../../index.ts');
    const repo = await openRepository(resolveRepo(o.repo));
    const r = await writeStoreImage(repo, tag, {
      signal: interruptSignal(),
      onWarning: (p, m) => warn(`/${shown(p)}: ${m}`),
      ...lockWaitOptions(o.lockTimeout),
      ...(o.erofsVersion !== undefined ? { erofsVersion: o.erofsVersion } : {}),
    });
    // The digest alone on stdout (what scripts take); on a terminal, what was done beside it.
    if (o.json) process.stdout.write(JSON.stringify(r) + '\n');
    else if (process.stdout.isTTY) {
      process.stdout.write(`${r.image}  ${tag}: ${r.written ? 'written' : 'already in the store'} (EROFS format V${r.format}, ${r.inodes} inodes, ${r.bytes} bytes, composefs_version ${r.version})\n`);
      for (const x of r.extra) process.stdout.write(`${x.image}  ${tag}: EROFS format V${x.format}, beside it\n`);
    }
    else process.stdout.write(`${r.image}\n`);
  });

  repoOption(
    program
      .command('compute-id')
      .description("print the composefs image id a tagged image has in the repository's EROFS format, writing nothing (cfsctl oci compute-id)")
      .argument('<image>', 'the tag')
      .option('--erofs-version <n>', "this EROFS format (0, 1 or 2) instead of the repository's", parseErofsVersion)
  ).action(async (tag: string, o: { repo?: string; erofsVersion?: ErofsVersion }) => {
    const { openRepository } = await import('../../index.ts');
    const { computeImageId } = await import('../../erofs/store-image.ts');
    const repo = await openRepository(resolveRepo(o.repo));
    const r = await computeImageId(repo, tag, {
      signal: interruptSignal(),
      onWarning: (p, m) => warn(`/${shown(p)}: ${m}`),
      ...(o.erofsVersion !== undefined ? { erofsVersion: o.erofsVersion } : {}),
    });
    process.stdout.write(`${r.image}\n`);
  });

  repoOption(
    program
      .command('mount')
      .description("mount a composefs image read-only at DIR, its files served from the store's objects (needs root)")
      .argument('<image>', 'a tag (its composefs image, from veritree image) or an image digest under images/')
      .argument('<dir>', 'an existing folder')
      .addHelpText('after', "\nA tag without a composefs image gets one written first (as veritree image does). The image's\ndigest is checked before it is mounted. erofs on a loop device, then overlayfs with\nthe image as lower layer and objects/ as data-only layer (metacopy=on, redirect_dir=on,\nverity=require where the store requires fs-verity), as mount.composefs does.\nUndo with: veritree umount DIR (or umount DIR).")
  ).action(async (image: string, dir: string, o: { repo?: string }) => {
    const { openRepository, mountImage, writeStoreImage } = await import('../../index.ts');
    const repo = await openRepository(resolveRepo(o.repo));
    const { isObjectId } = await import('../../store/layout.ts');
    if (!isObjectId(image, repo.alg)) {
      // The composefs image is derived data: a tag without one gets it built first, and says so.
      const { storedImageOf } = await import('../../erofs/store-image.ts');
      if ((await storedImageOf(repo, image)) === null) {
        process.stderr.write(`veritree: ${image} has no composefs image yet: writing it (veritree image ${image})\n`);
        await writeStoreImage(repo, image, { signal: interruptSignal(), onWarning: (p, m) => warn(`/${shown(p)}: ${m}`) });
      }
    }
    const r = await mountImage(repo, image, dir);
    // Insecure means the kernel serves an object replaced by other bytes: said once, on stderr.
    if (!r.verity) process.stderr.write(`veritree: notice: ${repo.root} is an insecure repository (meta.json has no fs-verity): mounted without verity=require, so a replaced object is served as it is\n`);
    process.stdout.write(`mounted composefs image ${r.image} at ${dir}${r.verity ? ' (verity=require)' : ' (insecure: objects are not checked by the kernel)'}\n`);
  });

  program
    .command('umount')
    .description('unmount a composefs image mounted by veritree mount')
    .argument('<dir>', 'the mount point')
    .action(async (dir: string) => {
      const { unmountImage } = await import('../../erofs/mount.ts');
      unmountImage(dir);
    });
}
