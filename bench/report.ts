/**
 * The engine of `veritree bench`: measures veritree on this host (digest back ends, the pool
 * digesting files and one big file at jobs 1..cores, the import of synthetic images of several
 * shapes at jobs 1..cores and a few I/O limits), each import's stages alone and its stage model
 * (model.ts) checked on one core against two, the peers that are installed on the same data,
 * and writes report.json, report.md and scaling.svg. veritree runs in-process (the pools made
 * outside the timed part); peers and the model check run as commands.
 */
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { Bench } from 'tinybench';
import { verityDigest } from '../src/index.ts';
import { detectDevice } from '../src/pipeline/io-limit.ts';
import { resolveImpl } from '../src/verity/index.ts';
import type { ConcreteHashImpl } from '../src/verity/backends.ts';
import { filesystemOf, hasTool, hostFacts, mkcomposefsTool, timeCommand } from './lib.ts';
import { checkModel, medianSpan, stageModel } from './model.ts';
import { reportMarkdown } from './report-md.ts';
import { stageCosts } from './stages.ts';
import { buildShape, bytesFor, shapes, type Shape } from './synthetic.ts';
import { scalingSvg } from './svg.ts';
import { ThreadMeter } from './threads.ts';
import { importWorkload, poolDigest, type RunContext } from './workloads.ts';
import type { BenchOptions, BenchReport, Workload } from './report-types.ts';

export type { Peer, Point } from './workloads.ts';
export { secondsRange } from './report-md.ts';

export type { BenchOptions, BenchReport, Workload } from './report-types.ts';

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

function digestPeers(paths: string[]): Record<string, () => number> {
  const cores = availableParallelism();
  const list = paths.map((p) => `'${p}'`).join(' ');
  const per = Math.max(1, Math.ceil(paths.length / cores));
  const peers: Record<string, () => number> = {};
  if (hasTool('fsverity')) peers[`fsverity digest (xargs -P ${cores})`] = () => timeCommand('sh', ['-c', `printf '%s\\n' ${list} | xargs -P ${cores} -n ${per} fsverity digest > /dev/null`]);
  peers[`sha256sum (xargs -P ${cores})`] = () => timeCommand('sh', ['-c', `printf '%s\\n' ${list} | xargs -P ${cores} -n ${per} sha256sum > /dev/null`]);
  return peers;
}

/** ostree and mkcomposefs on a one-layer image's tar, where installed. */
function importPeers(shape: Shape, tar: Buffer, work: string, i: number): Record<string, () => number> {
  const peers: Record<string, () => number> = {};
  if (shape.images.length !== 1 || shape.layers.length !== 1) return peers;
  const tarFile = join(work, `layer-${i}.tar`);
  writeFileSync(tarFile, tar);
  if (hasTool('ostree')) {
    peers['ostree commit --tree=tar= (bare-user)'] = () => {
      const repo = join(work, 'ostree');
      rmSync(repo, { recursive: true, force: true });
      timeCommand('ostree', ['init', `--repo=${repo}`, '--mode=bare-user']);
      return timeCommand('ostree', ['commit', `--repo=${repo}`, '--branch=b', '--tar-autocreate-parents', `--tree=tar=${tarFile}`]);
    };
  }
  const mk = mkcomposefsTool();
  if (mk) {
    const tree = join(work, `tree-${i}`);
    rmSync(tree, { recursive: true, force: true });
    mkdirSync(tree, { recursive: true });
    spawnSync('tar', ['-C', tree, '-xf', tarFile]);
    peers['mkcomposefs --digest-store'] = () => {
      const store = join(work, 'cfs-store');
      rmSync(store, { recursive: true, force: true });
      return timeCommand(mk.bin, [`--digest-store=${store}`, tree, join(work, 'image.cfs')], mk.env);
    };
  }
  return peers;
}

/** The model check's runs: at least five, on inputs of 500 MB or more (one in a quick run). */
const CHECK_RUNS = 5;

export async function runBench(opts: BenchOptions): Promise<BenchReport> {
  const say = (s: string): void => opts.onProgress?.(s);
  const signal = opts.signal ?? new AbortController().signal;
  const out = resolve(opts.out);
  const work = join(out, 'work');
  mkdirSync(work, { recursive: true });
  const runs = opts.quick ? 1 : 3;
  const cores = availableParallelism();
  const device = await detectDevice(out);
  const host: Record<string, string | number> = { ...hostFacts(), filesystem: filesystemOf(out), device: device.device ?? 'none', deviceKind: device.kind };
  const meter = await ThreadMeter.start();
  const ctx: RunContext = { meter, runs, say, signal };
  try {
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
    const manyName = `digest: ${count} files of 2 MiB`;
    workloads.push({ name: manyName, bytes: count * each, runs, ...(await poolDigest(manyName, files, count * each, ctx, digestPeers(files))) });
    const bigSize = opts.quick ? 128 << 20 : 512 << 20;
    const big = join(work, `big-${bigSize}`);
    if (!existsSync(big)) writeFileSync(big, bytesFor(bigSize, 99));
    const bigName = `digest: one ${bigSize >> 20} MiB file (split)`;
    workloads.push({ name: bigName, bytes: bigSize, runs, ...(await poolDigest(bigName, [big], bigSize, ctx, digestPeers([big]))) });
    rmSync(big, { force: true });

    // Imports of synthetic images, each with its stages alone and its model checked.
    for (const [i, shape] of shapes(opts.quick).entries()) {
      signal.throwIfAborted();
      say(`building ${shape.name}`);
      const built = await buildShape(shape, join(work, `shape-${i}`));
      const sources = built.layouts.map((l) => `oci:${l}:bench`);
      const peers = importPeers(shape, built.tars[0] as Buffer, work, i);
      const w = await importWorkload(shape.name, sources, work, shape.name.includes('small') ? [1, 2] : [], ctx, peers);
      const span = medianSpan(w.atCores);
      const model = span ? stageModel(span, w.bytes) : undefined;
      say(`${shape.name}: each stage alone`);
      const { stages } = await stageCosts({ tars: built.tars, blobs: built.blobs, compression: shape.compression, sources }, work, meter, signal);
      say(`${shape.name}: the model on one core against two`);
      const importArgs = shape.images.length > 1 ? ['--all', join(work, `shape-${i}`)] : sources;
      const check = model ? checkModel(importArgs, work, opts.quick ? 1 : CHECK_RUNS, model) : null;
      workloads.push({ name: shape.name, bytes: w.bytes, runs, points: w.points, peers: w.peers, ...(model ? { model } : {}), stages, ...(check ? { check } : {}) });
      rmSync(join(work, `shape-${i}`), { recursive: true, force: true });
    }
    if (opts.image) {
      const w = await importWorkload(`import: ${opts.image}`, [opts.image], work, [], ctx, {});
      const span = medianSpan(w.atCores);
      workloads.push({ name: `import: ${opts.image}`, bytes: w.bytes, runs, points: w.points, peers: w.peers, ...(span ? { model: stageModel(span, w.bytes) } : {}) });
    }

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
    return report;
  } finally {
    await meter.close();
    rmSync(work, { recursive: true, force: true });
  }
}
