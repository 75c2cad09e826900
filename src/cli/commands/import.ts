/** `veritree import`: OCI images from local layouts into the repository, one or many per run. */
import type { Command } from 'commander';
import { existsSync, statSync } from 'node:fs';
import { importImages, openRepository, writeStoreImage, type ImportJob, type ImportSummary, type ImportFailure, type BulkImportReport } from '../../index.ts';
import { discoverLayouts, applyTagTemplate } from '../../oci/discover.ts';
import { defaultIoLimit } from '../../pipeline/io-limit.ts';
import { poolSize, takeEarly } from '../../pipeline/pool.ts';
import { ERROR_CODES, VeritreeError, isVeritreeError } from '../../errors.ts';
import type { HashImpl } from '../../verity/backends.ts';
import { exitStatusFor } from '../exit-codes.ts';
import { formatBytes, warnNativeFallback } from '../output.ts';
import { progressWanted, warn } from '../startup-line.ts';
import { parseImpl, parsePositiveInt, parseSize } from '../options.ts';
import { ImportProgressView } from '../progress.ts';
import { lockTimeoutOption, lockWaitOptions, repoOption, resolveRepo } from '../repo-option.ts';
import { interruptSignal } from '../signals.ts';

interface ImportCliOptions {
  repo?: string;
  all?: string;
  tagTemplate: string;
  failFast?: boolean;
  platform?: string;
  jobs?: number;
  ioLimit?: number;
  hashImpl: HashImpl;
  maxLayerSize?: number;
  json?: boolean;
  progress: boolean;
  lockTimeout?: number;
  requireVerity?: boolean;
  image?: boolean;
  force?: boolean;
  verifySource?: boolean;
}

export function printSummary(s: ImportSummary): void {
  const lines = [
    `${s.status === 'present' ? 'already present' : 'imported'} ${s.source} as ${s.tag}`,
    `  manifest  ${s.manifest}`,
    `  config    ${s.config}`,
    `  layers    ${s.layersImported} imported, ${s.layersPresent} already present`,
    `  objects   ${s.objectsWritten} written, ${s.objectsPresent} already present, ${s.inlined} small files inlined`,
    `  bytes     ${formatBytes(s.tarBytes)} of layer tar (${formatBytes(s.compressedBytes)} compressed)`,
    s.tarBytes > 0
      ? `  time      ${s.seconds.toFixed(2)} s, ${s.mbPerSecond.toFixed(1)} MB/s, ${s.jobs} worker${s.jobs === 1 ? '' : 's'}`
      : `  time      ${s.seconds.toFixed(2)} s, no layer read`,
    ...(s.retaggedFrom ? [`  tag       ${s.tag} moved here from ${s.retaggedFrom}`] : []),
  ];
  process.stdout.write(lines.join('\n') + '\n');
}

function printTotal(r: BulkImportReport): void {
  const t = r.total;
  process.stdout.write(
    `${t.images} images: ${t.imported} imported, ${t.present} already present, ${t.failed} failed; layers: ${t.layersImported} imported, ${t.layersShared} shared or present; ${formatBytes(t.tarBytes)} in ${t.seconds.toFixed(2)} s (${t.mbPerSecond.toFixed(1)} MB/s)\n`
  );
}

/** `oci:` or `oci-archive:`, the two transports veritree reads. */
function isSource(a: string | undefined): boolean {
  return a !== undefined && (a.startsWith('oci:') || a.startsWith('oci-archive:'));
}

/** `SOURCE NAME` (one image with a tag) or `SOURCE...` (each tagged by its REF). */
function jobsFromArgs(args: string[]): ImportJob[] {
  const named = args.length === 2 && isSource(args[0]);
  for (const a of named ? [] : args) {
    if (isSource(a)) continue;
    // A layout given without its prefix (the commonest slip): say what was meant.
    const given = [a, a.slice(0, a.lastIndexOf(':'))].find((p) => existsSync(p));
    if (given !== undefined) {
      const prefix = statSync(given).isFile() ? 'oci-archive' : 'oci';
      throw new VeritreeError(ERROR_CODES.USAGE, `source ${JSON.stringify(a)}: did you mean ${prefix}:${a}?`);
    }
  }
  const [first, second] = args;
  if (args.length === 2 && first !== undefined && second !== undefined && isSource(first) && !isSource(second)) return [{ source: first, tag: second }];
  for (const a of args) if (!isSource(a)) throw new VeritreeError(ERROR_CODES.USAGE, `source ${JSON.stringify(a)}: expected oci:DIR[:REF] or oci-archive:FILE[:REF] (a NAME goes only after a single source)`);
  return args.map((source) => ({ source }));
}

function jsonOf(r: ImportSummary | ImportFailure): object {
  if (r.ok) return r;
  const { error: _error, ...rest } = r;
  void _error;
  return rest;
}

