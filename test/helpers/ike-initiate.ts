/**
 * One IKE_SA_INIT + IKE_AUTH from inside a namespace, then exit: prints
 * {"ok":true} or {"ok":false,"reason":...}. For tests that need an
 * initiator with a given certificate (a revoked one, say) beside the agents.
 *
 *   ip netns exec dn-h1 node --import tsx test/helpers/ike-initiate.ts \
 *     '{"address":"198.51.100.30","port":1030,"cert":"c.pem","key":"k.pem","root":"r.pem","remote":{"address":"203.0.113.3","port":500}}'
 */
import { readFileSync } from 'node:fs';
import { IkeDaemon, UdpTransport } from '../../src/ike/index.ts';
import { loadCertificates } from '../../src/ike/certs.ts';

interface Args {
  address: string;
  port: number;
  cert: string;
  key: string;
  root: string;
  remote: { address: string; port: number };
}

const a = JSON.parse(process.argv[2]!) as Args;
const [certificate, ...chain] = loadCertificates(readFileSync(a.cert, 'utf8'));
const transport = await UdpTransport.open({ address: a.address, port: a.port });
const daemon = new IkeDaemon({
  transport,
  identity: { certificate: certificate!, chain, privateKey: readFileSync(a.key, 'utf8') },
  trust: { roots: [readFileSync(a.root, 'utf8')] },
  retransmit: { timeoutMs: 500, base: 2, tries: 3 },
});
let result: { ok: boolean; reason?: string };
try {
  await daemon.initiate(a.remote, null);
  result = { ok: true };
} catch (e) {
  result = { ok: false, reason: (e as Error).message };
}
process.stdout.write(JSON.stringify(result) + '\n');
await daemon.close();
process.exit(0);
