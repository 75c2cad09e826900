/** report.md of `veritree bench`: the report's figures as tables, and how to read them. */
import { table } from './lib.ts';
import { THREAD_ROLES, type ThreadRole } from './threads.ts';
import type { BenchReport, Workload } from './report-types.ts';
import type { Point } from './workloads.ts';

/** A point's or a peer's time for tables: "0.123 (0.120-0.131)", the median and the range. */
export function secondsRange(p: { seconds: number; min: number; max: number }): string {
  return `${p.seconds.toFixed(3)} (${p.min.toFixed(3)}-${p.max.toFixed(3)})`;
}

/** The stage model of an import workload as one table row (the comparison suite, the docs). */
export function modelRows(w: Workload): Record<string, string | number>[] {
  const m = w.model;
  if (!m) return [];
  return [
    {
      workload: w.name,
      'tar MB': Math.round(w.bytes / 1e6),
      'W s/GB': m.w,
      'C s/GB': m.c,
      busiest: m.busiest,
      'main share': `${(m.mainShare * 100).toFixed(1)}%`,
      'predicted x16': m.speedup[16],
      'predicted x64': m.speedup[64],
      '1 vs 2 cores, predicted': m.speedup[2],
      '1 vs 2 cores, measured': w.check ? `${w.check.measured.toFixed(2)} (${w.check.runs} runs)` : '-',
    },
  ];
}

/** Each jobs value of a workload, one row each, CPU by thread role in one cell. */
export function pointRows(w: Workload): Record<string, string | number>[] {
  return w.points.map((p) => ({
    workload: w.name,
    jobs: p.jobs,
    'io-limit': p.ioLimit ?? '-',
    'MB/s': p.mbps,
    'seconds, median (range)': secondsRange(p),
    [`CPU s/GB ${THREAD_ROLES.join(', ')}`]: p.cpuPerGB ? THREAD_ROLES.map((k) => (p.cpuPerGB as Record<ThreadRole, number>)[k].toFixed(2)).join(', ') : '-',
  }));
}

/** The stage columns of stageRows, each with how a stage's name is recognised. */
const STAGE_COLUMNS: [string, (stage: string) => boolean][] = [
  ['blob SHA-256', (s) => s === 'blob SHA-256'],
  ['inflate', (s) => s.endsWith(' inflate')],
  ['diff_id SHA-256', (s) => s === 'diff_id SHA-256'],
  ['tar walk', (s) => s.startsWith('tar walk')],
  ['store', (s) => s.startsWith('store')],
  ['serial chain', (s) => s.startsWith('serial chain')],
  ['null pool, all', (s) => s.startsWith('null-pool import, all')],
  ['null pool, busiest', (s) => s.startsWith('null-pool import, busiest')],
];

/**
 * Each stage alone, one row per workload: each cell "CPU s/GB / CPU us per file" (the busiest
 * thread's cell names its role); "-" where the workload has no such stage (a plain layer's inflate).
 */
export function stageRows(w: Workload): Record<string, string | number>[] {
  if (!w.stages?.length) return [];
  const row: Record<string, string | number> = { workload: w.name };
  for (const [col, is] of STAGE_COLUMNS) {
    const s = w.stages.find((x) => is(x.stage));
    const role = s ? /\(([^)]+)\)$/.exec(s.stage)?.[1] : undefined;
    row[col] = s ? `${s.sPerGB.toFixed(2)} / ${s.usPerFile.toFixed(1)}${col === 'null pool, busiest' && role ? ` ${role}` : ''}` : '-';
  }
  return [row];
}

function pointsTable(w: Workload): string {
  const one = (w.points[0] as Point).mbps || 1;
  return table(
    w.points.map((p) => ({
      jobs: p.jobs,
      'io-limit': p.ioLimit ?? '-',
      'MB/s': p.mbps,
      'seconds, median (range)': secondsRange(p),
      'vs jobs 1': p.mbps / one,
      ...Object.fromEntries(THREAD_ROLES.map((r) => [`CPU s/GB ${r}`, p.cpuPerGB?.[r] ?? '-'])),
    }))
  );
}

function modelLines(w: Workload): string[] {
  const lines: string[] = [];
  const m = w.model;
  if (m) {
    lines.push(
      `Stage model (runs at jobs = cores): W = ${m.w.toFixed(2)} CPU s/GB in all, C = ${m.c.toFixed(2)} s/GB on the busiest thread outside the pool (${m.busiest}); main thread ${(m.mainShare * 100).toFixed(1)}% of the CPU. Predicted speed-up over one core, W / max(C, W/N): ${m.speedup[2].toFixed(2)}x at 2 cores, ${m.speedup[16].toFixed(2)}x at 16, ${m.speedup[64].toFixed(2)}x at 64.`,
      ''
    );
  }
  if (w.check) {
    const c = w.check;
    lines.push(
      `Model check (CLI import, \`taskset\`, ${c.runs} runs interleaved): one core ${secondsRange({ seconds: c.oneCore.median, min: c.oneCore.min, max: c.oneCore.max })} s, two cores ${secondsRange({ seconds: c.twoCores.median, min: c.twoCores.min, max: c.twoCores.max })} s: speed-up ${c.measured.toFixed(2)}x measured, ${c.predicted.toFixed(2)}x predicted.`,
      ''
    );
  }
  if (w.stages) lines.push(table(w.stages.map((s) => ({ 'stage alone, one thread': s.stage, 'CPU s/GB of tar': s.sPerGB, 'CPU us/file': s.usPerFile }))), '');
  return lines;
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
    `Every figure below is the median of ${r.workloads[0]?.runs ?? 1} runs, the settings and peers of a workload run in turn (interleaved); the range is the fastest and slowest run. CPU s/GB is CPU time per GB of data by thread: the main thread, layer threads (worker threads an import starts for its layers), the pool's workers, libuv's threads, and the rest (V8's compiler and garbage collector helpers, threads that ended between samples).`,
    '',
  ];
  for (const w of r.workloads) {
    lines.push(`## ${w.name}`, '', `${(w.bytes / 1e6).toFixed(1)} MB of data.`, '', pointsTable(w), '');
    lines.push(...modelLines(w));
    if (w.peers.length) lines.push(table(w.peers.map((p) => ({ peer: p.name, 'peer MB/s': p.mbps, 'seconds, median (range)': secondsRange(p), 'veritree (best jobs) / peer': p.ratio }))), '');
  }
  return lines.join('\n');
}
