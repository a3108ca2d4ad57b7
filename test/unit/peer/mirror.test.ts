import { describe, expect, it } from 'vitest';
import { parseManualKeying } from '../../../src/ipsec/index.ts';
import { mirrorManualKeying } from '../../../src/peer/daemon/mirror.ts';

const HMAC = '0x' + '11'.repeat(32);

describe('mirrorManualKeying', () => {
  const cfg = parseManualKeying(
    {
      policies: [
        {
          name: 'p',
          direction: 'out',
          local: '198.51.100.30',
          localPort: '1024-2047',
          remote: '203.0.113.3',
          remotePort: 80,
          action: 'protect',
          protect: ['ah', 'esp'],
        },
      ],
      sas: [
        {
          spi: 0x9000,
          direction: 'outbound',
          protocol: 'ah',
          integrity: { algorithm: 'hmac-sha256-128', key: HMAC },
          policy: 'p',
        },
        {
          spi: 0x9001,
          direction: 'outbound',
          protocol: 'esp',
          encryption: { algorithm: 'aes-gcm-16', key: '0x' + '00'.repeat(20) },
          encap: { localPort: 4500, remotePort: 14500 },
          policy: 'p',
        },
        {
          spi: 0x100,
          direction: 'inbound',
          protocol: 'ah',
          integrity: { algorithm: 'hmac-sha256-128', key: HMAC },
          replayWindow: 64,
        },
      ],
    },
    'test',
  );
  const m = mirrorManualKeying(cfg);

  it('swaps selectors and policy direction', () => {
    const p = m.policies[0]!;
    expect([p.direction, p.local, p.localPort, p.remote, p.remotePort]).toEqual([
      'in',
      '203.0.113.3',
      80,
      '198.51.100.30',
      '1024-2047',
    ]);
  });

  it('turns SAs round, marks the bundle inner ESP nested, swaps ESP-in-UDP ports, keeps the replay window on the receiver', () => {
    expect(m.sas.map((s) => [s.spi, s.direction, s.nested])).toEqual([
      [0x9000, 'inbound', false],
      [0x9001, 'inbound', true],
      [0x100, 'outbound', false],
    ]);
    expect(m.sas[1]!.encap).toEqual({ localPort: 14500, remotePort: 4500 });
    expect(m.sas[2]!.replayWindow).toBeUndefined();
  });

  it('gives a configuration the schema accepts, and mirroring twice gives the selectors back', () => {
    // Outbound protect needs outbound SAs: the mirror's policy is inbound only, so no such rule applies.
    expect(() => parseManualKeying(m, 'mirror')).not.toThrow();
    expect(mirrorManualKeying(m).policies).toEqual(cfg.policies);
  });
});
