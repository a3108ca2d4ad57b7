/**
 * The router's etcd client gives every call one deadline, however often the
 * client tries it again on other members: a router cut off from every
 * member must answer try-later within etcd.callTimeoutSeconds, before its
 * hosts' failover.silentSeconds run out (docs/multi-router.md).
 */
import { createServer, type Server, type Socket } from 'node:net';
import { Etcd3, type CallOptionsFactory } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { etcdClientOptions, searchFromOf } from '../../../src/router/daemon/etcd-leases.ts';
import type { RouterConfig } from '../../../src/config/router-config.ts';

type EtcdConfig = NonNullable<RouterConfig['etcd']>;

function config(endpoints: string[], callTimeoutSeconds: number): EtcdConfig {
  return {
    endpoints,
    prefix: '/distnat/',
    dialTimeoutSeconds: 3,
    callTimeoutSeconds,
    clockSkewSeconds: 2,
  } as EtcdConfig;
}

function factory(options: {
  defaultCallOptions?: CallOptionsFactory;
}): (ctx: object) => { deadline?: number } {
  const f = options.defaultCallOptions;
  if (typeof f !== 'function') throw new Error('defaultCallOptions is not a function');
  return f as (ctx: object) => { deadline?: number };
}

describe('etcdClientOptions: one deadline per call', () => {
  it('keeps the first deadline for every try of a call, a new one for the next call, none for streams', () => {
    let t = 1_000_000;
    const f = factory(etcdClientOptions(config(['http://127.0.0.1:1'], 2), () => t));
    const params = { key: Buffer.from('k') };
    const ctx = { service: 'KV', method: 'range', isStream: false, params };
    expect(f(ctx).deadline).toBe(1_002_000);
    t += 1500; // the second try, on the next member
    expect(f(ctx).deadline).toBe(1_002_000);
    expect(f({ ...ctx, params: { key: Buffer.from('k') } }).deadline).toBe(1_003_500);
    expect(f({ service: 'Watch', method: 'watch', isStream: true })).toEqual({});
  });

  describe('members that accept connections and never answer', () => {
    const servers: Server[] = [];
    const sockets: Socket[] = [];
    const endpoints: string[] = [];
    beforeAll(async () => {
      for (let i = 0; i < 3; i++) {
        const s = createServer((c) => sockets.push(c));
        await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
        servers.push(s);
        endpoints.push(`http://127.0.0.1:${(s.address() as { port: number }).port}`);
      }
    });
    afterAll(async () => {
      for (const c of sockets) c.destroy();
      await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
    });

    it('fail a call within one deadline, not one per try', async () => {
      const client = new Etcd3(etcdClientOptions(config(endpoints, 1)));
      const started = Date.now();
      const error = await client
        .get('k')
        .string()
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      const took = Date.now() - started;
      client.close();
      expect(error).toBeInstanceOf(Error);
      // The client tries three times; a deadline per try took three seconds at least.
      expect(took).toBeLessThan(2500);
    }, 20_000);
  });
});

describe('where a router starts its search for a free block', () => {
  it('routers on one LAN start apart: neighbours about 0.38 of the range, any two of a /24 more than 1/1024', () => {
    const at = Array.from({ length: 254 }, (_, i) => searchFromOf(`10.0.0.${i + 1}`));
    for (const f of at) expect(f >= 0 && f < 1).toBe(true);
    const apart = (a: number, b: number): number => Math.min(Math.abs(a - b), 1 - Math.abs(a - b));
    expect(apart(searchFromOf('10.0.0.7'), searchFromOf('10.0.0.8'))).toBeCloseTo(0.382, 3);
    // The golden-ratio sequence spreads any number of points about evenly (the three-distance theorem).
    const sorted = [...at].sort((a, b) => a - b);
    const gaps = sorted.slice(1).map((f, i) => f - sorted[i]!);
    expect(Math.min(...gaps)).toBeGreaterThan(1 / 1024);
    // The same address, the same start (a restarted router keeps its stretch).
    expect(searchFromOf('10.0.0.7')).toBe(searchFromOf('10.0.0.7'));
  });
});
