/** `veritree fsck`, `veritree gc`, `veritree untag`: checking and cleaning a store. */
import type { Command } from 'commander';
import { fsck, gc, openRepository, repair, untagImage, type FsckReport, type GcReport, type RepairReport } from '../../index.ts';
import { VeritreeError, ERROR_CODES } from '../../errors.ts';
import { lockOptionsFrom } from '../../store/lock.ts';
import { EXIT } from '../exit-codes.ts';
import { liveLine } from '../progress.ts';
import { progressWanted } from '../startup-line.ts';
import { formatBytes, warnNativeFallback } from '../output.ts';
import { parseImpl, parsePositiveInt } from '../options.ts';
import { lockTimeoutOption, lockWaitOptions, repoOption, resolveRepo } from '../repo-option.ts';
import { interruptSignal } from '../signals.ts';
import type { HashImpl } from '../../verity/backends.ts';

interface FsckCliOptions {
  repo?: string;
  json?: boolean;
  repair?: boolean;
  objectsOnly?: boolean;
  deep?: boolean;
  jobs?: number;
  ioLimit?: number;
  hashImpl: HashImpl;
  progress: boolean;
  lockTimeout?: number;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function printFsck(r: FsckReport): void {
  for (const i of r.issues) {
    const ef = i.expected !== undefined || i.found !== undefined ? ` (expected ${i.expected ?? '-'}, found ${i.found ?? '-'})` : '';
    process.stdout.write(`${i.type}: ${i.path}: ${i.detail}${ef}\n`);
  }
  for (const u of r.unknownRefs) process.stdout.write(`note: stream ${u.stream} has the named ref ${JSON.stringify(u.ref)} (object ${u.object}), of a kind veritree does not know: kept, not checked\n`);
  const what = r.objectsOnly ? 'objects only' : `${plural(r.streams, 'stream')}, ${plural(r.tags, 'tag')}${r.images ? `, ${plural(r.images, 'composefs image')}` : ''}${r.layersRebuilt ? `, ${plural(r.layersRebuilt, 'layer')} rebuilt` : ''}`;
  process.stdout.write(
    `${r.ok ? 'ok' : `${r.issues.length} problem${r.issues.length === 1 ? '' : 's'}`}: ${r.objects} objects (${formatBytes(r.bytes)}) re-hashed, ${what}, in ${r.seconds.toFixed(2)} s\n`
  );
}

function printRepair(r: RepairReport): void {
  if (r.quarantined.length) process.stdout.write(`moved ${r.quarantined.length} corrupt entr${r.quarantined.length === 1 ? 'y' : 'ies'} to ${r.quarantine}\n`);
  for (const s of r.streamsRelinked) process.stdout.write(`relinked stream ${s} in composefs-rs's form\n`);
  for (const s of r.streamsRemoved) process.stdout.write(`removed stream ${s}\n`);
  if (r.tmpRemoved) process.stdout.write(`removed ${r.tmpRemoved} stray tmp file(s)\n`);
  for (const t of r.tagsRemoved) process.stdout.write(`removed tag ${t.tag}: import it again (manifest ${t.manifest})\n`);
  for (const t of r.tagsRewritten) process.stdout.write(`rewrote tag ${t.tag}: ${t.from} -> ${t.to}\n`);
  for (const i of r.imagesRewritten) process.stdout.write(`wrote the composefs image of ${i.tag} again: ${i.image}\n`);
  for (const i of r.imagesNotRewritten) process.stdout.write(`could not write the composefs image of ${i.tag} again (${i.why}): import it again, then run veritree image ${i.tag}\n`);
  for (const l of r.imageLinksRemoved) process.stdout.write(`removed image link images/${l}\n`);
}

export function printGc(r: GcReport): void {
  const verb = r.dryRun ? 'would remove' : 'removed';
  process.stdout.write(
    `${verb} ${r.objectsRemoved} objects (${formatBytes(r.bytesFreed)}), ${r.streamsRemoved.length} stream links, ${r.imagesRemoved.length ? `${r.imagesRemoved.length} image links, ` : ''}${r.tmpRemoved} tmp files; kept ${r.objectsKept} objects reachable from ${r.roots} roots\n`
  );
}

export function registerVerify(program: Command): void {
  lockTimeoutOption(repoOption(
    program
      .command('fsck')
      .description('re-hash every object and check every reference of a store (veritree\'s own, or one made by cfsctl or mkcomposefs --digest-store)')
      .option('--json', 'print the report as one JSON object')
      .option('--repair', 'move corrupt objects to REPO/quarantine/, remove streams and tags that can no longer be rebuilt, and say which images to import again')
      .option('--objects-only', 'only re-hash objects (a store without meta.json is always checked so)')
      .option('--deep', 'also rebuild every layer from its stream and check it against its diff_id')
      .option('-j, --jobs <n>', 'worker threads (default: min(cores, --io-limit))', parsePositiveInt)
      .option('--io-limit <n>', 'cap on workers reading at once (default: from the device kind)', parsePositiveInt)
      .option('--hash-impl <impl>', 'SHA back end: auto, native, node or noble', parseImpl, 'auto')
      .option('--no-progress', 'no live progress, even on a terminal')
      .addHelpText('after', '\nEvery problem is reported with a stable type (object-digest-mismatch, missing-object,\nbroken-symlink, stray-tmp, ...). Exit status: 0 clean, 1 problems found (after --repair:\nproblems were found and repaired; run fsck again to confirm).\nfsck holds the repository lock shared (imports go on, gc waits); with --repair, exclusive.')
  )).action(async (o: FsckCliOptions) => {
    warnNativeFallback(o.hashImpl);
    const repo = await openRepository(resolveRepo(o.repo));
    const line = liveLine(progressWanted(o.progress && !o.json));
    const waitOpts = lockWaitOptions(o.lockTimeout);
    const signal = interruptSignal();
    // --repair holds the exclusive lock from the check through the repair: nothing changes between.
    const held = o.repair
      ? await repo.lockExclusive(lockOptionsFrom({ ...waitOpts, signal }))
      : null;
    let report: FsckReport;
    let repaired: RepairReport | null = null;
    try {
      report = await fsck(repo, {
        objectsOnly: o.objectsOnly,
        deep: o.deep,
        jobs: o.jobs,
        ioLimit: o.ioLimit,
        hashImpl: o.hashImpl,
        signal,
        lock: held ? 'held' : 'shared',
        ...waitOpts,
        onProgress: (p) => line.show(`fsck: ${Math.round((100 * p.dirsDone) / Math.max(1, p.dirsTotal))}% (${p.dirsDone}/${p.dirsTotal} folders), ${p.objectsDone} objects, ${formatBytes(p.bytesDone)} re-hashed`),
        onRebuild: (p) => line.show(`fsck --deep: rebuilding layers, ${p.done}/${p.total} checked against their diff_id, ${formatBytes(p.bytes)} of tar`),
      });
      line.done();
      if (held && !report.ok) repaired = await repair(repo, report, { lockHeld: true, signal });
    } finally {
      await held?.release();
    }
    if (o.json) process.stdout.write(JSON.stringify(repaired ? { ...report, repair: repaired } : report) + '\n');
    else {
      printFsck(report);
      if (repaired) printRepair(repaired);
    }
    if (!report.ok) process.exitCode = EXIT.ISSUES;
  });

  lockTimeoutOption(repoOption(
    program
      .command('gc')
      .description('remove every object, stream and tmp file that no tag keeps alive')
      .option('--dry-run', 'say what would be removed, remove nothing')
      .option('--json', 'print the report as one JSON object')
      .option('--no-progress', 'no live progress, even on a terminal')
      .addHelpText('after', '\nRoots are the tags (streams/refs/) and images/refs/. gc takes the exclusive repository lock:\nit waits for running imports, and imports wait for it.')
  )).action(async (o: { repo?: string; dryRun?: boolean; json?: boolean; lockTimeout?: number; progress: boolean }) => {
    const repo = await openRepository(resolveRepo(o.repo));
    if (!repo.hasMeta) throw new VeritreeError(ERROR_CODES.USAGE, `${repo.root} has no meta.json: an objects-only store has no roots, gc would remove everything`);
    const line = liveLine(progressWanted(o.progress && !o.json));
    const report = await gc(repo, {
      dryRun: o.dryRun,
      signal: interruptSignal(),
      ...lockWaitOptions(o.lockTimeout),
      onProgress: (p) => line.show(p.phase === 'mark' ? `gc: marking, ${p.done} of ${p.total} streams read` : `gc: sweeping, ${p.done} of ${p.total} folders of objects/ (${p.entries ?? 0} entries checked)`),
    });
    line.done();
    if (o.json) process.stdout.write(JSON.stringify(report) + '\n');
    else printGc(report);
  });

  lockTimeoutOption(repoOption(program.command('untag').description('remove a tag; what only it kept alive goes at the next gc').argument('<name>', 'the tag'))).action(
    async (name: string, o: { repo?: string; lockTimeout?: number }) => {
      const repo = await openRepository(resolveRepo(o.repo));
      if (!(await untagImage(repo, name, { signal: interruptSignal(), ...lockWaitOptions(o.lockTimeout) }))) throw new VeritreeError(ERROR_CODES.TAG_NOT_FOUND, `no tag ${JSON.stringify(name)} in ${repo.root} (see veritree images)`);
      process.stdout.write(`untagged ${name}\n`);
    }
  );
}
