/** `veritree import`: an OCI image from a local layout into the repository. */
import type { Command } from 'commander';
import { importImage, Repository, type ImportSummary, type ImportWarning } from '../../index.ts';
import type { HashImpl } from '../../verity/backends.ts';
import { formatBytes } from '../output.ts';
import { parseImpl, parsePositiveInt } from '../options.ts';
import { ImportProgressView } from '../progress.ts';
import { repoOption, resolveRepo } from '../repo-option.ts';
import { interruptSignal } from '../signals.ts';
import { warnNativeFallback } from '../output.ts';

interface ImportCliOptions {
  repo?: string;
  platform?: string;
  jobs?: number;
  ioLimit?: number;
  hashImpl: HashImpl;
  maxLayerSize?: number;
  json?: boolean;
  progress: boolean;
}

export function printSummary(s: ImportSummary): void {
  const lines = [
    `${s.status === 'present' ? 'already present' : 'imported'} ${s.source} as ${s.tag}`,
    `  manifest  ${s.manifest}`,
    `  config    ${s.config}`,
    `  layers    ${s.layersImported} imported, ${s.layersPresent} already present`,
    `  objects   ${s.objectsWritten} written, ${s.objectsPresent} already present, ${s.inlined} small files inlined`,
    `  bytes     ${formatBytes(s.tarBytes)} of layer tar (${formatBytes(s.compressedBytes)} compressed)`,
    `  time      ${s.seconds.toFixed(2)} s, ${s.mbPerSecond.toFixed(1)} MB/s, ${s.jobs} worker${s.jobs === 1 ? '' : 's'}`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
}

function printWarning(w: ImportWarning): void {
  process.stderr.write(`veritree: warning: layer ${w.layer} (${w.digest}): ${w.message}\n`);
}

export function registerImport(program: Command): void {
  repoOption(
    program
      .command('import')
      .description('import an OCI image layout (what skopeo copy ... oci:DIR, umoci or buildah write) into the repository')
      .argument('<source>', 'oci:DIR[:REF]; REF selects by org.opencontainers.image.ref.name and may be left out when the layout holds one image')
      .argument('[name]', 'the tag to create (default: REF, else the layout folder name)')
      .option('--platform <os/arch[/variant]>', "which image of a multi-platform index (default: the host's)")
      .option('-j, --jobs <n>', 'worker threads (default: min(cores, --io-limit))', parsePositiveInt)
      .option('--io-limit <n>', 'cap on workers writing to the store at once (default: 2 rotating disk, 16 SSD, 64 NVMe, 32 unknown)', parsePositiveInt)
      .option('--hash-impl <impl>', 'SHA back end: auto, native, node or noble', parseImpl, 'auto')
      .option('--max-layer-size <bytes>', 'refuse a layer whose tar inflates past this many bytes (default 64 GiB)', parsePositiveInt)
      .option('--json', 'print the summary as one JSON object')
      .option('--no-progress', 'no live progress, even on a terminal')
      .addHelpText(
        'after',
        `
Every blob is checked against its descriptor (size, SHA-256) and every layer against its
diff_id before anything that names it is published. Layers and images already in the
repository are skipped without reading their blobs.
Exit status: 0 imported, 2 usage, 3 bad input (the layout, a blob, a layer), 4 store error,
130 interrupted.`
      )
  ).action(async (source: string, name: string | undefined, o: ImportCliOptions) => {
    warnNativeFallback(o.hashImpl);
    const repo = await Repository.open(resolveRepo(o.repo), { create: true });
    const view = o.progress && !o.json && process.stderr.isTTY ? new ImportProgressView(process.stderr) : null;
    const signal = interruptSignal();
    try {
      const summary = await importImage(repo, source, {
        tag: name,
        platform: o.platform,
        jobs: o.jobs,
        ioLimit: o.ioLimit,
        hashImpl: o.hashImpl,
        limits: o.maxLayerSize ? { maxLayerSize: o.maxLayerSize } : undefined,
        signal,
        onProgress: view?.update,
        onWarning: (w) => {
          view?.clear();
          printWarning(w);
        },
      });
      view?.clear();
      if (o.json) process.stdout.write(JSON.stringify(summary) + '\n');
      else printSummary(summary);
    } finally {
      view?.clear();
    }
  });
}