export function registerImport(program: Command): void {
  lockTimeoutOption(repoOption(
    program
      .command('import')
      .description('import OCI image layouts (what skopeo copy ... oci:DIR, umoci or buildah write), or tars of them (oci-archive:FILE, as podman save --format oci-archive writes), into the repository')
      .argument('[sources...]', 'oci:DIR[:REF] or oci-archive:FILE[:REF] ...; REF selects by org.opencontainers.image.ref.name and may be left out when a layout holds one image. After a single source, a NAME for its tag.')
      .option('--all <dir>', 'also import every tagged image of every OCI layout under DIR (any depth)')
      .option('--tag-template <t>', 'tags for --all images: {layout} is the layout path relative to DIR, {ref} the ref name', '{layout}:{ref}')
      .option('--force', 'let a tag derived from a REF (or from --tag-template) move off another image; a NAME given for one source always may')
      .option('--fail-fast', 'stop the whole run at the first failed image (default: import the others, exit non-zero)')
      .option('--platform <os/arch[/variant]>', "which image of a multi-platform index (default: the host's)")
      .option('-j, --jobs <n>', 'worker threads (default: min(cores, --io-limit))', parsePositiveInt)
      .option('--io-limit <n>', 'cap on workers writing to the store at once (default: 2 rotating disk, 16 SSD, 64 NVMe, 32 virtual or unknown)', parsePositiveInt)
      .option('--hash-impl <impl>', 'SHA back end: auto, native, node or noble', parseImpl, 'auto')
      .option('--max-layer-size <size>', 'refuse a layer whose tar inflates past this size: bytes, or with a unit K, M, G, T (powers of 1024; KiB, GiB... too) (default 64G)', parseSize)
      .option('--json', 'print the summary as JSON: one object for one image; one line per image, then a total, for several')
      .option('--no-progress', 'no live progress, even on a terminal')
      .option('--image', "also write each imported image's composefs EROFS image into the store, as composefs-rs's pull does (see veritree image)")
      .option('--verify-source', 'read and check every blob (size, SHA-256, diff_id) even when its layer is stored: the same answer on every store')
      .option('--require-verity', 'refuse to write any object without fs-verity (implied when the repository\'s meta.json has fs-verity)')
      .addHelpText(
        'after',
        `
Every blob is checked against its descriptor (size, SHA-256) and every layer against its
diff_id before anything that names it is published. Layers and images already in the
repository are skipped without reading their blobs, unless --verify-source. With several images, one pool and one
layer scheduler serve them all: a layer they share is read once.
Exit status: 0 imported, 2 usage, 3 bad input (the layout, a blob, a layer), 4 store error,
130 interrupted; with several images, the status of the first that failed.`
      )
  )).action(async (args: string[], o: ImportCliOptions) => {
    warnNativeFallback(o.hashImpl);
    const jobs = args.length ? jobsFromArgs(args) : [];
    if (o.all) {
      const found = await discoverLayouts(o.all);
      for (const s of found.skipped) warn(`${s.layout}: ${s.why}`);
      // Derived tags, as a REF's is: moving one off another image takes --force.
      for (const img of found.images) jobs.push({ source: `oci:${img.layout}${img.ref ? `:${img.ref}` : ''}`, tag: img.ref ? applyTagTemplate(o.tagTemplate, img) : undefined, moveTag: o.force === true });
    }
    if (jobs.length === 0) throw new VeritreeError(ERROR_CODES.USAGE, 'nothing to import: give oci:DIR[:REF] or oci-archive:FILE[:REF] sources, or --all DIR');
    const single = jobs.length === 1 && !o.all;
    const repo = await openRepository(resolveRepo(o.repo), { create: true, requireVerity: o.requireVerity === true });
    // The workers main.ts started booting, when they are as many as this import wants.
    const pool = await takeEarly(async () => poolSize({ jobs: o.jobs, ioLimit: o.ioLimit ?? (await defaultIoLimit(repo.root)) }));
    const view = progressWanted(o.progress && !o.json) ? new ImportProgressView(process.stderr) : null;
    let report: BulkImportReport;
    try {
      report = await importImages(repo, jobs, {
        pool: pool ?? undefined,
        platform: o.platform,
        jobs: o.jobs,
        ioLimit: o.ioLimit,
        hashImpl: o.hashImpl,
        failFast: o.failFast,
        moveTags: o.force === true,
        verifySource: o.verifySource === true,
        limits: o.maxLayerSize ? { maxLayerSize: o.maxLayerSize } : undefined,
        signal: interruptSignal(),
        ...lockWaitOptions(o.lockTimeout),
        onProgress: view?.update,
        onWarning: (w) => {
          view?.clear();
          const who = single ? '' : `${jobs[w.image]?.source}: `;
          warn(`${who}layer ${w.layer} (${w.digest}): ${w.message}`);
        },
      });
    } finally {
      view?.clear();
      await pool?.close();
    }
    const images = new Map<string, string>();
    let imageFailure: VeritreeError | null = null;
    if (o.image) {
      for (const r of report.images) {
        if (!r.ok) continue;
        try {
          images.set(r.tag, (await writeStoreImage(repo, r.tag, { signal: interruptSignal(), ...lockWaitOptions(o.lockTimeout) })).image);
        } catch (e) {
          if (!isVeritreeError(e)) throw e;
          imageFailure ??= e;
          process.stderr.write(`veritree: ${r.tag}: composefs image: ${e.message}\n`);
        }
      }
    }
    for (const r of report.images) {
      if (!r.ok) process.stderr.write(single ? `veritree: ${r.message}\n` : `veritree: ${r.source}: ${r.message}\n`);
      const image = r.ok ? images.get(r.tag) : undefined;
      if (o.json) process.stdout.write(JSON.stringify(image ? { ...jsonOf(r), composefsImage: image } : jsonOf(r)) + '\n');
      else if (r.ok) {
        printSummary(r);
        if (image) process.stdout.write(`  composefs image ${image}\n`);
      }
    }
    if (!single) {
      if (o.json) process.stdout.write(JSON.stringify({ total: report.total, blobOpens: report.blobOpens }) + '\n');
      else printTotal(report);
    }
    const firstFailure = report.images.find((r): r is ImportFailure => !r.ok);
    if (firstFailure) process.exitCode = exitStatusFor(firstFailure.code);
    else if (imageFailure) process.exitCode = exitStatusFor(imageFailure.code);
  });
}
