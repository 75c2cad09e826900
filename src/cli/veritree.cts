#!/usr/bin/env node
/**
 * The `veritree` command as installed (package.json "bin"). CommonJS on purpose: it runs before
 * anything starts libuv's thread pool, whose size is read from UV_THREADPOOL_SIZE once, when it
 * starts (an ES module entry is too late: loading it uses the pool). fsck, digest and cat-layer
 * hash there, as many jobs at once as the pool size (min(cores, I/O limit), or --jobs), when
 * libuv has that many threads: so it gets a thread per core (4 at least, libuv's default; 128
 * at most), unless the user set the variable. Then the ES module entry runs.
 */
if (process.env.UV_THREADPOOL_SIZE === undefined) {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const cores: number = (require('node:os') as typeof import('node:os')).availableParallelism();
  process.env.UV_THREADPOOL_SIZE = String(Math.min(128, Math.max(4, cores)));
}
void import('./main.ts');
