/**
 * scaling.svg: throughput against jobs, one line per workload, with the limit drawn: the fastest
 * one-core SHA-256 rate measured (OpenSSL over one buffer, or veritree's own back ends), times
 * min(jobs, cores), so the limit rises with the jobs as the lines do. Every label sits in the
 * legend, beside the plot, never over a line. Plain SVG, no script, so any browser shows it.
 * MB/s is on a log axis: imports (tens of MB/s) and digests (thousands) share one chart, and a
 * line's slope reads as a speed-up whatever its height.
 */
export interface Series {
  name: string;
  points: { jobs: number; mbps: number }[];
}

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf'];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/"/g, '&quot;');
}

export function scalingSvg(series: Series[], limit: { oneCoreMBps: number; cores: number; label: string }, title: string): string {
  const W = 920;
  const H = 500;
  const m = { l: 70, r: 290, t: 40, b: 50 };
  const maxJobs = Math.max(2, ...series.flatMap((s) => s.points.map((p) => p.jobs)));
  const limitAt = (j: number): number => limit.oneCoreMBps * Math.min(j, limit.cores);
  const values = [limitAt(1), limitAt(maxJobs), ...series.flatMap((s) => s.points.map((p) => p.mbps))].filter((v) => v > 0);
  const lo = Math.floor(Math.log10(Math.min(...values)));
  const hi = Math.max(lo + 1, Math.ceil(Math.log10(Math.max(...values) * 1.1)));
  const x = (j: number): number => m.l + ((Math.log2(j) / Math.log2(maxJobs)) * (W - m.l - m.r));
  const y = (v: number): number => H - m.b - ((Math.log10(Math.max(v, 10 ** lo)) - lo) / (hi - lo)) * (H - m.t - m.b);
  const jobsTicks = [...new Set(series.flatMap((s) => s.points.map((p) => p.jobs)))].sort((a, b) => a - b);
  const yTicks: number[] = [];
  for (let e = lo; e <= hi; e++) for (const k of [1, 2, 5]) if (k * 10 ** e <= 10 ** hi) yTicks.push(k * 10 ** e);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<title>${esc(title)}</title>`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${m.l}" y="24" font-size="15" font-weight="bold">${esc(title)}</text>`,
    `<line x1="${m.l}" y1="${H - m.b}" x2="${W - m.r}" y2="${H - m.b}" stroke="black"/>`,
    `<line x1="${m.l}" y1="${m.t}" x2="${m.l}" y2="${H - m.b}" stroke="black"/>`,
    `<text x="${(m.l + W - m.r) / 2}" y="${H - 12}" text-anchor="middle">jobs (worker threads)</text>`,
    `<text transform="translate(18 ${(m.t + H - m.b) / 2}) rotate(-90)" text-anchor="middle">MB/s (log scale)</text>`,
  ];
  for (const j of jobsTicks) out.push(`<text x="${x(j)}" y="${H - m.b + 16}" text-anchor="middle">${j}</text>`);
  for (const v of yTicks) {
    const major = Number.isInteger(Math.log10(v));
    out.push(`<line x1="${m.l - 4}" y1="${y(v).toFixed(1)}" x2="${W - m.r}" y2="${y(v).toFixed(1)}" stroke="${major ? '#bbb' : '#eee'}"/>`);
    out.push(`<text x="${m.l - 8}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end"${major ? '' : ' fill="#888"'}>${v >= 1 ? v.toFixed(0) : v.toPrecision(1)}</text>`);
  }
  // The limit at every jobs value on the axis (a path, not a polyline: the lines are the data).
  const limitPts = jobsTicks.map((j) => `${x(j).toFixed(1)},${y(limitAt(j)).toFixed(1)}`);
  const legendLimitY = m.t + 20 + series.length * 22;
  out.push(
    `<g class="limit" data-mbps="${limitAt(maxJobs).toFixed(1)}"><path d="M${limitPts.join(' L')}" fill="none" stroke="#555" stroke-width="1.5" stroke-dasharray="6 4"/>`,
    `<line x1="${W - m.r + 8}" y1="${legendLimitY}" x2="${W - m.r + 30}" y2="${legendLimitY}" stroke="#555" stroke-width="1.5" stroke-dasharray="6 4"/><text x="${W - m.r + 36}" y="${legendLimitY + 4}" fill="#555">${esc(limit.label)}</text></g>`
  );
  series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length] as string;
    const pts = s.points.map((p) => `${x(p.jobs).toFixed(1)},${y(p.mbps).toFixed(1)}`).join(' ');
    out.push(`<g class="series" data-workload="${esc(s.name)}">`);
    out.push(`<polyline points="${pts}" fill="none" stroke="${color}" stroke-width="2"/>`);
    for (const p of s.points) out.push(`<circle cx="${x(p.jobs).toFixed(1)}" cy="${y(p.mbps).toFixed(1)}" r="3.5" fill="${color}"><title>${esc(s.name)}: ${p.jobs} jobs, ${p.mbps.toFixed(1)} MB/s</title></circle>`);
    const ly = m.t + 20 + i * 22;
    out.push(`<line x1="${W - m.r + 8}" y1="${ly}" x2="${W - m.r + 30}" y2="${ly}" stroke="${color}" stroke-width="3"/><text x="${W - m.r + 36}" y="${ly + 4}">${esc(s.name)}</text>`);
    out.push('</g>');
  });
  out.push('</svg>');
  return out.join('\n');
}
