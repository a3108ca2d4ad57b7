/**
 * The host agent's glue for the hairpin (docs/host.md, "Hairpin"): keeps
 * the policy routing of hairpin-rules.ts in step with the leased port
 * blocks while the agent runs, and takes it away on stop. Failures are
 * logged, never thrown: without the rules only the hairpin is lost.
 */
import type { Block } from '../../util/block.ts';
import type { Logger } from '../../util/log.ts';
import { hairpinRoute, ownPortRanges, planHairpin, planRemoval } from './hairpin-rules.ts';
import type { HairpinSpec } from './hairpin-rules.ts';
import type { PolicyRouting, RoutingChange } from './policy-routing.ts';

export interface Hairpin {
  /** Sets the rules for the blocks held now (nothing when they have not changed). */
  apply(): void;
  /** Removes the agent's rules and route, puts the local table's rule back as the kernel had it; apply() does nothing after. */
  remove(): void;
  /** For status: what is installed. */
  describe(): string;
}

export interface HairpinOptions {
  readonly routing: PolicyRouting;
  readonly spec: HairpinSpec;
  readonly blocks: () => readonly Block[];
  readonly log: Logger;
}

const rangesText = (ranges: readonly [number, number][]): string =>
  ranges.length === 0 ? 'none' : ranges.map(([lo, hi]) => (lo === hi ? `${lo}` : `${lo}-${hi}`)).join(',');

/** Clears what an agent that did not stop cleanly left, then waits for apply(). */
export function beginHairpin(o: HairpinOptions): Hairpin {
  const { routing, spec, log } = o;
  let installed: string | undefined;
  let removed = false;
  let state = 'not yet (no port block held)';

  const removeNow = (): number => {
    const changes = planRemoval(routing.rules(), spec);
    if (changes.length === 0) return 0;
    const rules = changes.filter((c) => c.op !== 'route-del');
    routing.apply(rules);
    try {
      routing.apply(changes.filter((c): c is RoutingChange => c.op === 'route-del'));
    } catch {
      // the route went with the TUN device
    }
    return rules.length;
  };

  try {
    const left = removeNow();
    if (left > 0)
      log.warn('removed the hairpin rules an earlier agent left behind', {
        changes: left,
        table: spec.table,
      });
  } catch (e) {
    log.error('cannot read or clear the policy routing rules: no hairpin', { error: (e as Error).message });
    state = `off: ${(e as Error).message}`;
    return { apply: () => undefined, remove: () => undefined, describe: () => state };
  }

  return {
    apply() {
      if (removed) return;
      const ranges = ownPortRanges(o.blocks());
      const key = rangesText(ranges);
      if (key === installed) return;
      try {
        const plan = planHairpin(routing.rules(), spec, o.blocks());
        if (!plan.ok) {
          log.warn(`no hairpin: ${plan.reason}`);
          state = `off: ${plan.reason}`;
          return;
        }
        routing.apply(plan.changes);
        installed = key;
        state = `own ports ${key} here, other TCP/UDP ports of ${spec.sharedAddress} through ${spec.tun} (table ${spec.table})`;
        log.info("hairpin: other hosts' ports of the shared address go through the tunnel", {
          ownPorts: key,
          table: spec.table,
          route: `${hairpinRoute(spec).to} dev ${spec.tun}`,
        });
      } catch (e) {
        log.error('cannot set the hairpin rules', { error: (e as Error).message });
        state = `failed: ${(e as Error).message}`;
      }
    },
    remove() {
      if (removed) return;
      removed = true;
      try {
        removeNow();
        state = 'removed';
      } catch (e) {
        log.error('cannot remove the hairpin rules', { error: (e as Error).message });
      }
    },
    describe: () => state,
  };
}
