// Builds the optional N-API hashing kernel at `npm install`. It must never break the install:
// wherever the build fails (no compiler, no headers), veritree falls back to node:crypto and says
// so in one line on stderr.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const nativeDir = join(root, 'native');

function nodeGypCommand() {
  const fromNpm = process.env.npm_config_node_gyp;
  if (fromNpm && existsSync(fromNpm)) return [process.execPath, fromNpm];
  try {
    const require = createRequire(join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'index.js'));
    return [process.execPath, require.resolve('node-gyp/bin/node-gyp.js')];
  } catch {
    return ['node-gyp'];
  }
}

if (process.env.VERITREE_SKIP_NATIVE === '1') {
  console.error('veritree: VERITREE_SKIP_NATIVE=1, native hashing kernel not built (node:crypto will be used)');
  process.exit(0);
}
const [cmd, ...pre] = nodeGypCommand();
const r = spawnSync(cmd, [...pre, 'rebuild', '--directory', nativeDir], {
  stdio: ['ignore', 'ignore', 'pipe'],
  encoding: 'utf8',
});
if (r.status !== 0) {
  const why = r.error ? r.error.message : (r.stderr || '').trim().split('\n').filter(Boolean).pop() || `exit ${r.status}`;
  console.error(`veritree: native hashing kernel not built (${why}); falling back to node:crypto`);
}
process.exit(0);
