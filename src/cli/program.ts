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

type Register = (program: Command) => void;

/**
 * The command modules, each with the commands it registers, in the order --help lists them.
 * Loaded on demand: all of them (and what they import) cost about 30 ms at every start, more
 * than a small command's whole work. test/cli.test.ts holds the names to what each registers.
 */
export const COMMAND_MODULES: readonly (readonly [readonly string[], () => Promise<Register>])[] = [
  [['digest'], async () => (await import('./commands/digest.ts')).registerDigest],
  [['init'], async () => (await import('./commands/init.ts')).registerInit],
  [['import'], async () => (await import('./commands/import.ts')).registerImport],
  [['images', 'cat-layer'], async () => (await import('./commands/images.ts')).registerImages],
  [['fsck', 'gc', 'untag'], async () => (await import('./commands/verify.ts')).registerVerify],
  [['prune'], async () => (await import('./commands/prune.ts')).registerPrune],
  [['checkout', 'dump'], async () => (await import('./commands/merge.ts')).registerMerge],
  [['ls', 'cat', 'diff'], async () => (await import('./commands/browse.ts')).registerBrowse],
  [['export'], async () => (await import('./commands/export.ts')).registerExport],
  [['seal', 'verify'], async () => (await import('./commands/seal.ts')).registerSeal],
  [['mkfs', 'image', 'compute-id', 'mount', 'umount'], async () => (await import('./commands/composefs.ts')).registerComposefs],
  [['bench'], async () => (await import('./commands/bench.ts')).registerBench],
  [['completion'], async () => (await import('./commands/completion.ts')).registerCompletion],
];

export function version(): string {
  for (const rel of ['../../package.json', '../../../package.json']) {
    try {
      return (JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { version: string }).version;
    } catch {
      // try the next layout (source vs dist/)
    }
  }
  return 'unknown';
}

/**
 * The program, with every command, or with just the one `argv` names first (and its module's
 * siblings): its options, help and errors are the same either way.
 */
export async function buildProgram(argv: readonly string[] = []): Promise<Command> {
  const program = new Command('veritree')
    .description('Import OCI image layers into a composefs-style store named by fs-verity digests, and verify it.')
    .version(version())
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  globalRepoOption(program);
  // Read by main.ts from argv before anything loads (startup-line.ts); declared here so that
  // commander accepts it and --help lists it.
  program.option('-q, --quiet', 'no progress and no warnings on stderr (errors still); before or after the command');
  const first = argv[2];
  const named = COMMAND_MODULES.find(([names]) => first !== undefined && names.includes(first));
  for (const [, load] of named ? [named] : COMMAND_MODULES) (await load())(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  try {
    await (await buildProgram(argv)).parseAsync(argv);
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
