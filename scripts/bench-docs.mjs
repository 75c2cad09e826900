#!/usr/bin/env node
// Writes the figures of a `npm run bench` report into README.md and docs/performance.md, between
// their <!-- bench:... --> markers (summary; stages, model, peers, floor), so that every figure
// there comes from one named run.
//   node scripts/bench-docs.mjs REPORT.json
// `npm run bench:docs` runs the whole comparison suite on tmpfs and then this (after npm run build).
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stageRows } from '../dist/bench/report-md.js';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const reportPath = process.argv[2];
if (!reportPath) {
  console.error('usage: node scripts/bench-docs.mjs REPORT.json');
  process.exit(2);
}
const r = JSON.parse(readFileSync(reportPath, 'utf8'));

const cell = (v) => (typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toFixed(2)) : String(v ?? ''));
function table(rows) {
  if (!rows?.length) return '(not measured in this run)';
  const cols = Object.keys(rows[0]);
  return [`| ${cols.join(' | ')} |`, `|${cols.map(() => '---').join('|')}|`, ...rows.map((row) => `| ${cols.map((c) => cell(row[c]).replace(/\|/g, '\\|')).join(' | ')} |`)].join('\n');
}
const find = (section, pred) => (r[section] ?? []).find(pred);
const x = (v) => (typeof v === 'number' ? `${v.toFixed(2)}x` : 'n/a');
const secs = (row) => (row ? `${row['seconds, median (range)']} s` : 'n/a');

const host = r.host ?? {};
// bench/import.bench.ts runs the small layer's imports 5 times in a full run (they are short and noisy).
const smallImport = r.quick ? undefined : (r.import ?? []).find((row) => row['tar MB'] < 200);
const where = `\`${r.command}\` (${r.date?.slice(0, 10)}; ${host.cpu}, ${host.cores} cores, Node ${host.node}; work directory ${r.workDir ?? 'on tmpfs'}; medians of ${r.runs ?? 3} interleaved runs${smallImport ? `, 5 for the imports of the ${Math.round(smallImport['tar MB'])} MB layer` : ''}, range in brackets)`;

// README: one line per claim, each a ratio against a peer measured in the same run.
const cli = (n) => find('veritree digest vs fsverity digest', (row) => row.command.startsWith(n));
const vd = cli('veritree digest (jobs');
const fv = cli('fsverity digest');
const imp = (mb, layer, n) => find('import', (row) => row['tar MB'] === mb && row.layer === layer && row.command.startsWith(n));
// Each layer size the run measured (a Debian-sized layer; in a full run, also 1.1 GB).
const importSizes = [...new Set((r.import ?? []).map((row) => row['tar MB']))];
const fsck = (n) => find('fsck', (row) => row.command.startsWith(n));
const co = (n) => find('checkout', (row) => row.command.startsWith(n));
const cat = (n) => find('cat-layer', (row) => row.command.startsWith(n));
const bulk = (n) => find('bulk import', (row) => row.command.startsWith(n));
const scaling = (r['pool scaling (veritree digest)'] ?? []).filter((row) => row.jobs !== 1);
const summary = [
  '| what | veritree | peer | ratio |',
  '|---|---|---|---|',
  `| \`veritree digest\` of a 1 GiB file vs \`fsverity digest\` | ${secs(vd)} | ${secs(fv)} | time ${x(vd?.['time vs fsverity digest'])} |`,
  ...importSizes.flatMap((mb) => ['plain tar', 'gzip'].flatMap((layer) => {
    const v = imp(mb, layer, 'veritree import (jobs');
    const one = imp(mb, layer, 'veritree import --jobs 1');
    const os = imp(mb, layer, 'ostree');
    const mk = imp(mb, layer, 'mkcomposefs');
    return [
      `| import, ${layer} layer of ${Math.round(v?.['tar MB'] ?? 0)} MB of /usr, vs \`ostree commit --tree=tar=\` | ${secs(v)} | ${secs(os)} | ${x(v?.['speed vs ostree'])} (\`--jobs 1\`: ${x(one?.['speed vs ostree'])}) |`,
      ...(mk ? [`| import, ${layer} layer of ${Math.round(mb)} MB, vs \`mkcomposefs --digest-store\` of the tree unpacked | ${secs(v)} | ${secs(mk)} | ${x(v?.['speed vs mkcomposefs'])} (\`--jobs 1\`: ${x(one?.['speed vs mkcomposefs'])}) |`] : []),
    ];
  })),
  `| \`fsck\` of that store vs \`find objects \\| xargs -P${host.cores} fsverity digest\` | ${secs(fsck('veritree fsck (jobs'))} | ${secs(fsck('find'))} | ${x(fsck('veritree fsck (jobs')?.['speed vs find|xargs fsverity'])} (objects only: ${x(fsck('veritree fsck --objects-only')?.['speed vs find|xargs fsverity'])}) |`,
  `| \`checkout\` (default: no object exposed to writes) vs \`umoci unpack\` | ${secs(co('veritree checkout (default'))} | ${secs(co('umoci'))} | ${x(co('veritree checkout (default')?.['speed vs umoci unpack'])} (\`--hardlink\`: ${x(co('veritree checkout --hardlink')?.['speed vs umoci unpack'])}) |`,
  `| \`cat-layer\` (rebuilt and checked against its diff_id) vs \`tar -c\` of the checked-out tree | ${secs(cat('veritree'))} | ${secs(cat('tar'))} | ${x(cat('veritree')?.['speed vs tar -c'])} |`,
  ...(bulk('one run') ? [`| bulk: 4 layouts sharing a base, one \`import --all\` vs 4 commands | ${secs(bulk('one run'))} | ${secs(bulk('4 separate'))} | ${x(bulk('one run')?.['speed vs separate commands'])} |`] : []),
  ...scaling.map((row) => `| pool scaling, ${row.workload}, jobs ${row.jobs} vs jobs 1 | ${row['seconds, median (range)']} s | | ${x(row['speed-up vs jobs 1'])} |`),
].join('\n');

