/**
 * Where each kind of work runs, and every tuning constant behind those choices, with its reason
 * and the figure behind it. Safety limits (layer sizes, ratios, counts an input may claim) are
 * not tuning: they live with the parser they bound and are documented in docs/guarantees.md.
 * How to measure each figure again: docs/performance.md.
 *
 * ## Where work runs
 * | work | where | why |
 * |---|---|---|
 * | scheduler, byte budget, sync, stream names, tags | main thread | one owner per repository write; cheap per layer |
 * | a layer's chain: read, blob SHA-256, inflate, diff_id SHA-256, tar walk, batches, split stream | a layer thread per layer over INLINE_LAYER_BYTES from LAYER_THREADS_MIN_JOBS pool workers (or with `layerThreads`); else the main thread | a layer thread takes the per-byte and per-file work off the main thread, which otherwise caps an import near 2.3-5.9 cores |
 * | SHA-256 of blobs and tars | libuv's thread pool where the native kernel has the calls, else the calling thread | a core-second per GB off the thread that walks the tar |
 * | gzip inflate | libuv (node:zlib) | the walking thread does not wait on it |
 * | zstd inflate | the walking thread with zstd-napi (synchronous); libuv where node:zlib has zstd and zstd-napi did not build; else a `zstd -dc` child | zstd-napi's context is the fastest, and bounded per call |
 * | fs-verity digest and object write | the Piscina pool, min(cores, I/O limit) workers | the work that divides: per byte and per file |
 * | a file of SPLIT_THRESHOLD_BYTES or more | its leaf level split in RANGE_BYTES ranges across the pool | one file is not one core's worth of time |
 * | `digest` of many files with the native kernel | libuv's pool, no workers booted | a worker's boot costs more than small files |
 * | layer rebuilds (cat-layer, fsck --deep) | libuv jobs lay out and hash batches | reading, hashing and writing overlap on 2 cores |
 * @module
 */

// ---- The import's byte budget and layers at once (pipeline/import.ts)

/** Files up to this size are handed to the pool in memory; larger ones are spooled to a file. */
export const SPOOL_THRESHOLD_BYTES = 16 << 20;

/**
 * Bytes of file content handed to the pool and not yet stored: the bulk of an import's memory,
 * a quarter of the 512 MiB bound, and enough to keep 16 workers fed with 1 MiB batches.
 */
export const MAX_INFLIGHT_BYTES = 128 << 20;

/** Layers read at once without layer threads: enough to keep the pool busy between layers, few enough to bound memory. */
export const LAYER_CONCURRENCY = 3;

/**
 * Memory a running layer thread takes beyond the byte budget: its heap, its reads, inflate and
 * hashing buffers, its open batch (12 MiB of it the idle thread). With recycled chunks
 * (oci/chunk-pool.ts) about 20 MiB on zstd layers, down from 45-55; gzip's output, node:zlib's
 * own buffers, still piles up as garbage until V8 collects (about 45 MiB per thread on the bulk
 * gzip workload at --jobs 16). A full collection costs a thread about 30 ms, too dear to force.
 */
export const LAYER_THREAD_MEMORY = 48 << 20;

/** What the 512 MiB bound leaves to layer threads beside the main thread, the pool and the byte budget. */
export const LAYER_THREADS_MEMORY = 160 << 20;

// ---- Layer threads (pipeline/layer-thread.ts)

/**
 * Layers whose blob is at most this size are read on the calling thread: a thread's boot (its
 * modules loaded and compiled, over 100 ms of CPU) costs more than such a layer's whole chain,
 * and their per-byte work is bounded by this size times the layers of a run.
 */
export const INLINE_LAYER_BYTES = 256 << 10;

/**
 * A layer thread's young generation, in MiB. V8's default (three 16 MiB semi-spaces) is sized
 * for one main thread; a layer thread's garbage (chunks, entries) dies young, so a small nursery
 * costs little time and keeps each thread's memory small (4, 12 and 32 MiB gave the same peak).
 */
export const LAYER_THREAD_YOUNG_MB = 12;

/**
 * Layer threads are on by default from this many pool workers: with the chain on the main thread
 * its share of an import's CPU (17-43% in the stage model) caps the speed-up near 2.3-5.9 times
 * one core; on 2 cores, threads on or off take the same time (0.99-1.05).
 */
export const LAYER_THREADS_MIN_JOBS = 4;

/** Idle layer threads kept for the next run: two skip two boots, and cost 12 MiB each. */
export const MAX_SPARE_LAYER_THREADS = 2;

