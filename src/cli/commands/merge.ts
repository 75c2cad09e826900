/** `veritree checkout` and `veritree dump`: an image's layers merged into one tree. */
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { Option, type Command } from 'commander';
import { checkoutImage, dumpImageLines, openRepository, type MergeRules } from '../../index.ts';
import { lockTimeoutOption, lockWaitOptions, repoOption, resolveRepo } from '../repo-option.ts';
import { shown } from '../../oci/names.ts';
import { interruptSignal } from '../signals.ts';
import { bar, liveLine } from '../progress.ts';
import { progressWanted, warn } from '../startup-line.ts';

export function registerMerge(program: Command): void {
  repoOption(lockTimeoutOption(
    program
      .command('checkout')
      .description("write an image's merged filesystem (whiteouts applied) to DIR; files are reflinked or copied from the store's objects")
      .argument('<image>', 'the tag')
      .argument('<dir>', 'a new or empty folder')
      .option('--copy', 'copy every file (no reflink: a copy of its own)')
      .option('--hardlink', 'hard-link files to their objects: fast, but each file SHARES METADATA with the store (a chmod or chown changes the object and that file in every other checkout), and without fs-verity its contents too (a write changes the object for every image, and fsck reports the store damaged)')
      .option('--json', 'print the report as one JSON object')
      .option('--no-progress', 'no live progress, even on a terminal')
      .addHelpText(
        'after',
        `
A file is reflinked (FICLONE) from its object where the filesystem can, else copied
(copy_file_range), in the worker pool: no file shares an inode with the store. It is a hard link
to its object only with --hardlink (sharing the object's metadata), and only when DIR is on the store's filesystem
and the object already has the file's mode (and, as root, its owner): the object's inode is never
changed, so such files keep the store's mtime. Every entry is created relative to an open handle
of its folder, never following a symlink. Owners, device nodes and FIFOs are applied when running
as root. Entries that climb out of the image, lie beneath a symlink or hard-link outside the image
are refused with a warning. Every object is hashed as it is copied (or measured by fs-verity)
and must match its name. It holds the repository's shared lock: gc and repair wait for it.`
      )
  )).action(async (image: string, dir: string, o: { repo?: string; copy?: boolean; hardlink?: boolean; json?: boolean; progress: boolean; lockTimeout?: number }) => {
    const repo = await openRepository(resolveRepo(o.repo));
    const line = liveLine(progressWanted(o.progress && !o.json));
    let r;
    try {
      r = await checkoutImage(repo, image, dir, {
        copy: o.copy,
        hardlink: o.hardlink,
        signal: interruptSignal(),
        ...lockWaitOptions(o.lockTimeout),
        onWarning: (p, m) => warn(`/${shown(p)}: ${m}`),
        onProgress: (p) => line.show(`checkout: ${bar(p.done, p.total)} ${p.done} of ${p.total} entries written`),
      });
    } finally {
      line.done();
    }
    if (o.json) process.stdout.write(JSON.stringify(r) + '\n');
    else {
      const n = (k: number, one: string, many: string): string => `${k} ${k === 1 ? one : many}`;
      const parts = [
        `${n(r.files, 'file', 'files')} (${r.files - r.copied - r.hardlinkedObjects} written from the stream, ${r.copied} copied or reflinked from objects, ${r.hardlinkedObjects} hard-linked to objects)`,
        n(r.dirs, 'directory', 'directories'),
        n(r.symlinks, 'symlink', 'symlinks'),
        n(r.hardlinks, 'hard link within the image', 'hard links within the image'),
        ...(r.specials ? [n(r.specials, 'device or FIFO', 'devices and FIFOs')] : []),
        ...(r.skipped ? [`${r.skipped} skipped (see the warnings)`] : []),
      ];
      process.stdout.write(`checked out ${image} to ${dir}: ${parts.join(', ')}\n`);
    }
  });

  lockTimeoutOption(repoOption(
    program
      .command('dump')
      .description("print the image's merged tree as a composefs dumpfile (for mkcomposefs --from-file)")
      .argument('<image>', 'the tag')
      .option('-o, --output <file>', 'write to FILE instead of stdout')
      .addOption(new Option('--rules <rules>', "how the layers make the tree: composefs (composefs-rs's, for the same image digest) or oci (the tree checkout writes)").choices(['composefs', 'oci']).default('composefs'))
      .addHelpText('after', '\nThen: mkcomposefs --from-file DUMP image.cfs, and mount it with the store\'s objects/ as basedir.\nThe two rule sets differ in the root folder, /run, sub-second mtimes, whiteout order and hard\nlinks to non-regular files (docs/merge.md).')
  )).action(async (image: string, o: { repo?: string; output?: string; rules: MergeRules; lockTimeout?: number }) => {
    const repo = await openRepository(resolveRepo(o.repo));
    const out = o.output ? createWriteStream(o.output) : process.stdout;
    // Lines go out in pieces of about 1 MiB: one write per line cost a system call per entry.
    let piece: string[] = [];
    let size = 0;
    const flush = async (): Promise<void> => {
      if (piece.length === 0) return;
      const ok = out.write(`${piece.join('\n')}\n`);
      piece = [];
      size = 0;
      if (!ok) await once(out, 'drain');
    };
    for await (const line of dumpImageLines(repo, image, (p, m) => warn(`/${shown(p)}: ${m}`), o.rules, { signal: interruptSignal(), ...lockWaitOptions(o.lockTimeout) })) {
      piece.push(line);
      size += line.length + 1;
      if (size >= 1 << 20) await flush();
    }
    await flush();
    if (o.output) {
      (out as ReturnType<typeof createWriteStream>).end();
      await once(out, 'finish');
    }
  });
}
