/**
 * How `veritree bench` runs a workload: each setting (a pool of some size) and each peer once
 * per round, rounds interleaved, every run of veritree measured thread by thread (threads.ts).
 */
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { digestFiles, importImages, openRepository, type ImportJob } from '../src/index.ts';
import { VerityPool } from '../src/pipeline/pool.ts';
import { median, timing } from './lib.ts';
import { THREAD_ROLES, type CpuSpan, type ThreadMeter, type ThreadRole } from './threads.ts';

/** One jobs value's runs: median seconds and spread, CPU s/GB by thread role (medians). */
export interface Point {
  jobs: number;
  ioLimit?: number;
  /** From the median time. */
  mbps: number;
  /** Median of the runs; min and max are the spread. */
  seconds: number;
  min: number;
  max: number;
  cpuPerGB?: Record<ThreadRole, number>;
}

export interface Peer {
  name: string;
  mbps: number;
  seconds: number;
  min: number;
  max: number;
  /** veritree at its best jobs value divided by the peer (above 1: veritree is faster). */
  ratio: number;
}

export interface Runs {
  secs: number[];
  cpu: CpuSpan[];
}

interface Contender {
  run(): Promise<{ seconds: number; cpu?: CpuSpan }>;
}

/** One tag per source: several images of one run must not share a tag. */
export function tagged(sources: string[]): ImportJob[] {
  return sources.map((source, i) => ({ source, tag: `bench-${i}` }));
}

export function jobsList(): number[] {
  const cores = availableParallelism();
  return [...new Set([1, 2, 4, 8, 16, 32, 64, 128].filter((j) => j < cores).concat([cores]))];
}

/** Every contender once per round, `runs` rounds: a noisy neighbour hurts them all alike. */
async function roundRobin(contenders: Map<string, Contender>, runs: number, say: (s: string) => void, signal: AbortSignal): Promise<Map<string, Runs>> {
  const out = new Map<string, Runs>();
  for (let i = 0; i < runs; i++) {
    for (const [name, c] of contenders) {
      signal.throwIfAborted();
      say(`${name} (run ${i + 1} of ${runs})`);
      const r = await c.run();
      const o = out.get(name) ?? { secs: [], cpu: [] };
      o.secs.push(r.seconds);
      if (r.cpu) o.cpu.push(r.cpu);
      out.set(name, o);
    }
  }
  return out;
}

function pointOf(setting: { jobs: number; ioLimit?: number }, r: Runs, bytes: number): Point {
  const t = timing(r.secs);
  const gb = bytes / 1e9;
  const cpuPerGB = r.cpu.length ? (Object.fromEntries(THREAD_ROLES.map((k) => [k, median(r.cpu.map((c) => c.byRole[k])) / gb])) as Record<ThreadRole, number>) : undefined;
  return { jobs: setting.jobs, ...(setting.ioLimit !== undefined ? { ioLimit: setting.ioLimit } : {}), mbps: bytes / 1e6 / t.median, seconds: t.median, min: t.min, max: t.max, ...(cpuPerGB ? { cpuPerGB } : {}) };
}

function peersOf(peers: Record<string, () => number>, results: Map<string, Runs>, bytes: number, points: Point[]): Peer[] {
  const best = Math.max(...points.map((p) => p.mbps));
  return Object.keys(peers).map((name) => {
    const t = timing((results.get(`peer: ${name}`) as Runs).secs);
    const mbps = bytes / 1e6 / t.median;
    return { name, mbps, seconds: t.median, min: t.min, max: t.max, ratio: best / mbps };
  });
}

function addPeers(contenders: Map<string, Contender>, peers: Record<string, () => number>): void {
  for (const [name, fn] of Object.entries(peers)) contenders.set(`peer: ${name}`, { run: async () => ({ seconds: fn() }) });
}

