/**
 * Synthetic OCI layouts for benchmarks: given layer tars on disk, write the blobs, config,
 * manifest and index.json (the same files umoci writes; benchmarks need GB-sized inputs that
 * umoci would take minutes to pack).
 */
import { createHash } from 'node:crypto';
import { createReadStream, mkdirSync, writeFileSync, copyFileSync, existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

export type BenchCompression = 'none' | 'gzip' | 'zstd';

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(path, { highWaterMark: 1 << 20 })) h.update(c as Buffer);
  return h.digest('hex');
}

function writeBlob(layout: string, bytes: Buffer): { digest: string; size: number } {
  const hex = createHash('sha256').update(bytes).digest('hex');
  writeFileSync(join(layout, 'blobs', 'sha256', hex), bytes);
  return { digest: `sha256:${hex}`, size: bytes.length };
}

const MEDIA: Record<BenchCompression, string> = {
  none: 'application/vnd.oci.image.layer.v1.tar',
  gzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  zstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
};

/** Compresses `tar` with the system gzip/zstd (fast settings), caching the result beside it. */
export function compressed(tar: string, c: BenchCompression): string {
  if (c === 'none') return tar;
  const out = `${tar}.${c === 'gzip' ? 'gz' : 'zst'}`;
  if (!existsSync(out)) {
    const cmd = c === 'gzip' ? `gzip -1 -c ${tar} > ${out}.part && mv ${out}.part ${out}` : `zstd -q -3 -T0 -c ${tar} > ${out}.part && mv ${out}.part ${out}`;
    if (spawnSync('sh', ['-c', cmd]).status !== 0) throw new Error(`cannot compress ${tar}`);
  }
  return out;
}

/** A layout at `layout` with one image `ref` whose layers are the given tars. */
export async function makeLayout(layout: string, ref: string, tars: string[], c: BenchCompression): Promise<void> {
  mkdirSync(join(layout, 'blobs', 'sha256'), { recursive: true });
  writeFileSync(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const layers: { mediaType: string; digest: string; size: number }[] = [];
  const diffIds: string[] = [];
  for (const tar of tars) {
    diffIds.push(`sha256:${await sha256File(tar)}`);
    const blob = compressed(tar, c);
    const hex = await sha256File(blob);
    const dest = join(layout, 'blobs', 'sha256', hex);
    if (!existsSync(dest)) copyFileSync(blob, dest);
    layers.push({ mediaType: MEDIA[c], digest: `sha256:${hex}`, size: statSync(dest).size });
  }
  const config = writeBlob(layout, Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: diffIds } })));
  const manifest = writeBlob(
    layout,
    Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config }, layers }))
  );
  writeFileSync(
    join(layout, 'index.json'),
    JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest, annotations: { 'org.opencontainers.image.ref.name': ref } }] })
  );
}

/** A tar of real files: `tar -C / -cf out paths...` (cached). */
export function realFilesTar(out: string, paths: string[]): string {
  if (!existsSync(out)) {
    const r = spawnSync('tar', ['-C', '/', '-cf', `${out}.part`, '--warning=no-file-changed', ...paths]);
    if (r.status !== 0 && r.status !== 1) throw new Error(`tar failed: ${r.stderr?.toString()}`);
    spawnSync('mv', [`${out}.part`, out]);
  }
  return out;
}

/** The store made by importing the /usr image once (cached), for the fsck and checkout benches. */
export async function benchStore(work: string, quick: boolean, c: BenchCompression, CLI: string, time: (cmd: string, args: string[]) => number): Promise<{ layout: string; repo: string }> {
  const paths = quick ? ['usr/share/doc', 'usr/share/perl'] : ['usr/share', 'usr/local'];
  const tar = realFilesTar(join(work, quick ? 'usr-quick.tar' : 'usr-1g.tar'), paths);
  const layout = join(work, `layout-${quick ? 'q' : 'f'}-${c}`);
  if (!existsSync(join(layout, 'index.json'))) await makeLayout(layout, 'bench', [tar], c);
  const repo = join(work, `store-${quick ? 'q' : 'f'}-${c}`);
  if (!existsSync(join(repo, 'meta.json'))) time(process.execPath, [CLI, 'import', `oci:${layout}:bench`, '--repo', repo, '--no-progress']);
  return { layout, repo };
}
