/**
 * The dumpfile reader's field decoding (mkcomposefs's unescape_string), with the strings it makes
 * standing on their own: nothing the tree keeps holds on to a piece of the input text.
 * @module
 */

const HEX: Record<string, number> = {};
for (let i = 0; i < 16; i++) {
  HEX[i.toString(16)] = i;
  HEX[i.toString(16).toUpperCase()] = i;
}
const ESCAPES: Record<string, string> = { '\\': '\\', n: '\n', r: '\r', t: '\t' };

/**
 * A field cut from a line as a string of its own: a slice of 13 or more characters is a view of
 * the string it was cut from (V8's sliced strings), and names and payloads held in the tree
 * would keep every 1 MiB piece of the dumpfile alive.
 */
export function detached(s: string): string {
  return s.length < 13 ? s : (' ' + s).slice(1);
}

/** Bytes an unescaped field is built in, then decoded once (adding to a string char by char made a chain of V8 cons strings, 32 bytes a char, until first read). */
let unescapeScratch = Buffer.alloc(4096);

/** unescape_string: `\\ \n \r \t \xHH`; anything else after a backslash is refused. */
export function unescape(s: string): string {
  let i = s.indexOf('\\');
  if (i < 0) return s;
  if (unescapeScratch.length < s.length) unescapeScratch = Buffer.alloc(2 * s.length);
  const out = unescapeScratch;
  let o = out.write(s.slice(0, i), 0, 'latin1');
  while (i < s.length) {
    const c = s[i] as string;
    if (c !== '\\') {
      const next = s.indexOf('\\', i);
      const end = next < 0 ? s.length : next;
      o += out.write(s.slice(i, end), o, 'latin1');
      i = end;
      continue;
    }
    const e = s[i + 1];
    if (e === undefined) throw new SyntaxError('no character after escape');
    if (e === 'x') {
      const hi = HEX[s[i + 2] ?? ''];
      const lo = HEX[s[i + 3] ?? ''];
      if (i + 3 >= s.length) throw new SyntaxError('no hex characters after hex escape');
      if (hi === undefined || lo === undefined) throw new SyntaxError('invalid hex characters after hex escape');
      out[o++] = (hi << 4) | lo;
      i += 4;
    } else {
      const r = ESCAPES[e];
      if (r === undefined) throw new SyntaxError(`unsupported escape \\${e}`);
      out[o++] = r.charCodeAt(0);
      i += 2;
    }
  }
  return out.toString('latin1', 0, o);
}

/** A C string made from bytes: it ends at the first NUL. */
export function cString(s: string): string {
  const nul = s.indexOf('\0');
  return nul < 0 ? s : s.slice(0, nul);
}
