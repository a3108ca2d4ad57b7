/** The host agent's last word to the router: its blocks given back, the wait for it bounded. */
import { formatBlock } from '../../util/block.ts';
import type { HeldBlock } from '../../pap/held-block.ts';
import type { PapClient } from '../../pap/pap-client.ts';
import type { Clock, Timer } from '../../util/clock.ts';
import type { Logger } from '../../util/log.ts';

/**
 * Sends a PAP invalidate for each block and waits for the confirms up
 * to `timeoutMs`; a router that does not answer lets the leases expire.
 * Nothing is awaited before the invalidates go out.
 */
export async function releaseBlocks(
  held: readonly HeldBlock[],
  client: PapClient,
  clock: Clock,
  timeoutMs: number,
  log: Logger,
  routerText: string,
): Promise<void> {
  log.info('stopping: giving the leased blocks back', { blocks: held.map(formatBlock) });
  let timer: Timer | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = clock.setTimeout(() => resolve('timeout'), timeoutMs);
  });
  const released = Promise.all(held.map((b) => client.release(b.kind, b.lowest)));
  const outcome = await Promise.race([released, timeout]);
  timer?.cancel();
  if (outcome === 'timeout')
    log.warn(`router ${routerText} did not confirm the release in time; its leases will expire on their own`);
}
