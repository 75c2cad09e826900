/**
 * SIGINT/SIGTERM become an AbortSignal for the running command: the library stops cleanly (no
 * half-published stream), and main() prints "interrupted" and exits 130. A second ^C kills.
 */
let controller: AbortController | null = null;

export function interruptSignal(): AbortSignal {
  if (controller) return controller.signal;
  const c = new AbortController();
  controller = c;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (c.signal.aborted) process.kill(process.pid, sig === 'SIGINT' ? 'SIGKILL' : sig);
    c.abort(new Error(sig));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return c.signal;
}