/** One pool per jobs value, all made (and their threads found) before the first run. */
async function withPools<T>(jobs: number[], meter: ThreadMeter, fn: (pools: Map<number, VerityPool>) => Promise<T>): Promise<T> {
  const pools = new Map<number, VerityPool>();
  try {
    for (const j of new Set(jobs)) {
      const pool = new VerityPool(j);
      pools.set(j, pool);
      await meter.addPool(pool);
    }
    return await fn(pools);
  } finally {
    for (const pool of pools.values()) await pool.close();
  }
}

export interface RunContext {
  meter: ThreadMeter;
  runs: number;
  say: (s: string) => void;
  signal: AbortSignal;
}

/** `digestFiles` of `paths` at each jobs value, and the peers. */
export async function poolDigest(name: string, paths: string[], bytes: number, ctx: RunContext, peers: Record<string, () => number>): Promise<{ points: Point[]; peers: Peer[] }> {
  const jobs = jobsList();
  return withPools(jobs, ctx.meter, async (pools) => {
    const contenders = new Map<string, Contender>();
    for (const j of jobs) {
      const pool = pools.get(j) as VerityPool;
      await digestFiles(paths.slice(0, 1), { pool });
      contenders.set(`jobs ${j}`, {
        run: async () => {
          const t0 = performance.now();
          const { cpu } = await ctx.meter.measure(() => digestFiles(paths, { pool }));
          return { seconds: (performance.now() - t0) / 1000, cpu };
        },
      });
    }
    addPeers(contenders, peers);
    const results = await roundRobin(contenders, ctx.runs, (s) => ctx.say(`${name}: ${s}`), ctx.signal);
    const points = jobs.map((j) => pointOf({ jobs: j }, results.get(`jobs ${j}`) as Runs, bytes));
    return { points, peers: peersOf(peers, results, bytes, points) };
  });
}

/**
 * Imports `sources` (one run of `importImages`, into a fresh store each time) at each jobs value
 * and I/O limit, and the peers; returns also the CPU spans of the runs at jobs = cores.
 */
export async function importWorkload(
  name: string,
  sources: string[],
  work: string,
  ioLimits: number[],
  ctx: RunContext,
  peers: Record<string, () => number>
): Promise<{ bytes: number; points: Point[]; peers: Peer[]; atCores: CpuSpan[] }> {
  const cores = availableParallelism();
  const jobs = jobsList();
  // min(cores, I/O limit) = I/O limit: the same pool as that jobs value, recorded under its I/O limit too.
  const ioPoints = ioLimits.filter((io) => io < cores && !jobs.includes(io));
  let bytes = 0;
  const root = join(work, 'repo');
  return withPools([...jobs, ...ioPoints], ctx.meter, async (pools) => {
    const contenders = new Map<string, Contender>();
    for (const j of [...jobs, ...ioPoints]) {
      const pool = pools.get(j) as VerityPool;
      contenders.set(`jobs ${j}`, {
        run: async () => {
          rmSync(root, { recursive: true, force: true });
          spawnSync('sync');
          const repo = await openRepository(root, { create: true });
          const t0 = performance.now();
          const { value, cpu } = await ctx.meter.measure(() => importImages(repo, tagged(sources), { pool, failFast: true }));
          const seconds = (performance.now() - t0) / 1000;
          const failed = value.images.find((r) => !r.ok);
          if (failed && !failed.ok) throw failed.error;
          bytes = value.total.tarBytes;
          return { seconds, cpu };
        },
      });
    }
    addPeers(contenders, peers);
    const results = await roundRobin(contenders, ctx.runs, (s) => ctx.say(`${name}: ${s}`), ctx.signal);
    rmSync(root, { recursive: true, force: true });
    const at = (j: number): Runs => results.get(`jobs ${j}`) as Runs;
    const points = jobs.map((j) => pointOf({ jobs: j }, at(j), bytes));
    for (const io of ioLimits) if (io < cores) points.push(pointOf({ jobs: io, ioLimit: io }, at(io), bytes));
    return { bytes, points, peers: peersOf(peers, results, bytes, points), atCores: at(cores).cpu };
  });
}
