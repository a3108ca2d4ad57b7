/**
 * The other end's view of a manual keying file: each SA's direction turned
 * round (its SPI, keys and outer addresses stay, since they describe the
 * wire; ESP-in-UDP ports swap) and each policy's local and remote
 * selectors swapped. Lets the peer run from the same file the host agent
 * loads (`distnat peer --mirror FILE`).
 */
import type { ManualKeyingConfig } from '../../ipsec/index.ts';

const FLIP = { in: 'out', out: 'in', both: 'both' } as const;

export function mirrorManualKeying(cfg: ManualKeyingConfig): ManualKeyingConfig {
  const bundled = new Set(
    cfg.policies.filter((p) => p.protect !== undefined && p.protect.length === 2).map((p) => p.name),
  );
  return {
    defaultAction: cfg.defaultAction,
    policies: cfg.policies.map((p) => ({
      ...p,
      direction: FLIP[p.direction],
      local: p.remote,
      remote: p.local,
      localPort: p.remotePort,
      remotePort: p.localPort,
    })),
    sas: cfg.sas.map((sa) => {
      // Replay window and nesting belong to the receiving end only.
      const { replayWindow: _w, nested: _n, encap, ...rest } = sa;
      const swapped =
        encap === undefined ? {} : { encap: { localPort: encap.remotePort, remotePort: encap.localPort } };
      if (sa.direction === 'inbound') return { ...rest, ...swapped, direction: 'outbound', nested: false };
      // The inner ESP of an [ah, esp] bundle is never seen by the router: no leased SPI.
      const nested = sa.protocol === 'esp' && sa.policy !== undefined && bundled.has(sa.policy);
      return { ...rest, ...swapped, direction: 'inbound', nested };
    }),
  };
}
