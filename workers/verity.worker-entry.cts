/**
 * The file piscina loads. piscina require()s a worker before it tries import(), and on Node
 * 20.19, where require() of an ES module is on by default, that path can abort V8 ("IsGraphAsync
 * must be used on an instantiated module"). This CommonJS entry is require()d safely and
 * import()s the ES module worker once, as the worker boots.
 */
import type { TaskResults, VerityTask } from '../src/pipeline/protocol.ts';

type Handler = (task: VerityTask) => Promise<TaskResults[VerityTask['kind']]>;
// Loaded as the worker boots, not on its first task: the CLI starts an import's workers while
// the command itself loads (pipeline/pool.ts, bootEarly), so this load is off the critical path.
const handler: Promise<Handler> = import('./verity.worker.ts').then((m: { default: Handler }) => m.default);
// A failed load is reported by the first task that needs the handler, not as an unhandled rejection.
handler.catch(() => undefined);

module.exports = function verityWorkerEntry(task: VerityTask): Promise<TaskResults[VerityTask['kind']]> {
  return handler.then((h) => h(task));
};
