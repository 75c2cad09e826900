/**
 * `oci-archive:FILE`: an OCI image layout as one plain tar, as `skopeo copy ... oci-archive:`,
 * `podman save --format oci-archive` and `buildah push ... oci-archive:` write it. One pass over
 * its headers (contents skipped, not read) finds where each file of the layout lies; its blobs are
 * then read as ranges of the archive and verified exactly as a folder's are. Nothing is extracted:
 * skopeo unpacks the whole archive into a temporary folder first, which costs a copy of every blob.
 *
 * Only the names a layout has are looked up (`oci-layout`, `index.json`, `blobs/sha256/HEX`);
 * other entries are skipped, and no name is ever used as a path. A name counts as the layout name
 * it normalises to, as tar would extract it (`./`, `//`, `/.`, a leading `/` and `x/..` resolved:
 * `.//index.json` and `blobs/../index.json` are `index.json`); one that climbs above the archive's
 * top is skipped. A layout name that is not a regular file, or that appears twice however spelled,
 * is refused: which copy tar would extract is not a question to answer for the user.
 * @module
 */
import { ERROR_CODES, VeritreeError, throwIfAborted } from '../errors.ts';
import { readAll } from '../store/sys.ts';
import { OciArchive, openLayoutFile, type ArchiveEntry } from './layout-files.ts';
import { sniffCompression } from './media-types.ts';
import { quoted } from './names.ts';
import { TAR_BLOCK, TYPE } from './tar-header.ts';
import { TarRecords, paddingOf } from './tar-records.ts';

/** Layout files an archive may name: more is a hostile archive, not an image. */
export const MAX_ARCHIVE_FILES = 100_000;

const LAYOUT_NAME = /^(?:oci-layout|index\.json|blobs\/sha256\/[0-9a-f]{64})$/;

/** The name an entry extracts to inside the archive's top folder, or null when it climbs out. */
export function normaliseName(raw: string): string | null {
  const parts: string[] = [];
  for (const p of raw.split('/')) {
    if (p === '' || p === '.') continue;
    if (p !== '..') parts.push(p);
    else if (parts.pop() === undefined) return null;
  }
  return parts.join('/');
}

function invalid(path: string, why: string, cause?: unknown): VeritreeError {
  return new VeritreeError(ERROR_CODES.OCI_LAYOUT_INVALID, `${path} is not an OCI archive: ${why}`, { path, cause });
}

/**
 * Finds the layout's files in the archive at `path`.
 * @throws VeritreeError OCI_LAYOUT_INVALID (not a plain tar, truncated, a layout name that is not
 *   a regular file or comes twice, too many files), OCI_BLOB_MISSING (no such file)
 */
export async function scanOciArchive(path: string, signal?: AbortSignal): Promise<OciArchive> {
  const fh = await openLayoutFile(path, 'oci-archive');
  try {
    const st = await fh.stat();
    const entries = new Map<string, ArchiveEntry>();
    /** Each layout name as the archive spells it, to say which two entries clash. */
    const spelled = new Map<string, string>();
    const records = new TarRecords();
    for (let pos = 0; ; ) {
      throwIfAborted(signal);
      const block = await readAll(fh, TAR_BLOCK, pos);
      const got = block.length;
      if (got === 0 && pos > 0) break; // the end-of-archive blocks are optional in practice
      if (got < TAR_BLOCK) throw invalid(path, `truncated: a header at offset ${pos} has ${got} of ${TAR_BLOCK} bytes`);
      if (pos === 0) {
        const kind = sniffCompression(block.subarray(0, 4));
        if (kind !== 'none') throw invalid(path, `it is ${kind}-compressed; an oci-archive is a plain tar (decompress it first)`);
      }
      let rec;
      try {
        rec = records.next(block, pos);
      } catch (e) {
        throw invalid(path, e instanceof Error ? e.message : String(e), e);
      }
      if (rec.kind === 'end') break;
      const size = rec.kind === 'meta' ? rec.size : rec.entry.size;
      const start = pos + TAR_BLOCK;
      if (start + size > st.size) throw invalid(path, `truncated: the entry at offset ${pos} claims ${size} bytes, past the archive's end (${st.size} bytes)`);
      if (rec.kind === 'meta') {
        const content = await readAll(fh, size, start);
        try {
          records.meta(rec, content);
        } catch (e) {
          throw invalid(path, e instanceof Error ? e.message : String(e), e);
        }
      } else {
        const name = normaliseName(rec.entry.path);
        if (name !== null && LAYOUT_NAME.test(name)) {
          const t = rec.entry.typeflag;
          if (t !== TYPE.file && t !== TYPE.oldFile && t !== TYPE.contiguous) {
            throw invalid(path, `${quoted(rec.entry.path)} at offset ${pos} is not a regular file (tar type ${quoted(t)})`);
          }
          const first = spelled.get(name);
          if (first !== undefined) throw invalid(path, `it holds ${quoted(name)} twice${first === rec.entry.path ? '' : ` (as ${quoted(first)} and ${quoted(rec.entry.path)})`}`);
          spelled.set(name, rec.entry.path);
          if (entries.size >= MAX_ARCHIVE_FILES) throw invalid(path, `it holds more than ${MAX_ARCHIVE_FILES} layout files`);
          entries.set(name, { start, size });
        }
      }
      pos = start + size + paddingOf(size);
    }
    for (const name of ['oci-layout', 'index.json']) if (!entries.has(name)) throw invalid(path, `it has no ${name} file`);
    return new OciArchive(path, entries, { dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs });
  } finally {
    await fh.close();
  }
}
