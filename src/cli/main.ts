#!/usr/bin/env node
/**
 * The veritree command's entry. The SIGINT/SIGTERM handlers go in before anything else is loaded:
 * a Ctrl-C while the modules load (slow disks, cold caches) must end the command as "interrupted",
 * exit 130, not by the default action part-way through whatever had started.
 */
import { installInterruptHandlers } from './signals.ts';

installInterruptHandlers();
const { main } = await import('./program.ts');
process.exitCode = await main(process.argv);
