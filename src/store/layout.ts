/**
 * Where things live in a repository (composefs repository v1). Pure path arithmetic: no I/O.
 * @module
 */
import { ERROR_CODES, VeritreeError } from '../errors.ts';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { digestSize, type HashAlgorithm } from '../verity/constants.ts';

export const OBJECTS_DIR = 'objects';
export const STREAMS_DIR = 'streams';
export const IMAGES_DIR = 'images';
export const TAGS_DIR = join(STREAMS_DIR, 'refs', 'oci');
export const META_FILE = 'meta.json';
/** Temporary files are written inside objects/ (same filesystem as the final name) under this prefix. */
export const TMP_PREFIX = '.tmp-';

export type ObjectId = string;

const HEX = /^[0-9a-f]+$/;

export function isObjectId(id: string, alg: HashAlgorithm): boolean {
  return id.length === digestSize(alg) * 2 && HEX.test(id);
}

/** objects/ab/<rest> relative to the repository root. */
export function objectRelPath(id: ObjectId): string {
  return join(OBJECTS_DIR, id.slice(0, 2), id.slice(2));
}

/** The payload form composefs uses: `ab/<rest>`, relative to objects/. */
export function objectPayload(id: ObjectId): string {
  return `${id.slice(0, 2)}/${id.slice(2)}`;
}

export function objectPathIn(objectsDir: string, id: ObjectId): string {
  return join(objectsDir, id.slice(0, 2), id.slice(2));
}

/** Longest file name Linux filesystems take (NAME_MAX), in bytes. */
const NAME_MAX = 255;

/**
 * Refuses a tag that cannot be one file name under streams/refs/ (empty, `.`, `..`, a NUL or a
 * control character, longer than NAME_MAX bytes once escaped), before any work is done for it.
 * @throws VeritreeError TAG_INVALID
 */
export function validateTag(tag: string): void {
  const bad = (why: string): VeritreeError => new VeritreeError(ERROR_CODES.TAG_INVALID, `tag ${JSON.stringify(tag)}: ${why}`);
  if (tag === '') throw bad('a tag cannot be empty');
  if (/[\u0000-\u001f\u007f]/.test(tag)) throw bad('a tag cannot hold control characters');
  const name = escapeTag(tag);
  if (name === '.' || name === '..') throw bad('not a usable name');
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes > NAME_MAX) throw bad(`${bytes} bytes once '/' and '%' are escaped; the limit is ${NAME_MAX}`);
}

/** Tags escape '%' and '/' so that any tag is one file name. */
export function escapeTag(tag: string): string {
  return tag.replaceAll('%', '%25').replaceAll('/', '%2F');
}

export function unescapeTag(name: string): string {
  return name.replaceAll('%2F', '/').replaceAll('%25', '%');
}

export const STREAM_PREFIX = {
  layer: 'oci-layer-sha256:',
  config: 'oci-config-sha256:',
  manifest: 'oci-manifest-sha256:',
} as const;

/** `…/objects/XX/<rest>` at the end of a link target (how repository and gc follow links). */
const OBJECT_LINK = /objects\/([0-9a-f]{2})\/([0-9a-f]+)$/;
/** Exactly `../objects/XX/<rest>`: the form a stream link must have (how fsck judges them). */
const STREAM_LINK = /^\.\.\/objects\/([0-9a-f]{2})\/([0-9a-f]+)$/;

/** The object id a link target names, or null; `strict` demands the stream-link form. */
export function objectIdFromLink(target: string, strict = false): string | null {
  const m = (strict ? STREAM_LINK : OBJECT_LINK).exec(target);
  return m ? `${m[1]}${m[2]}` : null;
}

/** The stream a config or manifest named ref stands for: `config:sha256:X` or `sha256:<diff_id>`. */
/**
 * What a named ref of a config or manifest stream is, by its name, as composefs-rs writes them
 * (composefs-oci oci_image.rs): `config:sha256:<hex>` the config stream, `sha256:<hex>` a layer
 * stream (by diff_id), `composefs.image` and `composefs.image.boot` an EROFS image object (not a
 * stream). Anything else is a ref veritree does not know: kept, reported, never repaired away.
 */
export type NamedRefKind = { kind: 'config' | 'layer'; stream: string } | { kind: 'image' } | { kind: 'unknown' };

const CONFIG_REF = /^config:sha256:([0-9a-f]{64})$/;
const LAYER_REF = /^sha256:([0-9a-f]{64})$/;

export function classifyNamedRef(refName: string): NamedRefKind {
  const c = CONFIG_REF.exec(refName);
  if (c) return { kind: 'config', stream: `${STREAM_PREFIX.config}${c[1]}` };
  const l = LAYER_REF.exec(refName);
  if (l) return { kind: 'layer', stream: `${STREAM_PREFIX.layer}${l[1]}` };
  if (refName === 'composefs.image' || refName.startsWith('composefs.image.')) return { kind: 'image' };
  return { kind: 'unknown' };
}

export function layerStreamName(diffIdHex: string): string {
  return STREAM_PREFIX.layer + diffIdHex;
}
export function configStreamName(hex: string): string {
  return STREAM_PREFIX.config + hex;
}
export function manifestStreamName(hex: string): string {
  return STREAM_PREFIX.manifest + hex;
}

/** `$VERITREE_REPO`, else `$XDG_DATA_HOME/veritree`, else `~/.local/share/veritree`. */
export function defaultRepoPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.VERITREE_REPO) return resolve(env.VERITREE_REPO);
  if (env.XDG_DATA_HOME) return join(resolve(env.XDG_DATA_HOME), 'veritree');
  return join(homedir(), '.local', 'share', 'veritree');
}
