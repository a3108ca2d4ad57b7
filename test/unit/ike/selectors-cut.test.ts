import { describe, expect, it } from 'vitest';
import { bindingSelectors, describeSelector, withoutUdpPort } from '../../../src/ike/selectors.ts';

describe('withoutUdpPort: the selectors a host offers, less its IKE port', () => {
  const offered = bindingSelectors('198.51.100.30', [{ lowest: 1024, count: 32 }]);
  it('splits the UDP range around the port and leaves TCP whole', () => {
    expect(withoutUdpPort(offered, 1030).map(describeSelector)).toEqual([
      '198.51.100.30/32[tcp/1024-1055]',
      '198.51.100.30/32[udp/1024-1029]',
      '198.51.100.30/32[udp/1031-1055]',
    ]);
  });
  it('at either end of the range one part is left; outside it nothing changes', () => {
    expect(withoutUdpPort(offered, 1024).map(describeSelector)).toContain('198.51.100.30/32[udp/1025-1055]');
    expect(withoutUdpPort(offered, 1055).map(describeSelector)).toContain('198.51.100.30/32[udp/1024-1054]');
    expect(withoutUdpPort(offered, 2000)).toEqual(offered);
  });
});
