/** Shared bench helpers: timing external commands, host facts, table output. */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cpus, availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const CLI = fileURLToPath(new URL('../src/cli/veritree.cjs', import.meta.url));

export function hasTool(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name}`]).status === 0;
}

/**
 * mkcomposefs: the one on PATH, else 1.0.8 as the tests and scripts/bench-mkfs.sh build it from
 * ../shared/tools (in $TMPDIR/veritree-mkcomposefs-1.0.8). Null when neither is there.
 */
export function mkcomposefsTool(): { bin: string; env: NodeJS.ProcessEnv } | null {
  if (hasTool('mkcomposefs')) return { bin: 'mkcomposefs', env: {} };
  const prefix = join(tmpdir(), 'veritree-mkcomposefs-1.0.8');
  const bin = join(prefix, 'bin', 'mkcomposefs');
  if (!existsSync(bin)) return null;
  const lib = spawnSync('sh', ['-c', `dirname "$(find '${prefix}' -name 'libcomposefs.so.1' | head -1)"`], { encoding: 'utf8' }).stdout.trim();
  return { bin, env: { LD_LIBRARY_PATH: lib } };
}

/** Wall seconds of one run of a command; throws if it fails. */
export function timeCommand(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): number {
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env }, maxBuffer: 64 << 20 });
  const t = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr?.toString()}`);
  return t;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

/** Repeated runs of one thing: the median, and the fastest and slowest run (the spread). */
export interface Timing {
  median: number;
  min: number;
  max: number;
  runs: number;
}

export function timing(xs: number[]): Timing {
  return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs), runs: xs.length };
}

/** "1.23 (1.20-1.31)": the median and the range, for tables. */
export function spread(t: Timing, digits = 2): string {
  return t.runs > 1 ? `${t.median.toFixed(digits)} (${t.min.toFixed(digits)}-${t.max.toFixed(digits)})` : t.median.toFixed(digits);
}

/**
 * Runs each contender `runs` times, interleaved (a, b, a, b...) so that a noisy neighbour hurts
 * them alike; returns each one's median seconds and spread.
 */
export function interleaved(contenders: Record<string, () => number>, runs: number, before?: () => void): Record<string, Timing> {
  const times: Record<string, number[]> = {};
  for (let i = 0; i < runs; i++) {
    for (const [name, fn] of Object.entries(contenders)) {
      before?.();
      (times[name] ??= []).push(fn());
    }
  }
  return Object.fromEntries(Object.entries(times).map(([k, v]) => [k, timing(v)]));
}

export function hostFacts(): Record<string, string | number> {
  const cpu = cpus()[0];
  const flags = spawnSync('sh', ['-c', "grep -m1 -o -w -E 'sha_ni|sha512' /proc/cpuinfo | sort -u | tr '\\n' ' '"]).stdout?.toString().trim();
  return {
    cpu: cpu?.model ?? 'unknown',
    cores: availableParallelism(),
    shaExtensions: flags || 'none',
    node: process.version,
    openssl: process.versions.openssl ?? 'unknown',
  };
}

export function table(rows: Record<string, string | number>[]): string {
  if (rows.length === 0) return '';
  const cols = Object.keys(rows[0] as object);
  const cell = (v: string | number | undefined): string => (typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toFixed(2)) : (v ?? ''));
  const widths = cols.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (vals: string[]): string => `| ${vals.map((v, i) => v.padEnd(widths[i] as number)).join(' | ')} |`;
  return [line(cols), line(widths.map((w) => '-'.repeat(w))), ...rows.map((r) => line(cols.map((c) => cell(r[c]))))].join('\n');
}

export function mbps(bytes: number, seconds: number): number {
  return bytes / 1e6 / seconds;
}

/** The filesystem type of the folder `path` is on (df -T): tmpfs, ext4... */
export function filesystemOf(path: string): string {
  const r = spawnSync('df', ['-PT', path], { encoding: 'utf8' });
  return r.stdout.trim().split('\n')[1]?.split(/\s+/)[1] ?? 'unknown';
}
