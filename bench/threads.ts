/**
 * CPU seconds of this process's threads, each labelled by its role, from
 * /proc/self/task/TID/schedstat (nanoseconds on a CPU): the stage model's input (model.ts).
 *
 * Node 20 names no thread (every comm is "node"), so roles are found by what each thread does:
 * - main: the thread whose id is the process's;
 * - pool: the Piscina workers, each reporting its own id (the worker's `thread-id` task);
 * - libuv: the threads that run a burst of libuv jobs (pbkdf2) queued when the meter starts;
 * - layer: threads that appeared after the meter started and are none of the above (worker
 *   threads an import starts for its layers);
 * - other: threads that were there before (V8's platform threads: compiler and garbage
 *   collector helpers; the signal thread), and the CPU of threads that ended between samples.
 * Threads may end before a run does (a layer's thread when its layer is done): a sampler thread
 * of the meter's own reads every thread's figure every SAMPLE_MS, and its own CPU is left out.
 */
import { pbkdf2 } from 'node:crypto';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { ERROR_CODES, VeritreeError } from '../src/errors.ts';
import type { VerityPool } from '../src/pipeline/pool.ts';

export type ThreadRole = 'main' | 'layer' | 'pool' | 'libuv' | 'other';
export const THREAD_ROLES: readonly ThreadRole[] = ['main', 'layer', 'pool', 'libuv', 'other'];

/** One thread's CPU seconds in a measured span. */
export interface ThreadCpu {
  tid: number;
  role: ThreadRole;
  seconds: number;
}

/** CPU seconds of a span: by role, and thread by thread. */
export interface CpuSpan {
  byRole: Record<ThreadRole, number>;
  total: number;
  /** Part of byRole.other: CPU no sample saw (threads that started and ended between two). */
  unseen: number;
  threads: ThreadCpu[];
}

/** How often the sampler reads every thread: the most CPU a thread can end without being seen. */
const SAMPLE_MS = 10;

