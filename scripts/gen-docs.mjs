#!/usr/bin/env node
// After tsc: the man page and the shell completion scripts, generated from the CLI's own command
// definitions (dist/src/cli/docgen.js), into dist/man/ and dist/completion/. The package installs
// the man page (package.json "man") and ships the scripts.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const dist = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist');
const { buildProgram, version } = await import(join(dist, 'src', 'cli', 'program.js'));
const docgen = await import(join(dist, 'src', 'cli', 'docgen.js'));
const program = await buildProgram(['node', 'veritree']);
mkdirSync(join(dist, 'man'), { recursive: true });
writeFileSync(join(dist, 'man', 'veritree.1'), docgen.manPage(program, version()));
mkdirSync(join(dist, 'completion'), { recursive: true });
writeFileSync(join(dist, 'completion', 'veritree.bash'), docgen.bashCompletion(program));
writeFileSync(join(dist, 'completion', '_veritree'), docgen.zshCompletion(program));
writeFileSync(join(dist, 'completion', 'veritree.fish'), docgen.fishCompletion(program));
