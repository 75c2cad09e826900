/**
 * The first progress a user sees, and the global --quiet. main.ts starts it before the command's
 * modules load, so that a long command (import, cat-layer, checkout, fsck, gc, image...) shows a
 * line on a terminal at once, not after its start-up: `veritree import: running, 0.2 s`, redrawn
 * as the seconds go by until the command's own progress takes over (takeOver), or, for a command
 * with none, until it prints its result. Nothing when stderr is not a terminal, with --quiet,
 * --json, --no-progress or --help. Small on purpose: loaded before everything else.
 * @module
 */

/** Commands that can take over a second: they get the line from their first moment. */
const LONG_COMMANDS = new Set(['import', 'cat-layer', 'checkout', 'dump', 'fsck', 'gc', 'prune', 'image', 'mount', 'export', 'ls', 'cat', 'diff']);
const TICK_MS = 200;

let quiet = false;
let timer: NodeJS.Timeout | null = null;
let shown = false;
let started = 0;
let label = '';
let restore: (() => void) | null = null;
/** stderr's own write, past the interception: the line's writes must not clear the line. */
let writeErr: (text: string) => void = () => undefined;

/** Whether --quiet (or -q) was given: no progress and no warnings; errors still go to stderr. */
export function isQuiet(): boolean {
  return quiet;
}

/** Live progress is wanted: asked for (`flag`, false for --no-progress or --json), not quiet, stderr a terminal. */
export function progressWanted(flag: boolean): boolean {
  return flag && !quiet && process.stderr.isTTY === true;
}

/** A warning on stderr, unless --quiet; on a terminal it first clears a live progress line. */
export function warn(text: string): void {
  if (!quiet) process.stderr.write(`${process.stderr.isTTY ? '\r\x1b[K' : ''}veritree: warning: ${text}\n`);
}

/** The options before a `--` (what follows it is operands). */
function options(argv: readonly string[]): string[] {
  const end = argv.indexOf('--');
  return (end < 0 ? argv : argv.slice(0, end)).slice(2);
}

/** The command: the first word that is not an option nor the value of a --repo before it. */
function commandOf(opts: readonly string[]): string | undefined {
  for (let i = 0; i < opts.length; i++) {
    const a = opts[i] as string;
    if (a === '--repo') i++;
    else if (!a.startsWith('-')) return a;
  }
  return undefined;
}

/** Reads --quiet from argv and, for a long command on a terminal, shows the start-up line at once. */
export function begin(argv: readonly string[]): void {
  const opts = options(argv);
  quiet = opts.includes('--quiet') || opts.includes('-q');
  const cmd = commandOf(opts);
  if (cmd === undefined || !LONG_COMMANDS.has(cmd)) return;
  if (!progressWanted(!opts.some((a) => a === '--json' || a === '--no-progress' || a === '--help' || a === '-h'))) return;
  label = `veritree ${cmd}`;
  started = performance.now();
  interceptOutput();
  draw();
  timer = setInterval(draw, TICK_MS);
  timer.unref();
}

/** The line, with the seconds since the command began. */
function draw(): void {
  shown = true;
  writeErr(`\r\x1b[K${label}: running, ${((performance.now() - started) / 1000).toFixed(1)} s`);
}

/**
 * Another write clears the line first. One to stdout (a result) ends it; one to stderr (a
 * warning, a lock notice) lets it come back at the next tick, below what was written.
 */
function interceptOutput(): void {
  const out = process.stdout.write.bind(process.stdout);
  const err = process.stderr.write.bind(process.stderr);
  writeErr = (text) => {
    err(text);
  };
  const clearing = (write: typeof out, ends: boolean) =>
    ((...args: Parameters<typeof out>) => {
      if (shown) {
        err('\r\x1b[K');
        shown = false;
      }
      if (ends) takeOver();
      return write(...args);
    }) as typeof out;
  process.stdout.write = clearing(out, true);
  process.stderr.write = clearing(err, false);
  restore = () => {
    process.stdout.write = out;
    process.stderr.write = err;
  };
}

/** The command's own progress (or its result) takes over: the line goes, for good. */
export function takeOver(): void {
  if (timer !== null) clearInterval(timer);
  timer = null;
  if (shown) writeErr('\r\x1b[K');
  shown = false;
  restore?.();
  restore = null;
}
