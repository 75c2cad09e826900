/**
 * SIGINT/SIGTERM become an AbortSignal for the running command: the library stops cleanly (no
 * half-published stream), and main() prints "interrupted" and exits 130. A second ^C kills.
 * The handlers are installed first thing (main.ts); until a command claims the signal with
 * `interruptSignal()`, nothing has been written, so a signal ends the process at once, cleanly.
 * This module imports nothing, so that installing them costs no module loading.
 */
let controller: AbortController | null = null;
let claimed = false;

export function installInterruptHandlers(): void {
  if (controller) return;
  const c = new AbortController();
  controller = c;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (!claimed) {
      process.stderr.write('veritree: interrupted\n');
      process.exit(130);
    }
    if (c.signal.aborted) process.kill(process.pid, sig === 'SIGINT' ? 'SIGKILL' : sig);
    // An AbortError: the CLI says "interrupted" alone, as for any stop it asked for.
    c.abort(new DOMException(sig, 'AbortError'));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

/** The command's AbortSignal; from now on a signal aborts it instead of ending the process. */
export function interruptSignal(): AbortSignal {
  installInterruptHandlers();
  claimed = true;
  return (controller as AbortController).signal;
}
