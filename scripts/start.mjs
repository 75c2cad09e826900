#!/usr/bin/env node
// `npm start`: imports the example image shipped in example/oci into ./.veritree-example,
// then says where the store is and what to try next.
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';

const cli = resolve('dist/src/cli/veritree.cjs');
const repo = '.veritree-example';
const r = spawnSync(process.execPath, [cli, 'import', 'oci:example/oci:latest', 'example', '--repo', repo], { stdio: 'inherit' });
if (r.status !== 0) process.exit(r.status ?? 1);
const tries = [
  [`npx veritree images --repo ${repo}`, 'what is stored'],
  [`npx veritree fsck --repo ${repo}`, 're-hash every object, check every reference'],
  [`npx veritree checkout example /tmp/example-root --repo ${repo}`, 'the merged filesystem'],
  [`npx veritree dump example --repo ${repo}`, 'its composefs dumpfile'],
  [`npx veritree image example --repo ${repo}`, 'its composefs image, in the store'],
  [`sudo npx veritree mount example /mnt --repo ${repo}`, 'mounted read-only over the objects (umount /mnt)'],
  [`npx veritree import oci:DIR[:REF] NAME --repo ${repo}`, 'your own image (skopeo copy docker://IMAGE oci:DIR:REF)'],
];
const width = Math.max(...tries.map(([c]) => c.length));
process.stdout.write(
  `\nThe store is ${resolve(repo)} (a composefs repository: objects/, streams/, meta.json).\n` +
    `Try next (npx runs this checkout's veritree; \`npm link\` puts it on PATH):\n` +
    tries.map(([c, what]) => `  ${c.padEnd(width)}  ${what}\n`).join('')
);