// ---- A layer's chunks (oci/chunk-pool.ts, blob.ts, layer-stream.ts)

/** A blob is read this much at a time: one libuv job and one hash job per MiB. */
export const READ_CHUNK_BYTES = 1 << 20;

/**
 * Recycled chunks (blob reads, zstd output) waiting for reuse, per thread and per kind. Those in
 * flight are bounded by the hash backlogs and the streams between the stages; this caps what is
 * kept between bursts and layers.
 */
export const RECYCLED_IDLE_BYTES = 8 << 20;

// ---- Batches to the pool (pipeline/batcher.ts, buffers.ts)

/**
 * Small files travel to the pool packed in one buffer per task: a task costs tens of
 * microseconds of messaging however little it hashes. A batch is at most BATCH_BYTES and
 * BATCH_FILES files; files over BATCH_ITEM_MAX are a task of their own.
 */
export const BATCH_BYTES = 1 << 20;
export const BATCH_FILES = 512;
export const BATCH_ITEM_MAX = 256 << 10;

/**
 * Buffers that travel to the pool are given back with their results and reused: a fresh buffer
 * per batch cost the main thread a page fault per 4 KiB and the allocator's trimming, about 13%
 * of it on a 132 MB layer (measured with `perf`). Size classes from REUSABLE_BYTES (a batch) up
 * to MAX_REUSABLE_BYTES; at most MAX_IDLE_BUFFER_BYTES wait for reuse (the budget bounds those
 * in flight).
 */
export const REUSABLE_BYTES = 1 << 20;
export const MAX_REUSABLE_BYTES = 16 << 20;
export const MAX_IDLE_BUFFER_BYTES = 32 << 20;

// ---- A layer's split stream (pipeline/stream-feed.ts, layer-import.ts, store/splitstream.ts)

/**
 * Held inline bytes (headers, padding, small files) are copied into shared arenas of this size:
 * a small buffer per header would cost the garbage collector more than the whole copy (every
 * typed array over 64 bytes is a separately tracked allocation).
 */
export const INLINE_ARENA_BYTES = 256 << 10;

/** Inline bytes a layer may hold behind an object still being stored before its reader waits. */
export const MAX_HELD_INLINE = 16 << 20;

/** Stream-section bytes per zstd frame: the section is compressed as it is built, never whole. */
export const FRAME_RAW_BYTES = 4 << 20;

// ---- Hashing (verity/)

/**
 * How far a SHA-256 stream's readers let the hash fall behind: enough for libuv's hiccups, no
 * more. The chunks behind it are in flight: a layer's two hashes at 16 MiB each kept more
 * chunks out than the recycled pools keep idle (RECYCLED_IDLE_BYTES), and a third of them were
 * allocated afresh; at 4 MiB nearly all are reused.
 */
export const HASH_BACKLOG_BYTES = 4 << 20;

/** Data blocks hashed per back-end call: 256 KiB amortises the call and stays in L2. */
export const MERKLE_BATCH_BLOCKS = 64;

/** Files from this size on have their leaf level split across the pool's workers. */
export const SPLIT_THRESHOLD_BYTES = 64 << 20;

/** One range task of a split file: a multiple of a level-1 block's span (512 KiB for SHA-256). */
export const RANGE_BYTES = 8 << 20;

// ---- Writing objects (store/objects.ts)

/** Objects above this size are looked for before they are written: a stat is cheaper than the write. */
export const PRESENT_CHECK_MIN = 64 << 10;

// ---- Rebuilding a layer (store/rebuild.ts)

/** Objects opened ahead of the reader (and read whole when at most REBUILD_WHOLE_MAX). */
export const REBUILD_READ_AHEAD = 32;
/** Objects read in one job of libuv's pool: READ_AHEAD / READ_BATCH jobs at once (libuv has 4 threads). */
export const REBUILD_READ_BATCH = 8;
export const REBUILD_WHOLE_MAX = 1 << 20;
/** Inline bytes pulled ahead of the one being yielded. */
export const REBUILD_INLINE_AHEAD = 4 << 20;
/** Bytes of one batch laid out by the addon, and batches in flight at once. */
export const REBUILD_BATCH_BYTES = 8 << 20;
export const REBUILD_BATCHES = 3;
/** Addon read jobs in flight: while one waits on the hash and the sink, another reads. */
export const REBUILD_READERS = 2;
/** Small pieces reach a rebuild's sink this many bytes at a time. */
export const REBUILD_SINK_PIECE = 1 << 20;
