/**
 * The engine of `veritree bench`: measures veritree on this host (digest back ends, the pool
 * digesting files and one big file at jobs 1..cores, the import of synthetic images of several
 * shapes at jobs 1..cores and a few I/O limits), the peers that are installed on the same data,
 * and writes report.json, report.md and scaling.svg. veritree runs in-process (the pool made
 * outside the timed part); peers run as commands.
 */
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import * as tarStream from 'tar-stream';
import { Bench } from 'tinybench';
import { digestFiles, importImage, openRepository, verityDigest } from '../src/index.ts';
import { detectDevice } from '../src/pipeline/io-limit.ts';
import { resolveImpl } from '../src/verity/index.ts';
import { VerityPool } from '../src/pipeline/pool.ts';
import { zstdCompress } from '../src/codec/zstd.ts';
import type { ConcreteHashImpl } from '../src/verity/backends.ts';
import { CpuMeter, type CpuSplit } from './cpu.ts';
import { filesystemOf, hasTool, hostFacts, median, mkcomposefsTool, table, timeCommand, timing } from './lib.ts';
import { scalingSvg } from './svg.ts';

export interface BenchOptions {
  quick: boolean;
  out: string;
  /** Also import this image (oci:DIR[:REF]) at each jobs value. */
  image?: string | undefined;
  onProgress?: ((line: string) => void) | undefined;
}

/** CPU seconds per GB (1e9 bytes) of data, by thread: what each part of the work costs. */
export interface CpuPerGB {
  main: number;
  pool: number;
  /** libuv's threads (inflating, file I/O) and the garbage collector's helpers. */
  other: number;
}

export interface Point {
  jobs: number;
  ioLimit?: number;
  /** From the median time. */
  mbps: number;
  /** Median of the runs; min and max are the spread. */
  seconds: number;
  min: number;
  max: number;
  cpuPerGB?: CpuPerGB;
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

/**
 * The main thread as the serial part of an import (Amdahl): its CPU time per GB is what the
 * pool cannot take from it, so it alone bounds the speed however many cores there are.
 */
export interface MainThreadLimit {
  /** MB/s the main thread can feed when the pool is infinitely fast: 1000 / its CPU s per GB. */
  feedMBps: number;
  /** Main-thread CPU / all CPU, at jobs 1. */
  serialFraction: number;
  /** Cores at which the main thread saturates: 1 / serialFraction. */
  saturatesAtCores: number;
}

export interface Workload {
  name: string;
  bytes: number;
  /** Runs of each setting and peer, interleaved. */
  runs: number;
  points: Point[];
  peers: Peer[];
  mainThread?: MainThreadLimit;
}

export interface BenchReport {
  command: string;
  date: string;
  quick: boolean;
  host: Record<string, string | number>;
  /** OpenSSL SHA-256 over one buffer, one core; the limit: the fastest one-core SHA-256 (OpenSSL or a back end) times the cores. */
  opensslOneCoreMBps: number;
  limitMBps: number;
  backends: { impl: string; size: string; mbps: number; ratioToOpenssl: number }[];
  workloads: Workload[];
}

function jobsList(): number[] {
  const cores = availableParallelism();
  return [...new Set([1, 2, 4, 8, 16, 32, 64, 128].filter((j) => j < cores).concat([cores]))];
}

function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Deterministic, not very compressible bytes. */
function bytesFor(size: number, seed: number): Buffer {
  const r = prng(seed);
  const b = Buffer.allocUnsafe(Math.ceil(size / 4) * 4);
  for (let i = 0; i < b.length; i += 4) b.writeUInt32LE((r() * 4294967296) >>> 0, i);
  return b.subarray(0, size);
}

async function tarOf(files: { name: string; size: number; seed: number }[]): Promise<Buffer> {
  const pack = tarStream.pack();
  for (const f of files) pack.entry({ name: f.name, mtime: new Date(0) }, bytesFor(f.size, f.seed));
  pack.finalize();
  const parts: Buffer[] = [];
  for await (const c of pack) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

type Compression = 'none' | 'gzip' | 'zstd';
const MEDIA: Record<Compression, string> = {
  none: 'application/vnd.oci.image.layer.v1.tar',
  gzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  zstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
};

function blob(layout: string, bytes: Buffer | Uint8Array): { digest: string; size: number } {
  const hex = createHash('sha256').update(bytes).digest('hex');
  writeFileSync(join(layout, 'blobs', 'sha256', hex), bytes);
  return { digest: `sha256:${hex}`, size: bytes.length };
}

/** A layout with one image `bench` whose layers are these tars. */
function writeLayout(layout: string, tars: Buffer[], c: Compression): void {
  rmSync(layout, { recursive: true, force: true });
  mkdirSync(join(layout, 'blobs', 'sha256'), { recursive: true });
  writeFileSync(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const layers = tars.map((t) => ({ mediaType: MEDIA[c], ...blob(layout, c === 'gzip' ? gzipSync(t, { level: 1 }) : c === 'zstd' ? zstdCompress(t) : t) }));
  const diffIds = tars.map((t) => `sha256:${createHash('sha256').update(t).digest('hex')}`);
  const config = blob(layout, Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: diffIds } })));
  const manifest = blob(layout, Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config }, layers })));
  writeFileSync(join(layout, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest, annotations: { 'org.opencontainers.image.ref.name': 'bench' } }] }));
}

