/**
 * Tries, in the current network namespace and with whatever privileges it
 * was started with, each kernel operation the distnat daemons perform, and
 * prints one JSON line: "ok" or the error code for each. Run by
 * ops-caps.test.ts as an unprivileged user with and without the capabilities
 * the systemd units grant (native-setup/systemd/).
 *
 * Usage: ops-caps-probe.ts <tun> <lan-if>
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { openRawSender, openRawSocket } from '../../src/io/raw.ts';
import { openTun } from '../../src/io/tun.ts';

const tunName = process.argv[2] ?? 'dn0';
const lanIf = process.argv[3] ?? 'lan0';
const PORT_RANGE = '/proc/sys/net/ipv4/ip_local_port_range';

function attempt(fn: () => unknown): string {
  try {
    const r = fn();
    return typeof r === 'string' ? r : 'ok';
  } catch (e) {
    const err = e as { code?: string; message?: string };
    return err.code ?? /\b(E[A-Z]+)\b/.exec(err.message ?? '')?.[1] ?? String(err.message);
  }
}

const result = {
  uid: process.getuid?.(),
  // Attach to the persistent TUN device the set-up script (root) made.
  tunAttach: attempt(() => openTun({ name: tunName, mustExist: true }).close()),
  // The router sets its TUN device up itself (SIOCSIFFLAGS).
  tunUp: attempt(() => openTun({ name: tunName, mustExist: true, up: true }).close()),
  // IP-in-IP in, bound to the LAN interface (router); PAP over ICMP; IP-in-IP out.
  rawIpip: attempt(() => openRawSocket(4, { device: lanIf }).close()),
  rawIcmp: attempt(() => openRawSocket(1).close()),
  rawSender: attempt(() => openRawSender({ device: lanIf }).close()),
  // 4 MiB socket buffers (SO_RCVBUFFORCE) hold bursts at 200k pps; without
  // CAP_NET_ADMIN the kernel caps them at net.core.rmem_max.
  rawRcvbuf: attempt(() => {
    const s = openRawSocket(4);
    const { rcvbuf } = s.buffers();
    s.close();
    return String(rcvbuf);
  }),
  // Native mode: the kernel's ephemeral port range (written back unchanged).
  portRange: attempt(() => writeFileSync(PORT_RANGE, readFileSync(PORT_RANGE, 'utf8'))),
};
process.stdout.write(JSON.stringify(result) + '\n');
