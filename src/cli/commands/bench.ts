/** `veritree bench`: measures veritree, its peers and the limit on this host (bench/report.ts). */
import type { Command } from 'commander';

export function registerBench(program: Command): void {
  program
    .command('bench')
    .description('measure digest speed, pool scaling and imports on this host, against the peers that are installed')
    .option('--quick', 'small inputs and one run each (a few minutes on 2 cores)')
    .option('--out <dir>', 'where report.json, report.md and scaling.svg go', 'veritree-bench')
    .option('--image <oci:DIR[:REF]>', 'also import this image repeatedly (fresh repository each time) at each jobs value')
    .addHelpText(
      'after',
      `
Workloads: the digest back ends on one core; the pool digesting many files and one big file at
jobs 1, 2, 4, ... cores; imports of synthetic images (many small files / few big files; one
layer / many layers; gzip / plain / zstd) at jobs 1..cores and at I/O limits 1 and 2. Peers, where
installed, on the same data: fsverity digest, sha256sum, ostree commit --tree=tar=, mkcomposefs
--digest-store. The limit drawn in scaling.svg is OpenSSL SHA-256 over one buffer times the cores.
Each import also gets its stages alone (CPU s/GB, one thread) and its stage model: W, all CPU
s/GB; C, the busiest thread outside the pool; predicted speed-up W / max(C, W/N) at 16 and 64
cores, checked with taskset on one core against two. docs/performance.md explains the model.`
    )
    .action(async (o: { quick?: boolean; out: string; image?: string }) => {
      const { runBench } = await import('../../../bench/report.ts');
      const tty = process.stderr.isTTY === true;
      const started = performance.now();
      const report = await runBench({
        quick: o.quick === true,
        out: o.out,
        image: o.image,
        onProgress: (line) => {
          const t = ((performance.now() - started) / 1000).toFixed(0).padStart(4);
          process.stderr.write(tty ? `\r\x1b[K[${t} s] ${line}` : `[${t} s] ${line}\n`);
        },
      });
      if (tty) process.stderr.write('\r\x1b[K');
      for (const w of report.workloads) {
        const best = w.points.reduce((m, p) => Math.max(m, p.mbps), -Infinity);
        const peers = w.peers.map((p) => `${p.ratio.toFixed(2)}x ${p.name}`).join(', ');
        process.stdout.write(`${w.name}: best ${best.toFixed(0)} MB/s${peers ? ` (${peers})` : ''}\n`);
        const m = w.model;
        if (m) process.stdout.write(`  W ${m.w.toFixed(2)} CPU s/GB, C ${m.c.toFixed(2)} s/GB (${m.busiest}): predicted ${m.speedup[16].toFixed(1)}x at 16 cores, ${m.speedup[64].toFixed(1)}x at 64${w.check ? `; 1 vs 2 cores ${w.check.measured.toFixed(2)}x measured, ${w.check.predicted.toFixed(2)}x predicted` : ''}\n`);
      }
      process.stdout.write(`wrote ${o.out}/report.json, report.md, scaling.svg\n`);
    });
}
