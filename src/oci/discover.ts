/**
 * Finding OCI layouts under a folder (a mirror of images): every folder with an `oci-layout`
 * file and an index.json, at any depth, and every tagged image in each.
 * @module
 */
import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { ERROR_CODES, VeritreeError } from '../errors.ts';
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

async function walk(dir: string, out: string[]): Promise<void> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  if (entries.some((e) => e.name === 'oci-layout' && e.isFile())) {
    out.push(dir);
    return; // a layout's blobs/ holds no layouts
  }
  for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) if (e.isDirectory()) await walk(join(dir, e.name), out);
}

export async function discoverLayouts(root: string): Promise<Discovery> {
  const layouts: string[] = [];
  await walk(root, layouts);
  if (layouts.length === 0) throw new VeritreeError(ERROR_CODES.OCI_LAYOUT_INVALID, `no OCI image layout under ${root}`);
  const out: Discovery = { images: [], skipped: [] };
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
