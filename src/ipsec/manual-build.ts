/**
 * Turns a validated manual keying configuration into the databases the
 * engine reads: policies in file order, SAs installed (inbound ones
 * against the host's leased SPI blocks) and bound to their policies, an
 * outbound bundle in the order its policy's `protect` list gives.
 */
import { ConfigError } from '../config/config-error.ts';
import { ipv4FromString } from '../wire/ipv4.ts';
import type { ManualKeyingConfig } from './manual-config.ts';
import { AhSa, EspSa, type SecurityAssociation } from './sa.ts';
import { SecurityAssociationDatabase, type SadOptions } from './sad.ts';
import { parseAddressRange, parsePortRange, PROTOCOL_NUMBERS } from './selector-text.ts';
import { SecurityPolicy, SecurityPolicyDatabase } from './spd.ts';

type SaEntry = ManualKeyingConfig['sas'][number];

function hexBytes(text: string): Uint8Array {
  return Uint8Array.from(Buffer.from(text.replace(/^0x/, ''), 'hex'));
}

function buildSa(sa: SaEntry): SecurityAssociation {
  const src = sa.src === undefined ? 0 : ipv4FromString(sa.src)!;
  const dst = sa.dst === undefined ? 0 : ipv4FromString(sa.dst)!;
  const common = {
    spi: sa.spi,
    direction: sa.direction,
    mode: sa.mode,
    // Outbound the outer source is this end; inbound it is the peer.
    tunnel:
      sa.mode === 'tunnel'
        ? sa.direction === 'outbound'
          ? { local: src, remote: dst }
          : { local: dst, remote: src }
        : undefined,
    esn: sa.esn,
    replayWindow: sa.replayWindow,
    lifetime: sa.lifetime,
    name: sa.name,
  };
  if (sa.protocol === 'ah') {
    return new AhSa({
      ...common,
      integrity: sa.integrity!.algorithm,
      integrityKey: hexBytes(sa.integrity!.key),
    });
  }
  const enc = sa.encryption!;
  return new EspSa({
    ...common,
    encryption: enc.algorithm,
    encryptionKey: enc.key === undefined ? undefined : hexBytes(enc.key),
    integrity: sa.integrity?.algorithm,
    integrityKey: sa.integrity === undefined ? undefined : hexBytes(sa.integrity.key),
    encap: sa.encap,
  });
}

/**
 * Builds the SPD and SAD a configuration describes. `isLeasedSpi` is the
 * host's lease test; an inbound SA outside the leased blocks is a
 * ConfigError naming its `spi` field.
 */
export function buildManualKeying(
  cfg: ManualKeyingConfig,
  options: SadOptions & { readonly source?: string } = {},
): { spd: SecurityPolicyDatabase; sad: SecurityAssociationDatabase } {
  const source = options.source ?? 'manual keying';
  const spd = new SecurityPolicyDatabase(cfg.defaultAction);
  const sad = new SecurityAssociationDatabase(options);
  for (const p of cfg.policies) {
    spd.add(
      new SecurityPolicy({
        name: p.name,
        direction: p.direction,
        action: p.action,
        protect: p.protect ?? (p.action === 'protect' ? ['esp'] : undefined),
        selector: {
          local: parseAddressRange(p.local)!,
          remote: parseAddressRange(p.remote)!,
          protocol: typeof p.protocol === 'number' ? p.protocol : PROTOCOL_NUMBERS[p.protocol]!,
          localPort: parsePortRange(p.localPort)!,
          remotePort: parsePortRange(p.remotePort)!,
        },
      }),
    );
  }
  const problems: string[] = [];
  const bundles = new Map<SecurityPolicy, SecurityAssociation[]>();
  cfg.sas.forEach((entry, i) => {
    const sa = buildSa(entry);
    const err = sad.add(sa, { nested: entry.nested });
    if (err !== null) {
      problems.push(
        `field \`sas.${i}.spi\`: got 0x${entry.spi.toString(16)}; ` +
          (err === 'spi-not-leased' ? 'not in a SPI block leased to this host' : err),
      );
      return;
    }
    if (entry.policy === undefined) return;
    const policy = spd.get(entry.policy)!;
    if (sa.direction === 'inbound') sad.bindInbound(policy, sa);
    else bundles.set(policy, [...(bundles.get(policy) ?? []), sa]);
  });
  if (problems.length > 0) throw new ConfigError(source, problems);
  for (const [policy, sas] of bundles) {
    sad.bindOutbound(
      policy,
      policy.template.map((proto) => sas.find((s) => s.protocol === proto)!),
    );
  }
  return { spd, sad };
}
