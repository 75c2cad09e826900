/**
 * An exported layout packed as one plain tar: `veritree export IMAGE oci-archive:FILE[:REF]`, the
 * form `skopeo copy ... oci-archive:` and `podman load` read. The layout is exported to a private
 * folder beside FILE, packed (oci-layout, index.json, then every blob), written to a temporary
 * name and renamed over FILE once whole; the folder is removed either way.
 * @module
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, readdir, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import * as tarStream from 'tar-stream';
import { throwIfAborted } from '../errors.ts';
import type { Repository } from '../store/repository.ts';
import { exportImage, type ExportOptions, type ExportReport } from './export.ts';

/** Adds one regular file of the layout to the archive, its bytes streamed. */
async function addFile(pack: tarStream.Pack, path: string, name: string): Promise<void> {
  const st = await stat(path);
  await new Promise<void>((resolve, reject) => {
    const entry = pack.entry({ name, size: st.size, mode: 0o644, mtime: new Date(0), type: 'file' }, (e) => (e ? reject(e) : resolve()));
    createReadStream(path).on('error', reject).pipe(entry);
  });
}

/** Writes the tagged image as an OCI layout in one tar at `file` (replaced whole, never in part). */
export async function exportImageArchive(repo: Repository, tag: string, file: string, ref: string, opts: ExportOptions = {}): Promise<ExportReport> {
  const work = await mkdtemp(join(dirname(file), `.${basename(file)}.export-`));
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    const r = await exportImage(repo, tag, work, ref, opts);
    const pack = tarStream.pack();
    const written = pipeline(pack, createWriteStream(tmp, { flags: 'wx', mode: 0o644 }));
    const blobs = join(work, 'blobs', 'sha256');
    const fill = (async () => {
      await addFile(pack, join(work, 'oci-layout'), 'oci-layout');
      await addFile(pack, join(work, 'index.json'), 'index.json');
      pack.entry({ name: 'blobs/', type: 'directory', mode: 0o755, mtime: new Date(0) });
      pack.entry({ name: 'blobs/sha256/', type: 'directory', mode: 0o755, mtime: new Date(0) });
      for (const name of (await readdir(blobs)).sort()) {
        throwIfAborted(opts.signal);
        await addFile(pack, join(blobs, name), `blobs/sha256/${name}`);
      }
      pack.finalize();
    })();
    fill.catch((e: unknown) => pack.destroy(e instanceof Error ? e : new Error(String(e))));
    await Promise.all([fill, written]);
    await rename(tmp, file);
    return { ...r, layout: file };
  } finally {
    await rm(tmp, { force: true });
    await rm(work, { recursive: true, force: true });
  }
}