// docs/performance.md: the model's tables (stages alone, W and C, peers, the floor); the whole
// report stays in docs/bench/full/report.md.
const floor = r['digest, one core'];
const peers = [
  ...(r['veritree digest vs fsverity digest'] ?? []).map((row) => ({ layer: `digest of a ${row.file} file`, command: row.command, 'seconds, median (range)': row['seconds, median (range)'], 'MB/s, or veritree / peer': row['MB/s'] })),
  ...(r.import ?? []).map((row) => ({ layer: `${row.layer}, ${Math.round(row['tar MB'])} MB of /usr`, command: row.command, 'seconds, median (range)': row['seconds, median (range)'], 'MB/s, or veritree / peer': row['MB/s'] })),
  ...(r['synthetic images: peers'] ?? []).map((row) => ({ layer: row.workload, command: row.peer, 'seconds, median (range)': row['peer seconds, median (range)'], 'MB/s, or veritree / peer': `veritree ${x(row['veritree (best jobs) / peer'])}` })),
];
// Only the tables this report holds: scripts/bench-model.mjs writes the model's alone.
const perfTables = Object.entries({
  // From the workloads where the report has them: a report written before the table's shape changed still fills it.
  stages: r.workloads?.some((w) => w.stages?.length) ? r.workloads.flatMap(stageRows) : r['synthetic imports: each stage alone'],
  model: r['synthetic imports: the stage model'],
  peers: peers.length ? peers : undefined,
  floor,
}).filter(([, rows]) => rows?.length);

function put(file, marker, body) {
  const path = join(root, file);
  const text = readFileSync(path, 'utf8');
  const open = `<!-- bench:${marker} -->`;
  const close = `<!-- /bench:${marker} -->`;
  const a = text.indexOf(open);
  const b = text.indexOf(close);
  if (a < 0 || b < a) throw new Error(`${file}: no ${open} ... ${close} markers`);
  writeFileSync(path, `${text.slice(0, a + open.length)}\n${body}\n${text.slice(b)}`);
}
const from = `From ${where}; the report: ${relative(root, reportPath)}.`;
if (r.import) put('README.md', 'summary', `${from}\n\n${summary}`);
for (const [marker, rows] of perfTables) put('docs/performance.md', marker, `${from}\n\n${table(rows)}`);
console.log(`${r.import ? 'README.md and ' : ''}docs/performance.md (${perfTables.map(([m]) => m).join(', ')}) updated from ${reportPath}`);
