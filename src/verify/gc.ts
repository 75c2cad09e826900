/**
 * Garbage collection: mark from the roots (every link under streams/refs/ and images/refs/),
 * following each stream's object refs and, through its stream refs, other streams; then sweep
 * every object nobody marked, every stream link whose object is gone or unmarked, and every
 * stray tmp file. It holds the exclusive repository lock, so no import writes meanwhile.
 * @module
 */
import { lstat, readdir, readlink, rm, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { storeIoError } from '../errors.ts';
import { IMAGES_DIR, STREAMS_DIR, objectIdFromLink } from '../store/layout.ts';
import type { Repository } from '../store/repository.ts';
import { readRefs } from '../store/splitstream.ts';

export interface GcOptions {
  dryRun?: boolean;
  /** How long to wait for running imports to finish (ms); default: wait. */
  lockTimeoutMs?: number;
  signal?: AbortSignal;
  onProgress?: (p: { phase: 'mark' | 'sweep'; done: number; total: number }) => void;
}

export interface GcReport {
  dryRun: boolean;
  roots: number;
  objectsKept: number;
  objectsRemoved: number;
  bytesFreed: number;
  streamsRemoved: string[];
  tmpRemoved: number;
  seconds: number;
}

async function linksUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await linksUnder(p)));
    else if (e.isSymbolicLink()) out.push(p);
  }
  return out;
}

/** The object a link resolves to (through a tag's stream link, if need be). */
async function resolveToObject(link: string): Promise<string | null> {
  let p = link;
  for (let hops = 0; hops < 4; hops++) {
    const target = await readlink(p).catch(() => null);
    if (target === null) return null;
    const id = objectIdFromLink(target);
    if (id) return id;
    p = join(p, '..', target);
  }
  return null;
}

export async function gc(repo: Repository, opts: GcOptions = {}): Promise<GcReport> {
  const started = performance.now();
  const lock = await repo.lockExclusive({ ...(opts.lockTimeoutMs !== undefined ? { timeoutMs: opts.lockTimeoutMs } : {}), ...(opts.signal ? { signal: opts.signal } : {}) });
  try {
    const roots = [...(await linksUnder(join(repo.root, STREAMS_DIR, 'refs'))), ...(await linksUnder(join(repo.root, IMAGES_DIR, 'refs')))];
    const marked = new Set<string>();
    const queue: string[] = [];
    for (const r of roots) {
      const id = await resolveToObject(r);
      if (id && !marked.has(id)) {
        marked.add(id);
        queue.push(id);
      }
    }
    // Every stream reachable from a root keeps its objects and, through stream refs, other streams.
    for (let done = 0; queue.length > 0; done++) {
      const id = queue.pop() as string;
      opts.onProgress?.({ phase: 'mark', done, total: done + queue.length });
      let refs;
      try {
        refs = readRefs(await repo.readObject(id));
      } catch {
        continue; // not a stream (or damaged: fsck reports it); keeps only itself
      }
      for (const o of refs.objectRefs) marked.add(o);
      for (const s of refs.streamRefs) {
        if (!marked.has(s)) {
          marked.add(s);
          queue.push(s);
        }
      }
    }

    const report: GcReport = { dryRun: opts.dryRun === true, roots: roots.length, objectsKept: 0, objectsRemoved: 0, bytesFreed: 0, streamsRemoved: [], tmpRemoved: 0, seconds: 0 };
    // Stream links first: a link must never outlive its object.
    const streamsDir = join(repo.root, STREAMS_DIR);
    for (const name of (await readdir(streamsDir).catch(() => [] as string[])).filter((n) => n !== 'refs')) {
      const p = join(streamsDir, name);
      const st = await lstat(p).catch(() => null);
      if (!st?.isSymbolicLink()) continue;
      const id = objectIdFromLink((await readlink(p).catch(() => '')) ?? '');
      if (id && marked.has(id)) continue;
      report.streamsRemoved.push(name);
      if (!report.dryRun) await unlink(p).catch((e: unknown) => {
        throw storeIoError(e, p, 'removing a stream link');
      });
    }
    let swept = 0;
    for await (const e of repo.walkObjects()) {
      if (++swept % 1000 === 0) opts.onProgress?.({ phase: 'sweep', done: swept, total: 0 });
      if (e.kind === 'object') {
        if (marked.has(e.id)) {
          report.objectsKept++;
          continue;
        }
        const st = await stat(e.path).catch(() => null);
        report.objectsRemoved++;
        report.bytesFreed += st?.size ?? 0;
        if (!report.dryRun) await unlink(e.path).catch((err: unknown) => {
          throw storeIoError(err, e.path, 'removing an object');
        });
      } else if (e.kind === 'tmp') {
        // The exclusive lock means no import is running: every tmp file is stray.
        report.tmpRemoved++;
        if (!report.dryRun) await rm(e.path, { force: true });
      }
    }
    report.seconds = (performance.now() - started) / 1000;
    return report;
  } finally {
    await lock.release();
  }
}
