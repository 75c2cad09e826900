/**
 * Finding OCI layouts under a folder (a mirror of images): every folder with an `oci-layout`
 * file and an index.json, at any depth, and every tagged image in each.
 * @module
 */
import type { Dirent } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { ERROR_CODES, VeritreeError, errnoCode } from '../errors.ts';
import { REF_ANNOTATION } from './layout.ts';

export interface FoundImage {
  /** The layout folder. */
  layout: string;
  /** Its path relative to the searched folder ('.' for the folder itself). */
  relative: string;
  ref: string;
}

export interface Discovery {
  images: FoundImage[];
  /** Layouts that could not be read, and index entries without a ref name. */
  skipped: { layout: string; why: string }[];
}

/**
 * Every layout folder under `root`, in name order, with a stack (no recursion over the depth).
 * A folder that vanished meanwhile is passed over; one that cannot be read is listed in `skipped`.
 */
async function walk(root: string, skipped: Discovery['skipped']): Promise<string[]> {
  const out: string[] = [];
  const stack = [root];
  while (stack.length > 0) {
    const dir = stack.pop() as string;
    let entries: Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (e) {
      if (errnoCode(e) === 'ENOENT' || errnoCode(e) === 'ENOTDIR') continue;
      skipped.push({ layout: dir, why: e instanceof Error ? e.message : String(e) });
      continue;
    }
    if (entries.some((e) => e.name === 'oci-layout' && e.isFile())) {
      out.push(dir);
      continue; // a layout's blobs/ holds no layouts
    }
    const dirs = entries.filter((e) => e.isDirectory()).map((e) => e.name).sort();
    for (let i = dirs.length - 1; i >= 0; i--) stack.push(join(dir, dirs[i] as string));
  }
  return out;
}

export async function discoverLayouts(root: string): Promise<Discovery> {
  const out: Discovery = { images: [], skipped: [] };
  const layouts = await walk(root, out.skipped);
  if (layouts.length === 0) throw new VeritreeError(ERROR_CODES.OCI_LAYOUT_INVALID, `no OCI image layout under ${root}`);
  for (const layout of layouts) {
    let manifests: { annotations?: Record<string, string> }[];
    try {
      manifests = (JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests?: { annotations?: Record<string, string> }[] }).manifests ?? [];
    } catch (e) {
      // Still listed, so that the import reports the layout's own error.
      out.images.push({ layout, relative: relative(root, layout) || '.', ref: '' });
      out.skipped.push({ layout, why: e instanceof Error ? e.message : String(e) });
      continue;
    }
    const refs = [...new Set(manifests.map((m) => m.annotations?.[REF_ANNOTATION]).filter((r): r is string => !!r))];
    if (refs.length < manifests.length) out.skipped.push({ layout, why: `${manifests.length - refs.length} image(s) without a ref name` });
    for (const ref of refs.sort()) out.images.push({ layout, relative: relative(root, layout) || '.', ref });
  }
  return out;
}

/** `{layout}` and `{ref}` in the template are replaced. */
export function applyTagTemplate(template: string, img: FoundImage): string {
  return template.replaceAll('{layout}', img.relative).replaceAll('{ref}', img.ref);
}
