/**
 * A layer thread: runs one layer at a time (pipeline/layer-import.ts), the whole chain of it
 * (read, blob SHA-256, inflate, diff_id SHA-256, tar walk, batching, the split stream), so that
 * the main thread does none of it. Pool tasks and leases go to the main thread (layer-remote.ts).
 * It names nothing in the store: the main thread publishes the stream it reports.
 */
import { parentPort } from 'node:worker_threads';
import { trimChunkPools } from '../src/oci/chunk-pool.ts';
import { importLayer, verifyStoredLayer, type LayerContext } from '../src/pipeline/layer-import.ts';
import { layoutOf, toWire, type FromThread, type LayerJob, type ToThread } from '../src/pipeline/layer-messages.ts';
import { RemoteLine } from '../src/pipeline/layer-remote.ts';

const port = parentPort;
if (!port) throw new Error('layer.worker.ts runs only as a worker thread');

const post = (msg: FromThread, transfer?: ArrayBuffer[]): void => port.postMessage(msg, transfer);
let line: RemoteLine | null = null;
let abort: AbortController | null = null;

/** How long a thread keeps its chunk buffers after a layer: long enough for the next layer of a run. */
const IDLE_TRIM_MS = 1000;
let trimLater: NodeJS.Timeout | undefined;

async function runJob(job: LayerJob): Promise<void> {
  clearTimeout(trimLater);
  const local = new AbortController();
  const remote = new RemoteLine(post, job.poolSize, job.maxBytes);
  abort = local;
  line = remote;
  const ctx: LayerContext = {
    target: job.target,
    root: job.root,
    pool: remote,
    budget: remote,
    impl: job.impl,
    limits: job.limits,
    spoolThreshold: job.spoolThreshold,
    signal: local.signal,
    onBytes: (_l, compressed, tar, entries) => post({ type: 'bytes', compressed, tar, entries }),
    onFinishing: () => post({ type: 'finishing' }),
    onWarning: (_l, code, message) => post({ type: 'warning', code, message }),
  };
  const layout = layoutOf(job.layout);
  try {
    const result = job.mode === 'import' ? await importLayer(ctx, job.layer, layout) : await verifyStoredLayer(ctx, job.layer, layout);
    post({ type: 'done', result });
  } catch (e) {
    post({ type: 'failed', error: toWire(e) });
  } finally {
    abort = null;
    line = null;
    // An idle thread keeps no chunk buffers for long: the next layer may come much later, or never.
    trimLater = setTimeout(trimChunkPools, IDLE_TRIM_MS);
    trimLater.unref();
  }
}

port.on('message', (msg: ToThread) => {
  if (msg.type === 'job') void runJob(msg.job);
  else if (msg.type === 'abort') abort?.abort();
  else line?.receive(msg);
});
