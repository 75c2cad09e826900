#!/usr/bin/env node
/**
 * The veritree command's entry. The SIGINT/SIGTERM handlers go in before anything else is loaded:
 * a Ctrl-C while the modules load (slow disks, cold caches) must end the command as "interrupted",
 * exit 130, not by the default action part-way through whatever had started.
 */
import { availableParallelism } from 'node:os';
import { installInterruptHandlers } from './signals.ts';
import { begin, takeOver } from './startup-line.ts';

installInterruptHandlers();
// Progress from the first moment: before the command's modules load and its workers boot.
begin(process.argv);
// An import's workers boot while the command loads (pipeline/pool.ts, bootEarly). Not when the
// size is set by hand (--jobs, --io-limit): the command makes its own pool then.
const earlyPool = process.argv[2] === 'import' && !process.argv.some((a) => /^(-j|--jobs|--io-limit)(=|$)|^-j\d/.test(a));
const pool = earlyPool ? await import('../pipeline/pool.ts') : null;
pool?.bootEarly(availableParallelism());
const { main } = await import('./program.ts');
process.exitCode = await main(process.argv);
takeOver();
await pool?.closeEarly();
