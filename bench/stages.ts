/**
 * Each stage of an import alone, on one thread, on the very data an import workload reads: what
 * it costs in CPU seconds per GB of layer tar and in microseconds per file. A layer's serial
 * chain (read, blob SHA-256, inflate, diff_id SHA-256, tar walk) cannot go faster than its
 * slowest stage on one core; the store divides among the pool's workers. The null-pool import
 * runs the real orchestrator with a pool that answers at once: the import's ceiling when hashing
 * and writing cost nothing.
 */
import { createHash } from 'node:crypto';
import { rmSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { importImages, openRepository } from '../src/index.ts';
import { ERROR_CODES, VeritreeError } from '../src/errors.ts';
import { zstdDecompress } from '../src/codec/zstd.ts';
import { splitTar, type SplitSink } from '../src/oci/tar-split.ts';
import { writeBatchSync } from '../src/store/objects.ts';
import { VerityPool } from '../src/pipeline/pool.ts';
import type { TaskResults, VerityTask } from '../src/pipeline/protocol.ts';
import { tagged } from './workloads.ts';
import { ownThreadSeconds, type CpuSpan, type ThreadMeter } from './threads.ts';

/** What a workload hands to the stage bench: its layers as tars and as blobs. */
export interface StageInput {
  tars: Uint8Array[];
  blobs: Uint8Array[];
  compression: 'none' | 'gzip' | 'zstd';
  /** oci:DIR:REF sources that import these layers (the null-pool run imports them). */
  sources: string[];
}

export interface StageCost {
  stage: string;
  /** CPU seconds per GB (1e9 bytes) of layer tar. */
  sPerGB: number;
  /** CPU microseconds per file of the layers. */
  usPerFile: number;
}

const STORE = 'store (fs-verity digest + write)';
/** Pieces fed to the stages, as a layer is read. */
const PIECE = 1 << 20;
/** Files stored per call in the store stage, as the batcher groups them. */
const STORE_BATCH_BYTES = 1 << 20;

function* pieces(b: Uint8Array): Generator<Uint8Array> {
  for (let at = 0; at < b.length; at += PIECE) yield b.subarray(at, Math.min(b.length, at + PIECE));
}

async function* asyncPieces(b: Uint8Array): AsyncGenerator<Uint8Array> {
  yield* pieces(b);
}

/** Main-thread CPU seconds of `fn` (every stage here runs on the calling thread). */
async function cpuOf(fn: () => void | Promise<void>): Promise<number> {
  const t0 = ownThreadSeconds();
  await fn();
  return ownThreadSeconds() - t0;
}

function sha256All(bufs: Uint8Array[]): void {
  for (const b of bufs) {
    const h = createHash('sha256');
    for (const p of pieces(b)) h.update(p);
    h.digest();
  }
}

/** The tar walk with a sink that keeps nothing but each file's bytes (for the store stage). */
async function walk(tar: Uint8Array, keep: Uint8Array[] | null, signal: AbortSignal): Promise<number> {
  let files = 0;
  const sink: SplitSink = {
    inline: () => undefined,
    externalBytes: (_e, bytes) => {
      files++;
      keep?.push(bytes);
    },
    external: async (_e, content) => {
      files++;
      const parts: Uint8Array[] = [];
      for await (const c of content) if (keep) parts.push(c.slice());
      keep?.push(Buffer.concat(parts));
    },
    smallFile: () => void files++,
    warn: () => undefined,
    signal,
  };
  await splitTar(asyncPieces(tar), sink);
  return files;
}

/** Hash and write every file into `objectsDir`, a megabyte of files per call, as a pool worker does. */
function store(files: Uint8Array[], objectsDir: string, signal: AbortSignal): void {
  const target = { objectsDir, alg: 'sha256', verity: 'try' } as const;
  let batch: Uint8Array[] = [];
  let bytes = 0;
  const flush = (): void => {
    if (batch.length === 0) return;
    writeBatchSync(target, Buffer.concat(batch), Uint32Array.from(batch.map((b) => b.length)), 'auto');
    batch = [];
    bytes = 0;
  };
  for (const f of files) {
    signal.throwIfAborted();
    batch.push(f);
    bytes += f.length;
    if (bytes >= STORE_BATCH_BYTES) flush();
  }
  flush();
}

/** Runs each stage alone on the main thread; `work` is a scratch folder (a fresh store). */
export async function stageCosts(input: StageInput, work: string, meter: ThreadMeter, signal: AbortSignal): Promise<{ stages: StageCost[]; nullPool: CpuSpan }> {
  const tarBytes = input.tars.reduce((n, t) => n + t.length, 0);
  const rows: { stage: string; seconds: number }[] = [];
  rows.push({ stage: 'blob SHA-256', seconds: await cpuOf(() => sha256All(input.blobs)) });
  if (input.compression !== 'none') {
    // zstd's output bound: the layer's own tar size.
    const inflate = input.compression === 'gzip' ? (b: Uint8Array) => gunzipSync(b) : (b: Uint8Array, i: number) => zstdDecompress(b, (input.tars[i] as Uint8Array).length);
    rows.push({ stage: `${input.compression} inflate`, seconds: await cpuOf(() => void input.blobs.forEach((b, i) => inflate(b, i))) });
  }
  rows.push({ stage: 'diff_id SHA-256', seconds: await cpuOf(() => sha256All(input.tars)) });
  let files = 0;
  rows.push({
    stage: 'tar walk (null sink)',
    seconds: await cpuOf(async () => {
      for (const t of input.tars) files += await walk(t, null, signal);
    }),
  });
  const contents: Uint8Array[] = [];
  for (const t of input.tars) await walk(t, contents, signal);
  const repo = await openRepository(`${work}/stage-store`, { create: true });
  rows.push({ stage: STORE, seconds: await cpuOf(() => store(contents, repo.target.objectsDir, signal)) });
  rmSync(`${work}/stage-store`, { recursive: true, force: true });

  const pool = new NullPool();
  const nullRepo = await openRepository(`${work}/null-store`, { create: true });
  const { cpu } = await meter.measure(() => importImages(nullRepo, tagged(input.sources), { pool, failFast: true }));
  rmSync(`${work}/null-store`, { recursive: true, force: true });
  const perGB = (s: number): number => s / (tarBytes / 1e9);
  const perFile = (s: number): number => (files ? (s * 1e6) / files : 0);
  const stages = rows.map((r) => ({ stage: r.stage, sPerGB: perGB(r.seconds), usPerFile: perFile(r.seconds) }));
  // A layer's chain, each stage after the last: what one layer costs where they do not overlap.
  const chain = rows.filter((r) => r.stage !== STORE).reduce((n, r) => n + r.seconds, 0);
  stages.push({ stage: 'serial chain (the above but store, summed)', sPerGB: perGB(chain), usPerFile: perFile(chain) });
  stages.push({ stage: 'null-pool import, all threads', sPerGB: perGB(cpu.total), usPerFile: perFile(cpu.total) });
  const top = cpu.threads[0];
  if (top) stages.push({ stage: `null-pool import, busiest thread (${top.role})`, sPerGB: perGB(top.seconds), usPerFile: perFile(top.seconds) });
  return { stages, nullPool: cpu };
}

/**
 * A pool whose workers cost nothing: every store task is answered at once with a made-up name
 * (unique per file) and its buffer given back; no worker thread starts.
 */
class NullPool extends VerityPool {
  private next = 0;

  constructor() {
    super(1, { lazy: true });
  }

  private fakeId(): string {
    return (this.next++).toString(16).padStart(64, '0');
  }

  override async run<T extends VerityTask>(task: T): Promise<TaskResults[T['kind']]> {
    if (task.kind === 'store-batch') {
      const n = task.sizes.length;
      const ids = Buffer.allocUnsafe(n * 32);
      for (let i = 0; i < n; i++) ids.write(this.fakeId(), i * 32, 32, 'hex');
      const result: TaskResults['store-batch'] = { ok: true, ids, written: new Uint8Array(n).fill(1), data: task.data };
      return result as TaskResults[T['kind']];
    }
    if (task.kind === 'store-buffer') return { ok: true, id: this.fakeId(), size: task.data.length, written: true, data: task.data } as TaskResults[T['kind']];
    throw new VeritreeError(ERROR_CODES.INTERNAL, `the null pool does not run ${task.kind} tasks`);
  }
}
