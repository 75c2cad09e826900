/**
 * The import's public shapes: its options, the progress and warning events, and what it
 * reports for each image and for a run (pipeline/import.ts fills them).
 * @module
 */
import type { ErrorCode } from '../errors.ts';
import type { LayerLimits } from '../oci/layer-stream.ts';
import type { TarWarningCode } from '../oci/tar-split.ts';
import type { LockWaitOptions } from '../store/lock.ts';
import type { HashImpl } from '../verity/backends.ts';
import type { SealReport } from '../verify/seal-check.ts';
import type { LayerResult } from './layer-import.ts';
import type { VerityPool } from './pool.ts';

/** Progress events; `image` is the position of the image in the run (0 for a single import). */
export type ImportProgress =
  | { type: 'run'; images: number; totalBytes: number }
  | { type: 'image'; image: number; totalBytes: number; layers: number; manifest: string }
  | { type: 'layer-start'; image: number; index: number; digest: string; diffId: string; size: number }
  /** `bytes`: how far into the layer's compressed blob the read is; `tarBytes`, `entries`: what it yielded so far. */
  | { type: 'layer-bytes'; image: number; index: number; bytes: number; tarBytes: number; entries: number }
  /** The layer's tar is read: its files are being stored, synced and its stream published. */
  | { type: 'layer-finishing'; image: number; index: number }
  /** Every layer of the image is in: its config and manifest streams and its tag are being written. */
  | { type: 'image-publishing'; image: number }
  | { type: 'layer-done'; image: number; index: number; status: 'imported' | 'present'; size: number }
  | { type: 'image-done'; image: number; ok: boolean };

export interface ImportWarning {
  layer: number;
  digest: string;
  code: TarWarningCode;
  message: string;
}

export interface ImportOptions extends LockWaitOptions {
  /** The tag to create (default: the REF of the source, else the layout folder's name). */
  tag?: string | undefined;
  /** Whether the tag may move off another image (default: when `tag` is given; see ImportJob). */
  moveTag?: boolean | undefined;
  /** `os/arch[/variant]`; default: the host's. */
  platform?: string | undefined;
  jobs?: number | undefined;
  ioLimit?: number | undefined;
  /** Use this pool (not closed afterwards) instead of making one. */
  pool?: VerityPool | undefined;
  hashImpl?: HashImpl | undefined;
  limits?: Partial<LayerLimits> | undefined;
  spoolThreshold?: number | undefined;
  /** Bytes of file content handed to the pool and not yet stored (default MAX_INFLIGHT_BYTES). */
  maxInflightBytes?: number | undefined;
  layerConcurrency?: number | undefined;
  /**
   * Run each layer of over 256 KiB in a layer thread of its own. Default: the
   * VERITREE_LAYER_THREADS environment variable (1 or 0), else on when the pool has 4 workers or
   * more. Off, every layer runs on the calling thread. See docs/performance.md "Why layer threads".
   */
  layerThreads?: boolean | undefined;
  signal?: AbortSignal | undefined;
  /**
   * Read and check every layer blob (size, SHA-256, diff_id) even when its layer is stored, so
   * that whether a layout imports does not depend on the store. Default: stored layers are
   * skipped unread.
   */
  verifySource?: boolean | undefined;
  onProgress?: ((p: ImportProgress) => void) | undefined;
  onWarning?: ((w: ImportWarning & { image: number }) => void) | undefined;
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
  /** Whether the run read its layers in layer threads (ImportOptions.layerThreads). */
  layerThreads: boolean;
  /** The process's peak resident memory so far (workers included), for the memory bound. */
  peakRssBytes: number;
  warnings: ImportWarning[];
  /** When the tag named another image before this import: that image's manifest digest. */
  retaggedFrom: string | null;
  /** The seal's checks when the source carries seal digests (verify/seal-check.ts); else null. */
  seals: SealReport | null;
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

export interface ImportJob {
  source: string;
  tag?: string | undefined;
  /**
   * Whether the tag may be moved off another image. Default: yes for a tag given here, no for
   * one derived from the source's REF (a second `latest` must not silently take the first's).
   */
  moveTag?: boolean | undefined;
}

export interface BulkImportOptions extends Omit<ImportOptions, 'tag' | 'moveTag'> {
  /** Every job's tag may move off another image (a job's own `moveTag` still decides for it). */
  moveTags?: boolean | undefined;
  /** Stop everything at the first failed image. */
  failFast?: boolean | undefined;
}

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
    layerThreads: boolean;
    peakRssBytes: number;
  };
  /** How many times each layer blob was opened in this run, by diff_id (at most once each). */
  blobOpens: Record<string, number>;
}
