#!/usr/bin/env node
// Fails (exit 1) when the TypeScript sources import each other in a circle, and names the circle.
// Static imports and re-exports count, `import type` included (a circle of types is still two
// modules that cannot be read apart); dynamic import() does not (it is how a module defers a
// load on purpose). Iterative (no recursion over the import depth).
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const root = resolve(dirname(new URL(import.meta.url).pathname), '..');
const dirs = process.argv.length > 2 ? process.argv.slice(2) : ['src', 'workers', 'bench'];

function listTs(dir) {
  const out = [];
  const stack = [dir];
  while (stack.length > 0) {
    const d = stack.pop();
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) stack.push(p);
      else if (/\.(c|m)?ts$/.test(name) && !name.endsWith('.d.ts')) out.push(p);
    }
  }
  return out;
}

const FROM = /^\s*(?:import|export)\b[^;'"]*?\bfrom\s*['"](\.{1,2}\/[^'"]+)['"]/gm;
const graph = new Map();
for (const dir of dirs) {
  let files;
  try {
    files = listTs(join(root, dir));
  } catch (e) {
    if (e.code === 'ENOENT') continue; // a tree without this folder has nothing in it to check
    throw e;
  }
  for (const f of files) {
    const text = readFileSync(f, 'utf8');
    const deps = [];
    for (const m of text.matchAll(FROM)) deps.push(resolve(dirname(f), m[1]));
    graph.set(f, deps);
  }
}

// Tarjan's strongly connected components, with an explicit stack.
let index = 0;
const idx = new Map();
const low = new Map();
const onStack = new Set();
const stack = [];
const circles = [];
for (const start of graph.keys()) {
  if (idx.has(start)) continue;
  const work = [[start, 0]];
  idx.set(start, index);
  low.set(start, index++);
  stack.push(start);
  onStack.add(start);
  while (work.length > 0) {
    const top = work[work.length - 1];
    const [v, i] = top;
    const deps = (graph.get(v) ?? []).filter((w) => graph.has(w));
    if (i < deps.length) {
      top[1]++;
      const w = deps[i];
      if (!idx.has(w)) {
        idx.set(w, index);
        low.set(w, index++);
        stack.push(w);
        onStack.add(w);
        work.push([w, 0]);
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v), idx.get(w)));
      continue;
    }
    work.pop();
    if (work.length > 0) {
      const u = work[work.length - 1][0];
      low.set(u, Math.min(low.get(u), low.get(v)));
    }
    if (low.get(v) === idx.get(v)) {
      const comp = [];
      let w;
      do {
        w = stack.pop();
        onStack.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1 || (graph.get(v) ?? []).includes(v)) circles.push(comp);
    }
  }
}

if (circles.length > 0) {
  for (const c of circles) console.error(`import circle: ${c.map((f) => relative(root, f)).sort().join(' <-> ')}`);
  process.exit(1);
}
console.log(`no import circle among ${graph.size} modules`);
