/**
 * The stage model of an import: W, all its CPU seconds per GB of layer tar, and C, the busiest
 * thread's that no pool can split. On N cores an import goes at most at 1 / max(C, W/N) GB/s:
 * the cores share W, and no core does C faster. The pool's workers are left out of C (their
 * work divides among however many there are); the main thread, a layer's thread, libuv's
 * threads and V8's are not. The model is checked against the host: the same import pinned to
 * one core and to two (`taskset`, interleaved), whose measured speed-up the model predicts.
 */
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { CLI, hasTool, interleaved, timeCommand, type Timing } from './lib.ts';
import { THREAD_ROLES, type CpuSpan, type ThreadRole } from './threads.ts';

export interface StageModel {
  /** CPU seconds per GB by thread role. */
  byRole: Record<ThreadRole, number>;
  /** Every thread's CPU, s/GB. */
  w: number;
  /** The busiest thread outside the pool, s/GB, and its role. */
  c: number;
  busiest: ThreadRole | 'none';
  /** Share of all CPU on the main thread. */
  mainShare: number;
  /** Predicted speed-up over one core: W / max(C, W/N), at 2, 16 and 64 cores. */
  speedup: { 2: number; 16: number; 64: number };
}

export function predictedSpeedup(w: number, c: number, cores: number): number {
  return w / Math.max(c, w / cores);
}

/** The model from one measured import of `bytes` of layer tar (median span given). */
export function stageModel(cpu: CpuSpan, bytes: number): StageModel {
  const gb = bytes / 1e9;
  const byRole = Object.fromEntries(THREAD_ROLES.map((r) => [r, cpu.byRole[r] / gb])) as Record<ThreadRole, number>;
  const w = cpu.total / gb;
  const top = cpu.threads.find((t) => t.role !== 'pool');
  const c = top ? top.seconds / gb : 0;
  return {
    byRole,
    w,
    c,
    busiest: top?.role ?? 'none',
    mainShare: cpu.total > 0 ? cpu.byRole.main / cpu.total : 0,
    speedup: { 2: predictedSpeedup(w, c, 2), 16: predictedSpeedup(w, c, 16), 64: predictedSpeedup(w, c, 64) },
  };
}

/** The median run's span by total CPU (a span is kept whole: its threads belong together). */
export function medianSpan(spans: CpuSpan[]): CpuSpan | undefined {
  const s = [...spans].sort((a, b) => a.total - b.total);
  return s[Math.floor((s.length - 1) / 2)];
}

export interface ModelCheck {
  runs: number;
  oneCore: Timing;
  twoCores: Timing;
  /** Time on one core / time on two: measured, and as the model predicts it. */
  measured: number;
  predicted: number;
}

/**
 * The CLI's import (`importArgs`: its sources, or --all DIR) pinned to CPU 0, and to CPUs 0 and
 * 1, `runs` times each, interleaved, each into a fresh store under `work`. Null where taskset or
 * a second core is missing.
 */
export function checkModel(importArgs: string[], work: string, runs: number, model: StageModel): ModelCheck | null {
  if (availableParallelism() < 2 || !hasTool('taskset')) return null;
  const repo = join(work, 'model-check');
  const imp = (cpus: string) => (): number => timeCommand('taskset', ['-c', cpus, process.execPath, CLI, 'import', ...importArgs, '--repo', repo, '--no-progress'], { VERITREE_QUIET_FALLBACK: '1' });
  const settle = (): void => {
    rmSync(repo, { recursive: true, force: true });
    spawnSync('sync');
  };
  const t = interleaved({ one: imp('0'), two: imp('0,1') }, runs, settle);
  settle();
  const oneCore = t.one as Timing;
  const twoCores = t.two as Timing;
  return { runs, oneCore, twoCores, measured: oneCore.median / twoCores.median, predicted: model.speedup[2] };
}
