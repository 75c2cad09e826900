/**
 * Digest speed on one core: each back end over whole buffers of 4 KiB, 1 MiB and 64 MiB, against
 * node:crypto's SHA-256 over the same bytes in one call (the practical limit: the Merkle tree
 * hashes every byte once, plus 1/128 more for the upper levels).
 */
import { createHash } from 'node:crypto';
import { Bench } from 'tinybench';
import { verityDigest } from '../src/index.ts';
import { resolveImpl } from '../src/verity/index.ts';
import type { ConcreteHashImpl } from '../src/verity/backends.ts';
import { getBackend } from '../src/verity/backends.ts';
import { mbps } from './lib.ts';

export interface DigestRow extends Record<string, string | number> {
  size: string;
  impl: string;
  'MB/s': number;
  'vs OpenSSL one-call SHA-256': number;
}

function deterministic(size: number): Uint8Array {
  const b = new Uint8Array(size);
  for (let i = 0; i < size; i++) b[i] = (i * 2654435761) >>> 24;
  return b;
}

export async function benchDigest(quick: boolean): Promise<DigestRow[]> {
  const impls: ConcreteHashImpl[] = resolveImpl('auto') === 'native' ? ['native', 'node', 'noble'] : ['node', 'noble'];
  const sizes: [string, number][] = [['4 KiB', 4096], ['1 MiB', 1 << 20], ['64 MiB', 64 << 20]];
  const rows: DigestRow[] = [];
  for (const [label, size] of sizes) {
    const data = deterministic(size);
    const bench = new Bench({ name: `digest ${label}`, time: quick ? 150 : 600, warmupTime: 50, throws: true });
    bench.add('openssl-sha256', () => {
      createHash('sha256').update(data).digest();
    });
    for (const impl of impls) {
      if (impl === 'noble' && size > (1 << 20) && quick) continue;
      bench.add(impl, () => {
        verityDigest(data, 'sha256', impl);
      });
    }
    await bench.run();
    const period = (name: string): number => {
      const t = bench.getTask(name)?.result;
      return t && 'period' in t ? t.period / 1000 : NaN;
    };
    const base = mbps(size, period('openssl-sha256'));
    rows.push({ size: label, impl: 'openssl sha256 (one call)', 'MB/s': base, 'vs OpenSSL one-call SHA-256': 1 });
    for (const impl of impls) {
      const p = period(impl);
      if (Number.isNaN(p)) continue;
      rows.push({ size: label, impl, 'MB/s': mbps(size, p), 'vs OpenSSL one-call SHA-256': mbps(size, p) / base });
    }
  }
  return rows;
}

/** Per 4 KiB block: the cost of one call, which is what the batch kernel removes. */
export async function benchBlocks(quick: boolean): Promise<Record<string, string | number>[]> {
  const blocks = 256;
  const data = deterministic(blocks * 4096);
  const impls: ConcreteHashImpl[] = resolveImpl('auto') === 'native' ? ['native', 'node', 'noble'] : ['node', 'noble'];
  const bench = new Bench({ name: 'blocks', time: quick ? 150 : 500, throws: true });
  for (const impl of impls) {
    const b = getBackend(impl, 'sha256');
    const out = new Uint8Array(blocks * 32);
    bench.add(impl, () => b.hashBlocksInto(data, blocks, out, 0));
  }
  await bench.run();
  return impls.map((impl) => {
    const r = bench.getTask(impl)?.result;
    const secs = r && 'period' in r ? r.period / 1000 : NaN;
    return { impl, 'ns per 4 KiB block': (secs / blocks) * 1e9, 'MB/s': mbps(blocks * 4096, secs) };
  });
}
