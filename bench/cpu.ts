/**
 * CPU time of this process's threads, split into the main thread, the pool's workers and the
 * rest (libuv's threads inflating and doing file I/O, the garbage collector's helpers), from
 * /proc: each thread's schedstat (nanoseconds on a CPU), else its stat (clock ticks).
 */
import { readFileSync } from 'node:fs';
import type { VerityPool } from '../src/pipeline/pool.ts';

export interface CpuSplit {
  main: number;
  pool: number;
  other: number;
}

function threadSeconds(tid: number): number {
  try {
    return Number(readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ')[0]) / 1e9;
  } catch {
    const f = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
    // Fields after the command name's ')': the 12th and 13th are utime and stime.
    const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) / 100;
  }
}

function processSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

export class CpuMeter {
  private readonly poolTids: number[];

  private constructor(poolTids: number[]) {
    this.poolTids = poolTids;
  }

  /** Finds the OS thread of every worker of `pool` (one held task per worker at once). */
  static async forPool(pool: VerityPool): Promise<CpuMeter> {
    const tids = new Set<number>();
    for (let tries = 0; tries < 5 && tids.size < pool.size; tries++) {
      const rs = await Promise.all(Array.from({ length: pool.size }, () => pool.run({ kind: 'thread-id', holdMs: 50, alg: 'sha256', impl: 'auto' })));
      for (const r of rs) if (r.ok) tids.add(r.tid);
    }
    return new CpuMeter([...tids]);
  }

  sample(): CpuSplit {
    const total = processSeconds();
    const main = threadSeconds(process.pid);
    let pool = 0;
    for (const t of this.poolTids) pool += threadSeconds(t);
    return { main, pool, other: Math.max(0, total - main - pool) };
  }

  since(start: CpuSplit): CpuSplit {
    const now = this.sample();
    return { main: now.main - start.main, pool: now.pool - start.pool, other: now.other - start.other };
  }
}
