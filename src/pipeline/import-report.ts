/**
 * What an import run reports: per image its summary or its failure, and the run's totals.
 * @module
 */
import { ERROR_CODES, isVeritreeError, type ErrorCode } from '../errors.ts';
import type { ResolvedImage } from '../oci/layout.ts';
import type { TarWarningCode } from '../oci/tar-split.ts';
import { STREAM_PREFIX } from '../store/layout.ts';
import type { LayerResult } from './layer-import.ts';

export interface ImportWarning {
  layer: number;
  digest: string;
  code: TarWarningCode;
  message: string;
}

export interface ImportSummary {
  ok: true;
  tag: string;
  source: string;
  manifest: string;
  config: string;
  status: 'imported' | 'present';
  layers: LayerResult[];
  layersImported: number;
  layersPresent: number;
  objectsWritten: number;
  objectsPresent: number;
  inlined: number;
  /** Uncompressed layer bytes read for this image (a shared layer counts for the image that read it). */
  tarBytes: number;
  compressedBytes: number;
  seconds: number;
  /** MB/s of uncompressed layer data. */
  mbPerSecond: number;
  jobs: number;
  /** The process's peak resident memory so far (workers included), for the memory bound. */
  peakRssBytes: number;
  warnings: ImportWarning[];
  /** When the tag named another image before this import: that image's manifest digest. */
  retaggedFrom: string | null;
}

export interface ImportFailure {
  ok: false;
  source: string;
  tag: string | undefined;
  code: ErrorCode;
  message: string;
  /** The error itself (not serialised). */
  error: unknown;
}

export type ImageResult = ImportSummary | ImportFailure;

export interface BulkImportReport {
  images: ImageResult[];
  total: {
    images: number;
    imported: number;
    present: number;
    failed: number;
    layersImported: number;
    layersShared: number;
    objectsWritten: number;
    tarBytes: number;
    seconds: number;
    mbPerSecond: number;
    jobs: number;
    peakRssBytes: number;
  };
  /** How many times each layer blob was opened in this run, by diff_id (at most once each). */
  blobOpens: Record<string, number>;
}

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
}

export function failure(source: string, tag: string | undefined, e: unknown): ImportFailure {
  // A worker's failure arrives as WORKER_FAILED already; anything else untyped is our own bug.
  const code: ErrorCode = isVeritreeError(e) ? e.code : ERROR_CODES.INTERNAL;
  return { ok: false, source, tag, code, message: e instanceof Error ? e.message : String(e), error: e };
}

export function summarise(p: Prepared, status: 'imported' | 'present', layers: LayerResult[], jobs: number): ImportSummary {
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
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    warnings: p.warnings,
    retaggedFrom: p.retaggedFrom === null ? null : p.retaggedFrom.startsWith(STREAM_PREFIX.manifest) ? `sha256:${p.retaggedFrom.slice(STREAM_PREFIX.manifest.length)}` : p.retaggedFrom,
  };
}

export function report(images: ImageResult[], blobOpens: Record<string, number>, started: number, jobs: number): BulkImportReport {
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
      peakRssBytes: process.resourceUsage().maxRSS * 1024,
    },
    blobOpens,
  };
}