interface Shape {
  name: string;
  compression: Compression;
  layers: { name: string; size: number; seed: number }[][];
}

function shapes(quick: boolean): Shape[] {
  const q = quick ? 1 : 4;
  const small = Array.from({ length: 1200 * q }, (_, i) => ({ name: `small/d${i % 50}/f${i}`, size: 512 + ((i * 7919) % 7680), seed: i }));
  const big = Array.from({ length: 4 * q }, (_, i) => ({ name: `big/f${i}`, size: 8 << 20, seed: 1000 + i }));
  const layered = Array.from({ length: 4 * q }, (_, l) => Array.from({ length: 150 }, (_, i) => ({ name: `l${l}/f${i}`, size: 4096 + ((i * 104729) % 61440), seed: 5000 + l * 1000 + i })));
  return [
    { name: 'import: many small files, one layer, gzip', compression: 'gzip', layers: [small] },
    { name: 'import: few big files, one layer, plain', compression: 'none', layers: [big] },
    { name: `import: ${layered.length} layers, zstd`, compression: 'zstd', layers: layered },
  ];
}

/** Seconds for one in-process import into a fresh repository (the pool made beforehand). */
async function timeImport(source: string, root: string, pool: VerityPool, meter: CpuMeter): Promise<{ seconds: number; bytes: number; cpu: CpuSplit }> {
  rmSync(root, { recursive: true, force: true });
  spawnSync('sync');
  const repo = await openRepository(root, { create: true });
  const c0 = meter.sample();
  const t0 = performance.now();
  const s = await importImage(repo, source, { pool, tag: 'bench' });
  return { seconds: (performance.now() - t0) / 1000, bytes: s.tarBytes, cpu: meter.since(c0) };
}

async function backends(quick: boolean, say: (s: string) => void): Promise<{ rows: BenchReport['backends']; openssl: number }> {
  const impls: ConcreteHashImpl[] = resolveImpl('auto') === 'native' ? ['native', 'node', 'noble'] : ['node', 'noble'];
  const rows: BenchReport['backends'] = [];
  let openssl1M = 0;
  for (const [label, size] of [['4 KiB', 4096], ['1 MiB', 1 << 20], ...(quick ? [] : [['64 MiB', 64 << 20]])] as [string, number][]) {
    say(`digest back ends, ${label}`);
    const data = bytesFor(size, 7);
    const bench = new Bench({ name: label, time: quick ? 100 : 400, warmupTime: 30, throws: true });
    bench.add('openssl', () => void createHash('sha256').update(data).digest());
    for (const impl of impls) if (!(impl === 'noble' && size > 1 << 20)) bench.add(impl, () => void verityDigest(data, 'sha256', impl));
    await bench.run();
    const mbps = (name: string): number => {
      const r = bench.getTask(name)?.result;
      return r && 'period' in r ? size / 1e6 / (r.period / 1000) : NaN;
    };
    const base = mbps('openssl');
    if (size === 1 << 20) openssl1M = base;
    for (const impl of impls) if (!Number.isNaN(mbps(impl))) rows.push({ impl, size: label, mbps: mbps(impl), ratioToOpenssl: mbps(impl) / base });
  }
  return { rows, openssl: openssl1M };
}

interface Contender {
  /** Seconds of one run; with `cpu`, the CPU seconds of that run by thread. */
  run(): Promise<{ seconds: number; cpu?: CpuSplit }>;
}