/** schedstat's first field, in seconds; null once the thread has ended. */
function threadSeconds(tid: number): number | null {
  try {
    return Number(readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ')[0]) / 1e9;
  } catch (e) {
    // The thread ended between listing the folder and reading its file.
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ESRCH') return null;
    throw e;
  }
}

function allThreads(): Map<number, number> {
  const m = new Map<number, number>();
  for (const t of readdirSync('/proc/self/task')) {
    const s = threadSeconds(Number(t));
    if (s !== null) m.set(Number(t), s);
  }
  return m;
}

function processSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/** The sampler: plain JavaScript, run as a worker; answers 'take' with the last figure of every thread seen. */
const SAMPLER = `
const { parentPort } = require('node:worker_threads');
const { readdirSync, readFileSync, readlinkSync } = require('node:fs');
const self = Number(readlinkSync('/proc/thread-self').split('/').pop());
let last = new Map();
function sample() {
  for (const t of readdirSync('/proc/self/task')) {
    try { last.set(Number(t), Number(readFileSync('/proc/self/task/' + t + '/schedstat', 'utf8').split(' ')[0]) / 1e9); }
    catch (e) { if (e.code !== 'ENOENT' && e.code !== 'ESRCH') throw e; }
  }
}
const timer = setInterval(sample, ${SAMPLE_MS});
parentPort.postMessage({ self });
parentPort.on('message', (m) => {
  if (m === 'stop') { clearInterval(timer); parentPort.close(); return; }
  sample();
  parentPort.postMessage({ last: [...last] });
  last = new Map();
});
`;

export class ThreadMeter {
  private readonly before: Set<number>;
  private readonly libuv: Set<number>;
  private readonly pool = new Set<number>();
  private readonly sampler: Worker;
  private readonly samplerTid: number;

  private constructor(before: Set<number>, libuv: Set<number>, sampler: Worker, samplerTid: number) {
    this.before = before;
    this.libuv = libuv;
    this.sampler = sampler;
    this.samplerTid = samplerTid;
  }

  /** Notes the threads there now, finds libuv's, and starts the sampler. Make it before any pool. */
  static async start(): Promise<ThreadMeter> {
    const before = new Set(allThreads().keys());
    const libuv = await findLibuvThreads();
    const sampler = new Worker(SAMPLER, { eval: true });
    const samplerTid = await new Promise<number>((resolve, reject) => {
      sampler.once('message', (m: { self: number }) => {
        sampler.off('error', reject);
        resolve(m.self);
      });
      sampler.once('error', reject);
    });
    // libuv's threads may have started in the probe: they are libuv, not "before".
    for (const t of libuv) before.delete(t);
    return new ThreadMeter(before, libuv, sampler, samplerTid);
  }

  /** Finds the OS thread of every worker of `pool` (one held task per worker at once). */
  async addPool(pool: VerityPool): Promise<void> {
    const found = new Set<number>();
    for (let tries = 0; tries < 5 && found.size < pool.size; tries++) {
      const rs = await Promise.all(Array.from({ length: pool.size }, () => pool.run({ kind: 'thread-id', holdMs: 50, alg: 'sha256', impl: 'auto' })));
      for (const r of rs) if (r.ok) found.add(r.tid);
    }
    if (found.size < pool.size) throw new VeritreeError(ERROR_CODES.INTERNAL, `found ${found.size} of the pool's ${pool.size} threads`);
    for (const t of found) this.pool.add(t);
  }

  private roleOf(tid: number): ThreadRole {
    if (tid === process.pid) return 'main';
    if (this.pool.has(tid)) return 'pool';
    if (this.libuv.has(tid)) return 'libuv';
    if (this.before.has(tid)) return 'other';
    return 'layer';
  }

  private take(): Promise<Map<number, number>> {
    return new Promise((resolve, reject) => {
      const onMessage = (m: { last: [number, number][] }): void => {
        this.sampler.off('error', reject);
        resolve(new Map(m.last));
      };
      this.sampler.once('message', onMessage);
      this.sampler.once('error', reject);
      this.sampler.postMessage('take');
    });
  }

  /** Runs `fn` and returns its result with the CPU every thread spent while it ran. */
  async measure<T>(fn: () => Promise<T>): Promise<{ value: T; cpu: CpuSpan }> {
    await this.take();
    const start = allThreads();
    const p0 = processSeconds();
    const value = await fn();
    const p1 = processSeconds();
    const end = allThreads();
    const seen = await this.take();
    const threads: ThreadCpu[] = [];
    let samplerSeconds = 0;
    for (const tid of new Set([...start.keys(), ...end.keys(), ...seen.keys()])) {
      const last = end.get(tid) ?? seen.get(tid);
      if (last === undefined) continue;
      const seconds = Math.max(0, last - (start.get(tid) ?? 0));
      if (tid === this.samplerTid) samplerSeconds = seconds;
      else threads.push({ tid, role: this.roleOf(tid), seconds });
    }
    const byRole = Object.fromEntries(THREAD_ROLES.map((r) => [r, 0])) as Record<ThreadRole, number>;
    for (const t of threads) byRole[t.role] += t.seconds;
    // What no sample saw: threads that started and ended between two samples, or ran on after
    // the last. getrusage and schedstat count differently, so the threads' sum may pass the
    // process's figure: the total is never less than what the threads show.
    const seenSeconds = threads.reduce((n, t) => n + t.seconds, 0);
    const unseen = Math.max(0, p1 - p0 - samplerSeconds - seenSeconds);
    const total = seenSeconds + unseen;
    byRole.other += unseen;
    threads.sort((a, b) => b.seconds - a.seconds);
    return { value, cpu: { byRole, total, unseen, threads } };
  }

  async close(): Promise<void> {
    this.sampler.postMessage('stop');
    await new Promise((resolve) => this.sampler.once('exit', resolve));
  }
}

/**
 * The threads of libuv's pool: queue four jobs per thread (pbkdf2, a few ms of CPU each, on
 * whichever pool thread is free) and take every thread but the main one that did a share of them.
 */
async function findLibuvThreads(): Promise<Set<number>> {
  const size = Number(process.env.UV_THREADPOOL_SIZE ?? 4) || 4;
  const before = allThreads();
  await Promise.all(Array.from({ length: size * 4 }, () => new Promise<void>((resolve, reject) => pbkdf2('p', 's', 20_000, 32, 'sha256', (e) => (e ? reject(e) : resolve())))));
  const after = allThreads();
  const gains = [...after].filter(([t]) => t !== process.pid).map(([t, s]) => [t, s - (before.get(t) ?? 0)] as const);
  const top = Math.max(...gains.map(([, g]) => g));
  return new Set(gains.filter(([, g]) => g > top / 8).map(([t]) => t));
}

/** This thread's OS id (for a stage measured alone on the main thread). */
export function ownThreadSeconds(): number {
  const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
  return threadSeconds(tid) ?? 0;
}
