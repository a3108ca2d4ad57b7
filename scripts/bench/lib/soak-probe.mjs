/**
 * Preloaded into every daemon of a soak (NODE_OPTIONS=--import this file),
 * so that memory is compared at the same point each time: on SIGUSR2 the
 * daemon runs a full garbage collection and then writes its
 * process.memoryUsage() to <DISTNAT_SOAK_PROBE_DIR>/<pid>.json. A heap read
 * at a random moment is mostly garbage not yet collected and says nothing
 * about a leak; the heap just after a full collection is what stays.
 * The daemons themselves are unchanged: no distnat process handles SIGUSR2.
 */
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import process from 'node:process';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

const dir = process.env['DISTNAT_SOAK_PROBE_DIR'];
if (dir !== undefined && dir !== '') {
  // --expose-gc is not allowed in NODE_OPTIONS; set at run time, it gives
  // contexts made afterwards a gc() function.
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc');
  process.on('SIGUSR2', () => {
    gc();
    const file = join(dir, `${process.pid}.json`);
    writeFileSync(`${file}.tmp`, JSON.stringify({ t: Date.now(), ...process.memoryUsage() }));
    renameSync(`${file}.tmp`, file);
  });
}
