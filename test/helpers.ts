/** Shared test helpers: paths, temp folders, running the CLI, finding the Debian tools. */
import { spawn, spawnSync, type ChildProcess, type SpawnOptions, type SpawnSyncOptions, type SpawnSyncOptionsWithBufferEncoding, type SpawnSyncOptionsWithStringEncoding, type SpawnSyncReturns } from 'node:child_process';
import assert from 'node:assert/strict';
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
  return spawnGuarded('sh', ['-c', `command -v ${name}`], { encoding: 'utf8', timeout: 10_000 }).status === 0;
}

/**
 * The conformance inputs in ../shared (vectors, the mkcomposefs oracle's sources) may be absent
 * on a developer's machine: their tests then skip. Under CI=true they must be there, so nothing
 * is skipped: the test runs and fails, naming what is missing.
 */
export const IN_CI = process.env.CI === 'true';

/** For `test(..., { skip })` on a ../shared input: `reason` (why it is absent), or false under CI. */
export function sharedSkip(reason: string | false): string | false {
  return reason && !IN_CI ? reason : false;
}

/** First thing in such a test: fails it, naming what is missing, when `reason` says it is absent. */
export function needShared(reason: string | false): void {
  if (reason) assert.fail(`${reason.replace(/^skipped: /, '')}; the conformance inputs in ../shared are required under CI=true`);
}

/** Inside a test: skips it for a missing ../shared input, or fails it under CI (see needShared). */
export function skipShared(t: { skip(message?: string): void }, reason: string): void {
  if (IN_CI) needShared(reason);
  t.skip(reason);
}

/**
 * The test tier: `npm run test:quick` sets VERITREE_TEST_TIER=quick and skips the heavy tests (the
 * 2 GiB file, the SIGKILL loop, Chromium, scale and memory tests at large counts); `npm test`, as
 * CI runs it, sets nothing and runs every test.
 */
export const QUICK = process.env.VERITREE_TEST_TIER === 'quick';

/** For `test(..., { skip: heavy() })`: skipped only under the quick tier, never otherwise. */
export function heavy(): string | false {
  return QUICK ? 'heavy tier: npm test runs it' : false;
}

/**
 * How long a child process may run before the test fails: a hang guard, not a speed claim, so it
 * is generous; a call that needs longer passes its own `timeout`.
 */
export const SPAWN_TIMEOUT_MS = 240_000;

function timedOut(cmd: string, args: readonly string[], ms: number, stderr: unknown): Error {
  const tail = String(stderr ?? '').slice(-2000);
  return new Error(`${cmd} ${args.join(' ')}: still running after ${ms / 1000} s, killed (SIGKILL, ETIMEDOUT): a hang${tail ? `; its stderr so far:\n${tail}` : ''}`);
}

/**
 * spawnSync with a hang guard: past `timeout` ms (SPAWN_TIMEOUT_MS unless given) the child is
 * killed and the call throws, naming the command, instead of blocking the whole suite. Any other
 * error (a missing command) is left in the result, as spawnSync leaves it.
 */
export function spawnGuarded(cmd: string, args: readonly string[], opts: SpawnSyncOptionsWithStringEncoding): SpawnSyncReturns<string>;
export function spawnGuarded(cmd: string, args: readonly string[], opts?: SpawnSyncOptionsWithBufferEncoding): SpawnSyncReturns<Buffer>;
export function spawnGuarded(cmd: string, args: readonly string[], opts: SpawnSyncOptions = {}): SpawnSyncReturns<string | Buffer> {
  const timeout = opts.timeout ?? SPAWN_TIMEOUT_MS;
  const r = spawnSync(cmd, args, { killSignal: 'SIGKILL', ...opts, timeout });
  if ((r.error as NodeJS.ErrnoException | undefined)?.code === 'ETIMEDOUT') throw timedOut(cmd, args, timeout, r.stderr);
  return r;
}

/**
 * spawn with a hang guard: `done` resolves when the child closes, and rejects, naming the command,
 * if it is still running after `timeout` ms (SPAWN_TIMEOUT_MS unless given; it is then killed).
 * Children a test means to kill itself (a lock holder, a loop) need no guard.
 */
export function spawnWatched(cmd: string, args: readonly string[], opts: SpawnOptions & { timeout?: number } = {}): { child: ChildProcess; done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> } {
  const timeout = opts.timeout ?? SPAWN_TIMEOUT_MS;
  const child = spawn(cmd, args, { ...opts, timeout: undefined });
  let stderr = '';
  child.stderr?.on('data', (b: Buffer) => (stderr += b.toString()));
  let expired = false;
  const timer = setTimeout(() => {
    expired = true;
    child.kill('SIGKILL');
  }, timeout);
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve, reject) =>
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (expired) reject(timedOut(cmd, args, timeout, stderr));
      else resolve({ code, signal, stderr });
    })
  );
  return { child, done };
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

/** Options of run, veritree and must; `timeout` (ms) overrides SPAWN_TIMEOUT_MS, the hang guard. */
export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  input?: string;
  timeout?: number;
}

/** Runs a command to its end; a hang fails the test (see spawnGuarded), a missing command throws. */
export function run(cmd: string, args: string[], opts: RunOptions = {}): RunResult {
  const r: SpawnSyncReturns<string> = spawnGuarded(cmd, args, {
    encoding: 'utf8',
    maxBuffer: 256 << 20,
    cwd: opts.cwd,
    env: { ...process.env, VERITREE_QUIET_FALLBACK: '1', ...opts.env },
    input: opts.input,
    timeout: opts.timeout,
  });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

export function veritree(args: string[], opts: RunOptions = {}): RunResult {
  return run(process.execPath, [CLI, ...args], opts);
}

/** Runs a command that must succeed; throws with its stderr otherwise. */
export function must(cmd: string, args: string[], opts: RunOptions = {}): string {
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
