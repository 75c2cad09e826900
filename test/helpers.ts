/** Shared test helpers: paths, temp folders, running the CLI, finding the Debian tools. */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { prng } from '../bench/synthetic.ts';

/** The repository root (tests run compiled, from dist/test/). */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const CLI = fileURLToPath(new URL('../src/cli/veritree.cjs', import.meta.url));
export const SHARED = join(ROOT, '..', 'shared');

export function hasTool(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).status === 0;
}

/** For `test(..., { skip })`: false when the tool is there, else the reason CI prints. */
export function skipUnless(tool: string): string | false {
  return hasTool(tool) ? false : `skipped: ${tool} not installed`;
}

export function tempDir(prefix = 'veritree-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function cleanup(path: string): void {
  rmSync(path, { recursive: true, force: true });
}

export interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string } = {}): RunResult {
  const r: SpawnSyncReturns<string> = spawnSync(cmd, args, {
    encoding: 'utf8',
    maxBuffer: 256 << 20,
    cwd: opts.cwd,
    env: { ...process.env, VERITREE_QUIET_FALLBACK: '1', ...opts.env },
    input: opts.input,
  });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

export function veritree(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): RunResult {
  return run(process.execPath, [CLI, ...args], opts);
}

/** Runs a command that must succeed; throws with its stderr otherwise. */
export function must(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): string {
  const r = run(cmd, args, opts);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

export function exists(p: string): boolean {
  return existsSync(p);
}

/** Deterministic bytes ("byte at offset i is i mod 251" and friends, as in the vectors). */
export function contentFor(kind: string, size: number): Buffer {
  if (kind.startsWith("byte 0x61")) return Buffer.alloc(size, 0x61);
  if (kind.startsWith('byte 0x00')) return Buffer.alloc(size, 0);
  if (kind.startsWith('byte at offset i is i mod 251')) {
    const b = Buffer.allocUnsafe(size);
    for (let i = 0; i < size; i++) b[i] = i % 251;
    return b;
  }
  if (kind.includes('hello world')) return Buffer.from('hello world');
  throw new Error(`unknown content kind ${kind}`);
}

/** A small seeded PRNG (mulberry32), so random-looking tests are reproducible. */
export { prng };

export function randomBytesSeeded(size: number, seed: number): Buffer {
  const r = prng(seed);
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i += 4) {
    const v = (r() * 4294967296) >>> 0;
    b[i] = v & 0xff;
    if (i + 1 < size) b[i + 1] = (v >>> 8) & 0xff;
    if (i + 2 < size) b[i + 2] = (v >>> 16) & 0xff;
    if (i + 3 < size) b[i + 3] = v >>> 24;
  }
  return b;
}
