/**
 * The daemons a benchmark starts are bin/distnat, which runs the JavaScript
 * in dist/: what users run. A dist/ older than the checkout would measure
 * other code than the one beside it, so benchmarks that start daemons build
 * first (BENCH_NO_BUILD=1 skips it, for runs of a dist/ built on purpose).
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from './testbed.ts';

export function buildDistnat(): void {
  if (process.env.BENCH_NO_BUILD === '1') return;
  const b = spawnSync(process.execPath, [join(ROOT, 'scripts/build.mjs')], { cwd: ROOT, stdio: 'inherit' });
  if (b.status !== 0) throw new Error(`npm run build failed (${b.status ?? b.signal})`);
}
