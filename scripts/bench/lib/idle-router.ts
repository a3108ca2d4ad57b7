/**
 * A real `distnat router` for `npm run bench:cli` to ask for its status,
 * started without root: the daemon's own start-up (lease table and journal,
 * PAP on loopback UDP, control socket, maintenance), with in-memory devices
 * in place of the TUN and raw sockets. Arguments: the run and state
 * directories. Prints "ready" once the control socket answers and stops
 * cleanly on SIGTERM.
 */
import winston from 'winston';
import { RouterConfigSchema } from '../../../src/config/router-config.ts';
import { MemoryDevice, MemoryScheduler } from '../../../src/io/memory.ts';
import { startRouter } from '../../../src/router/daemon/start.ts';

const [runDir, stateDir] = process.argv.slice(2);
if (runDir === undefined || stateDir === undefined) {
  process.stderr.write('usage: idle-router.ts RUN_DIR STATE_DIR\n');
  process.exit(64);
}
const scheduler = new MemoryScheduler();
const config = RouterConfigSchema.parse({
  sharedAddress: '198.51.100.30',
  lanAddress: '127.0.0.1',
  runDir,
  stateDir,
  pap: { icmp: false },
});
const log = winston.createLogger({ level: 'warn', transports: [new winston.transports.Console()] });
const router = await startRouter(config, log, {
  devices: {
    tun: new MemoryDevice({ name: 'tun', scheduler }),
    lanRx: new MemoryDevice({ name: 'lan-rx', scheduler }),
    lanTx: new MemoryDevice({ name: 'lan-tx', scheduler }),
  },
  papUdpPort: 0,
});
process.stdout.write('ready\n');
process.once('SIGTERM', () => {
  router.stop().then(
    () => process.exit(0),
    () => process.exit(1),
  );
});
