/**
 * The file piscina loads. piscina require()s a worker before it tries import(), and on Node
 * 20.19, where require() of an ES module is on by default, that path can abort V8 ("IsGraphAsync
 * must be used on an instantiated module"). This CommonJS entry is require()d safely and
 * import()s the ES module worker once, on its first task.
 */
import type { TaskResults, VerityTask } from '../src/pipeline/protocol.ts';

type Handler = (task: VerityTask) => Promise<TaskResults[VerityTask['kind']]>;
let handler: Promise<Handler> | null = null;

module.exports = function verityWorkerEntry(task: VerityTask): Promise<TaskResults[VerityTask['kind']]> {
  handler ??= import('./verity.worker.ts').then((m: { default: Handler }) => m.default);
  return handler.then((h) => h(task));
};
