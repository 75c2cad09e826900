/**
 * What an import run reports: per image its summary or its failure, and the run's totals.
 * The types are in import-types.ts.
 * @module
 */
import { ERROR_CODES, isVeritreeError, type ErrorCode } from '../errors.ts';
import type { ResolvedImage } from '../oci/layout.ts';
import { peakRssBytes } from '../peak-rss.ts';
import { STREAM_PREFIX } from '../store/layout.ts';
import type { SealReport } from '../verify/seal-check.ts';
import type { BulkImportReport, ImageResult, ImportFailure, ImportSummary, ImportWarning } from './import-types.ts';
import type { LayerResult } from './layer-import.ts';

/** An image of the run being imported. */
export interface Prepared {
  index: number;
  source: string;
  tag: string;
  image: ResolvedImage;
  warnings: ImportWarning[];
  started: number;
  retaggedFrom: string | null;
  /** Every stream of the image is stored already (read again only for verifySource). */
  complete?: boolean;
  /** Whether the tag may move off another image (a NAME given, or --force); else it is only created. */
  move: boolean;
  /** The source's seal, checked before the tag is set; null when it carries none. */
  seals: SealReport | null;
}

export function failure(source: string, tag: string | undefined, e: unknown): ImportFailure {
  // A worker's failure arrives as WORKER_FAILED already; anything else untyped is our own bug.
  const code: ErrorCode = isVeritreeError(e) ? e.code : ERROR_CODES.INTERNAL;
  return { ok: false, source, tag, code, message: e instanceof Error ? e.message : String(e), error: e };
}

export function summarise(p: Prepared, status: 'imported' | 'present', layers: LayerResult[], jobs: number, layerThreads: boolean): ImportSummary {
  const sum = (f: (l: LayerResult) => number): number => layers.reduce((n, l) => n + f(l), 0);
  const seconds = (performance.now() - p.started) / 1000;
  const tarBytes = sum((l) => l.tarBytes);
  return {
    ok: true,
    tag: p.tag,
    source: p.source,
    manifest: p.image.manifestDescriptor.digest,
    config: p.image.configDescriptor.digest,
    status,
    layers,
    layersImported: layers.filter((l) => l.status === 'imported').length,
    layersPresent: layers.filter((l) => l.status === 'present').length,
    objectsWritten: sum((l) => l.objectsWritten),
    objectsPresent: sum((l) => l.objectsPresent),
    inlined: sum((l) => l.inlined),
    tarBytes,
    compressedBytes: sum((l) => l.compressedBytes),
    seconds,
    mbPerSecond: seconds > 0 ? tarBytes / 1e6 / seconds : 0,
    jobs,
    layerThreads,
    peakRssBytes: peakRssBytes(),
    warnings: p.warnings,
    retaggedFrom: p.retaggedFrom === null ? null : p.retaggedFrom.startsWith(STREAM_PREFIX.manifest) ? `sha256:${p.retaggedFrom.slice(STREAM_PREFIX.manifest.length)}` : p.retaggedFrom,
    seals: p.seals,
  };
}

export function report(images: ImageResult[], blobOpens: Record<string, number>, started: number, jobs: number, layerThreads: boolean): BulkImportReport {
  const ok = images.filter((r): r is ImportSummary => r.ok);
  const seconds = (performance.now() - started) / 1000;
  const tarBytes = ok.reduce((n, r) => n + r.tarBytes, 0);
  const layersImported = ok.reduce((n, r) => n + r.layersImported, 0);
  return {
    images,
    total: {
      images: images.length,
      imported: ok.filter((r) => r.status === 'imported').length,
      present: ok.filter((r) => r.status === 'present').length,
      failed: images.length - ok.length,
      layersImported,
      layersShared: ok.reduce((n, r) => n + r.layers.length, 0) - layersImported,
      objectsWritten: ok.reduce((n, r) => n + r.objectsWritten, 0),
      tarBytes,
      seconds,
      mbPerSecond: seconds > 0 ? tarBytes / 1e6 / seconds : 0,
      jobs,
      layerThreads,
      peakRssBytes: peakRssBytes(),
    },
    blobOpens,
  };
}
