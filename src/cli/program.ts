/**
 * The veritree command: a thin layer over the library. It parses arguments, calls src/index.ts,
 * formats output, and maps typed errors to exit statuses (cli/exit-codes.ts). main.ts loads it
 * after the signal handlers are in place.
 */
import { Command, CommanderError } from 'commander';
import { readFileSync } from 'node:fs';
import { isVeritreeError } from '../errors.ts';
import { EXIT, exitStatusFor } from './exit-codes.ts';
import { globalRepoOption } from './repo-option.ts';
import { registerDigest } from './commands/digest.ts';
import { registerInit } from './commands/init.ts';
import { registerImport } from './commands/import.ts';
import { registerImages } from './commands/images.ts';
import { registerVerify } from './commands/verify.ts';
import { registerMerge } from './commands/merge.ts';
import { registerBench } from './commands/bench.ts';
import { registerComposefs } from './commands/composefs.ts';

function version(): string {
  for (const rel of ['../../package.json', '../../../package.json']) {
    try {
      return (JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { version: string }).version;
    } catch {
      // try the next layout (source vs dist/)
    }
  }
  return 'unknown';
}

export function buildProgram(): Command {
  const program = new Command('veritree')
    .description('Import OCI image layers into a composefs-style store named by fs-verity digests, and verify it.')
    .version(version())
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  globalRepoOption(program);
  registerDigest(program);
  registerInit(program);
  registerImport(program);
  registerImages(program);
  registerVerify(program);
  registerMerge(program);
  registerComposefs(program);
  registerBench(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.OK;
  } catch (e) {
    if (e instanceof CommanderError) {
      return e.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
    }
    if (isVeritreeError(e)) {
      process.stderr.write(`veritree: ${e.message}\n`);
      // With --json, a failure is JSON on stdout too, the same shape for every command.
      if (argv.includes('--json')) process.stdout.write(JSON.stringify({ ok: false, code: e.code, message: e.message, ...(e.path ? { path: e.path } : {}) }) + '\n');
      return exitStatusFor(e.code);
    }
    process.stderr.write(`veritree: internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    return EXIT.INTERNAL;
  }
}

// `veritree images | head`: a reader that closes the pipe ends the command quietly, as C tools do.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw e;
});