/** Every contender once per round, `runs` rounds: a noisy neighbour hurts them all alike. */
async function roundRobin(contenders: Map<string, Contender>, runs: number, say: (s: string) => void): Promise<Map<string, { secs: number[]; cpu: CpuSplit[] }>> {
  const out = new Map<string, { secs: number[]; cpu: CpuSplit[] }>();
  for (let i = 0; i < runs; i++) {
    for (const [name, c] of contenders) {
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

function medianCpu(cpu: CpuSplit[], bytes: number): CpuPerGB | undefined {
  if (cpu.length === 0) return undefined;
  const per = (k: keyof CpuSplit): number => median(cpu.map((c) => c[k])) / (bytes / 1e9);
  return { main: per('main'), pool: per('pool'), other: per('other') };
}

function pointOf(setting: { jobs: number; ioLimit?: number }, r: { secs: number[]; cpu: CpuSplit[] }, bytes: number): Point {
  const t = timing(r.secs);
  const cpuPerGB = medianCpu(r.cpu, bytes);
  return { jobs: setting.jobs, ...(setting.ioLimit !== undefined ? { ioLimit: setting.ioLimit } : {}), mbps: bytes / 1e6 / t.median, seconds: t.median, min: t.min, max: t.max, ...(cpuPerGB ? { cpuPerGB } : {}) };
}

function peersOf(peers: Record<string, () => number>, results: Map<string, { secs: number[] }>, bytes: number, points: Point[]): Peer[] {
  const best = Math.max(...points.map((p) => p.mbps));
  return Object.keys(peers).map((name) => {
    const t = timing((results.get(`peer: ${name}`) as { secs: number[] }).secs);
    const mbps = bytes / 1e6 / t.median;
    return { name, mbps, seconds: t.median, min: t.min, max: t.max, ratio: best / mbps };
  });
}

function peerContenders(peers: Record<string, () => number>): [string, Contender][] {
  return Object.entries(peers).map(([name, fn]) => [`peer: ${name}`, { run: async () => ({ seconds: fn() }) }]);
}

/** One pool per jobs value, all made before the first run; the runs of every pool and peer interleaved. */
async function withPools<T>(jobs: number[], fn: (pools: Map<number, { pool: VerityPool; meter: CpuMeter }>) => Promise<T>): Promise<T> {
  const pools = new Map<number, { pool: VerityPool; meter: CpuMeter }>();
  try {
    for (const j of new Set(jobs)) {
      const pool = new VerityPool(j);
      pools.set(j, { pool, meter: await CpuMeter.forPool(pool) });
    }
    return await fn(pools);
  } finally {
    for (const { pool } of pools.values()) await pool.close();
  }
}

async function poolDigest(name: string, paths: string[], bytes: number, runs: number, say: (s: string) => void, peers: Record<string, () => number>): Promise<Workload> {
  const jobs = jobsList();
  return withPools(jobs, async (pools) => {
    const contenders = new Map<string, Contender>();
    for (const j of jobs) {
      const { pool, meter } = pools.get(j) as { pool: VerityPool; meter: CpuMeter };
      await digestFiles(paths.slice(0, 1), { pool });
      contenders.set(`jobs ${j}`, {
        run: async () => {
          const c0 = meter.sample();
          const t0 = performance.now();
          await digestFiles(paths, { pool });
          return { seconds: (performance.now() - t0) / 1000, cpu: meter.since(c0) };
        },
      });
    }
    for (const [k, c] of peerContenders(peers)) contenders.set(k, c);
    const results = await roundRobin(contenders, runs, (s) => say(`${name}: ${s}`));
    const points = jobs.map((j) => pointOf({ jobs: j }, results.get(`jobs ${j}`) as { secs: number[]; cpu: CpuSplit[] }, bytes));
    return { name, bytes, runs, points, peers: peersOf(peers, results, bytes, points) };
  });
}

async function importWorkload(name: string, source: string, work: string, runs: number, ioLimits: number[], say: (s: string) => void, peers: Record<string, () => number>): Promise<Workload> {
  const cores = availableParallelism();
  const jobs = jobsList();
  // min(cores, I/O limit) = I/O limit: the same pool as that jobs value, recorded under its I/O limit too.
  const ioPoints = ioLimits.filter((io) => io < cores && !jobs.includes(io));
  let bytes = 0;
  return withPools([...jobs, ...ioPoints], async (pools) => {
    const contenders = new Map<string, Contender>();
    for (const j of [...jobs, ...ioPoints]) {
      const { pool, meter } = pools.get(j) as { pool: VerityPool; meter: CpuMeter };
      contenders.set(`jobs ${j}`, {
        run: async () => {
          const r = await timeImport(source, join(work, 'repo'), pool, meter);
          bytes = r.bytes;
          return r;
        },
      });
    }
    for (const [k, c] of peerContenders(peers)) contenders.set(k, c);
    const results = await roundRobin(contenders, runs, (s) => say(`${name}: ${s}`));
    rmSync(join(work, 'repo'), { recursive: true, force: true });
    const at = (j: number): { secs: number[]; cpu: CpuSplit[] } => results.get(`jobs ${j}`) as { secs: number[]; cpu: CpuSplit[] };
    const points = jobs.map((j) => pointOf({ jobs: j }, at(j), bytes));
    for (const io of ioLimits) if (io < cores) points.push(pointOf({ jobs: io, ioLimit: io }, at(io), bytes));
    const one = points[0]?.cpuPerGB;
    const mainThread = one && one.main > 0 ? mainThreadLimit(one) : undefined;
    return { name, bytes, runs, points, peers: peersOf(peers, results, bytes, points), ...(mainThread ? { mainThread } : {}) };
  });
}

function mainThreadLimit(c: CpuPerGB): MainThreadLimit {
  const serialFraction = c.main / (c.main + c.pool + c.other);
  return { feedMBps: 1000 / c.main, serialFraction, saturatesAtCores: 1 / serialFraction };
}

export async function runBench(opts: BenchOptions): Promise<BenchReport> {
  const say = (s: string): void => opts.onProgress?.(s);
  const out = resolve(opts.out);
  const work = join(out, 'work');
  mkdirSync(work, { recursive: true });
  const runs = opts.quick ? 1 : 3;
  const cores = availableParallelism();
  const device = await detectDevice(out);
  const host: Record<string, string | number> = { ...hostFacts(), filesystem: filesystemOf(out), device: device.device ?? "none", deviceKind: device.kind };

  const { rows: backendRows, openssl } = await backends(opts.quick, say);
  const workloads: Workload[] = [];

  // Many files, and one big file split across workers.
  const count = opts.quick ? 24 : 64;
  const each = 2 << 20;
  const files = Array.from({ length: count }, (_, i) => {
    const p = join(work, `file-${i}`);
    if (!existsSync(p)) writeFileSync(p, bytesFor(each, i));
    return p;
  });
  const digestPeers = (paths: string[]): Record<string, () => number> => {
    const list = paths.map((p) => `'${p}'`).join(' ');
    const peers: Record<string, () => number> = {};
    if (hasTool('fsverity')) peers[`fsverity digest (xargs -P ${cores})`] = () => timeCommand('sh', ['-c', `printf '%s\\n' ${list} | xargs -P ${cores} -n ${Math.max(1, Math.ceil(paths.length / cores))} fsverity digest > /dev/null`]);
    peers[`sha256sum (xargs -P ${cores})`] = () => timeCommand('sh', ['-c', `printf '%s\\n' ${list} | xargs -P ${cores} -n ${Math.max(1, Math.ceil(paths.length / cores))} sha256sum > /dev/null`]);
    return peers;
  };
  workloads.push(await poolDigest(`digest: ${count} files of 2 MiB`, files, count * each, runs, say, digestPeers(files)));
  const bigSize = opts.quick ? 128 << 20 : 512 << 20;
  const big = join(work, `big-${bigSize}`);
  if (!existsSync(big)) writeFileSync(big, bytesFor(bigSize, 99));
  workloads.push(await poolDigest(`digest: one ${bigSize >> 20} MiB file (split)`, [big], bigSize, runs, say, digestPeers([big])));

  // Import of synthetic images of several shapes.
  for (const shape of shapes(opts.quick)) {
    say(`building ${shape.name}`);
    const tars = await Promise.all(shape.layers.map((l) => tarOf(l)));
    const layout = join(work, `layout-${workloads.length}`);
    writeLayout(layout, tars, shape.compression);
    const peers: Record<string, () => number> = {};
    if (hasTool('ostree') && shape.layers.length === 1) {
      const tarFile = join(work, `layer-${workloads.length}.tar`);
      writeFileSync(tarFile, tars[0] as Buffer);
      peers['ostree commit --tree=tar= (bare-user)'] = () => {
        const repo = join(work, 'ostree');
        rmSync(repo, { recursive: true, force: true });
        timeCommand('ostree', ['init', `--repo=${repo}`, '--mode=bare-user']);
        return timeCommand('ostree', ['commit', `--repo=${repo}`, '--branch=b', '--tar-autocreate-parents', `--tree=tar=${tarFile}`]);
      };
    }
    const mk = mkcomposefsTool();
    if (mk && shape.layers.length === 1) {
      const tree = join(work, `tree-${workloads.length}`);
      rmSync(tree, { recursive: true, force: true });
      mkdirSync(tree, { recursive: true });
      const tarFile = join(work, `layer-${workloads.length}.tar`);
      writeFileSync(tarFile, tars[0] as Buffer);
      spawnSync('tar', ['-C', tree, '-xf', tarFile]);
      peers['mkcomposefs --digest-store'] = () => {
        const store = join(work, 'cfs-store');
        rmSync(store, { recursive: true, force: true });
        return timeCommand(mk.bin, [`--digest-store=${store}`, tree, join(work, 'image.cfs')], mk.env);
      };
    }
    workloads.push(await importWorkload(shape.name, `oci:${layout}:bench`, work, runs, shape.name.includes('small') ? [1, 2] : [], say, peers));
  }
  if (opts.image) workloads.push(await importWorkload(`import: ${opts.image}`, opts.image, work, runs, [], say, {}));

  const report: BenchReport = {
    command: `veritree bench${opts.quick ? ' --quick' : ''} --out ${opts.out}${opts.image ? ` --image ${opts.image}` : ''}`,
    date: new Date().toISOString(),
    quick: opts.quick,
    host,
    opensslOneCoreMBps: openssl,
    limitMBps: Math.max(openssl, ...backendRows.map((b) => b.mbps)) * cores,
    backends: backendRows,
    workloads,
  };
  writeFileSync(join(out, 'report.json'), JSON.stringify(report, null, 2) + '\n');
  writeFileSync(join(out, 'report.md'), reportMarkdown(report));
  writeFileSync(
    join(out, 'scaling.svg'),
    scalingSvg(
      workloads.map((w) => ({ name: w.name, points: w.points.filter((p) => p.ioLimit === undefined) })),
      { oneCoreMBps: report.limitMBps / cores, cores, label: `limit: fastest SHA-256, one core x min(jobs, ${cores})` },
      `veritree throughput against jobs (${host.cpu}, ${cores} cores)`
    )
  );
  rmSync(work, { recursive: true, force: true });
  return report;
}

/** A point's or a peer's time for tables: "0.123 (0.120-0.131)", the median and the range. */
export function secondsRange(p: { seconds: number; min: number; max: number }): string {
  return `${p.seconds.toFixed(3)} (${p.min.toFixed(3)}-${p.max.toFixed(3)})`;
}

export function reportMarkdown(r: BenchReport): string {
  const lines = [
    '# veritree bench',
    '',
    `Command: \`${r.command}\` (${r.date})`,
    '',
    table([r.host]),
    '',
    `Limit: the fastest SHA-256 on one core (OpenSSL over one 1 MiB buffer: ${r.opensslOneCoreMBps.toFixed(0)} MB/s, or the fastest back end below) times min(jobs, ${r.host.cores} cores): ${r.limitMBps.toFixed(0)} MB/s at ${r.host.cores} jobs. No workload can pass it: each hashes every byte it stores.`,
    '',
    '## Digest back ends, one core',
    '',
    table(r.backends.map((b) => ({ size: b.size, impl: b.impl, 'MB/s': b.mbps, 'vs OpenSSL one call': b.ratioToOpenssl }))),
    '',
  ];
  lines.push(
    `Every figure below is the median of ${r.workloads[0]?.runs ?? 1} runs, the settings and peers of a workload run in turn (interleaved); the range is the fastest and slowest run. CPU s/GB is CPU time per GB of data: of the main thread, of the pool's workers, and of the other threads (libuv's, inflating and doing file I/O; the garbage collector's).`,
    ''
  );
  for (const w of r.workloads) {
    lines.push(`## ${w.name}`, '', `${(w.bytes / 1e6).toFixed(1)} MB of data.`, '');
    lines.push(
      table(
        w.points.map((p) => ({
          jobs: p.jobs,
          'io-limit': p.ioLimit ?? '-',
          'MB/s': p.mbps,
          'seconds, median (range)': secondsRange(p),
          'vs jobs 1': p.mbps / ((w.points[0] as Point).mbps || 1),
          'CPU s/GB main': p.cpuPerGB?.main ?? '-',
          'CPU s/GB workers': p.cpuPerGB?.pool ?? '-',
          'CPU s/GB other': p.cpuPerGB?.other ?? '-',
        }))
      ),
      ''
    );
    if (w.mainThread) {
      const mt = w.mainThread;
      lines.push(
        `Main thread: ${(mt.serialFraction * 100).toFixed(0)}% of the CPU time at jobs 1 (the serial fraction): with an infinitely fast pool it feeds ${mt.feedMBps.toFixed(0)} MB/s, and it saturates at about ${mt.saturatesAtCores.toFixed(1)} cores.`,
        ''
      );
    }
    if (w.peers.length) lines.push(table(w.peers.map((p) => ({ peer: p.name, 'peer MB/s': p.mbps, 'seconds, median (range)': secondsRange(p), 'veritree (best jobs) / peer': p.ratio }))), '');
  }
  return lines.join('\n');
}
