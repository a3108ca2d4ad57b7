/**
 * The TypeScript half of scripts/testbed, which runs it for the work that is
 * not namespace plumbing:
 *
 *   main.ts up      --prefix P --run-dir R [--routers N] [--ike | --ipsec] [--no-daemons] [--daemons-file F] [-q]
 *                   certificates (and IKE or manual keying files); with --routers 2 the etcd
 *                   cluster and BIRD, waiting until both are healthy; then the processes of
 *                   the table; exit 1 naming each problem if one does not run
 *   main.ts down    --prefix P --run-dir R [-q]
 *                   stops the processes and whatever else runs in the namespaces,
 *                   removes what `up` made here
 *   main.ts status  --prefix P --run-dir R [--routers N] [--no-daemons] [--daemons-file F]
 *                   the "processes:" section (with --routers 2 also etcd's health and the BGP
 *                   sessions), then a "problem: ..." line per problem
 *   main.ts demo    --prefix P --run-dir R [--no-daemons] [--daemons-file F]
 *                   the demo's checks (after scripts/testbed's up and picture); exit 1 if any failed
 *
 * scripts/testbed has checked the options (the prefix, the files, the number
 * of routers) already.
 */
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { TOPOLOGY } from '../topology.ts';
import { demo } from './demo.ts';
import { describeEtcd, etcdProblems, etcdProcesses } from './etcd.ts';
import { TestbedLayout } from './layout.ts';
import { processTable } from './process-table.ts';
import { copyRouterCa, ensureIke, ensureIpsec, ensurePki, pkiProblems, removePki } from './provision.ts';
import { bgpProblems, birdProcesses, describeBgp, writeBirdConfigs } from './routing.ts';
import { readStatus, waitForStatus } from './status.ts';
import {
  describeProcesses,
  processProblems,
  removeStalePidFiles,
  startProcess,
  startProcesses,
  stopLeftovers,
  stopProcesses,
} from './supervisor.ts';

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    prefix: { type: 'string' },
    'run-dir': { type: 'string' },
    routers: { type: 'string', default: '1' },
    ike: { type: 'boolean', default: false },
    ipsec: { type: 'boolean', default: false },
    'no-daemons': { type: 'boolean', default: false },
    'daemons-file': { type: 'string' },
    quiet: { type: 'boolean', short: 'q', default: false },
  },
});
const verb = positionals[0];
if (values.prefix === undefined || values['run-dir'] === undefined)
  throw new Error('main.ts needs --prefix and --run-dir (scripts/testbed passes them)');
const layout = new TestbedLayout(values.prefix, values['run-dir']);
const note = (line: string): void => {
  if (!values.quiet) console.log(`  ${line}`);
};
// A testbed brought up with IKE stays so until it is taken down.
const ike = values.ike || existsSync(layout.ikeMarker);
const ipsec = values.ipsec || existsSync(layout.ipsecMarker);
if (ike && ipsec) {
  const what = (flag: string, mode: string, given: boolean): string =>
    given ? flag : `this testbed's ${mode} (up ${flag})`;
  process.stderr.write(
    `testbed: ${what('--ike', 'IKE', values.ike)} and ${what('--ipsec', 'manual keying', values.ipsec)} exclude each other; take it down first\n`,
  );
  process.exit(1);
}
const routers = Number(values.routers);
if (routers !== 1 && routers !== 2) throw new Error(`main.ts: --routers takes 1 or 2, not ${values.routers}`);
/**
 * What runs whatever the process table says (even with --no-daemons): with
 * two routers the etcd cluster, then BIRD in the routers and the server.
 */
const infrastructure = routers === 2 ? [...etcdProcesses(layout), ...birdProcesses(layout)] : [];
/** down removes the namespaces of either layout, whichever was up. */
const ALL_NODES = TOPOLOGY.multiRouter.nodes;
const daemons = !values['no-daemons'];
const table = processTable(layout, { ike, ipsec, routers, daemonsFile: values['daemons-file'] });
/** The processes that should run: none with --no-daemons. */
const expected = daemons ? table : [];

/** What differs from a healthy testbed: each problem once. */
async function problems(): Promise<string[]> {
  const found = [...pkiProblems(layout), ...processProblems(layout, [...infrastructure, ...expected])];
  if (routers === 2) found.push(...(await etcdProblems(layout)), ...(await bgpProblems(layout)));
  return found;
}

/**
 * The etcd cluster and BIRD, until etcd is healthy and every BGP session
 * Established: the routers' lease store and the upstream's routes must be
 * there before the routers that use them. A member waits for its peers
 * before it is healthy, and a session needs a second or two.
 */
async function startInfrastructure(): Promise<void> {
  writeBirdConfigs(layout, note);
  await startProcesses(layout, infrastructure, note);
  let last: string[] = [];
  for (const deadline = Date.now() + 60_000; Date.now() < deadline;) {
    last = [...(await etcdProblems(layout)), ...(await bgpProblems(layout))];
    if (last.length === 0) {
      note('etcd is healthy (3 members), every BGP session is Established');
      return;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  for (const p of last) process.stderr.write(`  problem: ${p}\n`);
  throw new Error('the etcd cluster or BGP did not come up within 60 s; the logs are in ' + layout.runDir);
}

async function up(): Promise<number> {
  mkdirSync(layout.runDir, { recursive: true });
  await ensurePki(layout, note);
  if (routers === 2) copyRouterCa(layout, note);
  if (ike) {
    writeFileSync(layout.ikeMarker, '');
    await ensureIke(layout, note);
  }
  if (ipsec) {
    writeFileSync(layout.ipsecMarker, '');
    ensureIpsec(layout, note);
  }
  removeStalePidFiles(layout, note);
  if (infrastructure.length > 0) await startInfrastructure();
  if (ipsec && values['daemons-file'] === undefined) await startInLeaseOrder();
  else await startProcesses(layout, expected, note);
  const found = await problems();
  for (const p of found) process.stderr.write(`  problem: ${p}\n`);
  return found.length === 0 ? 0 : 1;
}

/**
 * The keying files assume h1 leases its ports and SPIs first, then h2
 * (IPSEC_LEASES): each host is started once the one before has installed its
 * SAs. A host already running (up again) is not waited for.
 */
async function startInLeaseOrder(): Promise<void> {
  for (const spec of expected) {
    await startProcess(layout, spec, note);
    if (!spec.command.includes(' --ipsec ')) continue;
    await waitForStatus(
      `${spec.name} to install the SAs of its keying file`,
      () => readStatus(layout.nodeDir(spec.name), 'host'),
      (s) => String(s.summary['ipsec']).includes('SAs installed'),
      30_000,
    ).catch((e: Error) => {
      throw new Error(`${e.message}; see ${layout.logFile(spec.name)}`);
    });
  }
}

async function down(): Promise<number> {
  if (!existsSync(layout.runDir)) return stopLeftovers(layout, ALL_NODES, note).then(() => 0);
  await stopProcesses(layout, note);
  await stopLeftovers(layout, ALL_NODES, note);
  for (const f of readdirSync(layout.runDir))
    if (f.endsWith('.pid') || f.endsWith('.log')) rmSync(join(layout.runDir, f), { force: true });
  // The daemons' state and control sockets, etcd's data, BIRD's files, and the certificates.
  for (const node of ALL_NODES)
    if (node !== 'lan') rmSync(layout.nodeDir(node), { recursive: true, force: true });
  removePki(layout);
  return 0;
}

async function status(): Promise<number> {
  for (const line of describeProcesses(layout, [...infrastructure, ...table])) console.log(line);
  if (routers === 2)
    for (const line of [...(await describeEtcd(layout)), ...(await describeBgp(layout))]) console.log(line);
  for (const p of await problems()) console.log(`problem: ${p}`);
  return 0;
}

async function main(): Promise<number> {
  switch (verb) {
    case 'up':
      return up();
    case 'down':
      return down();
    case 'status':
      return status();
    case 'demo': {
      const fails = await demo(layout, expected, ike, ipsec);
      if (fails > 0) process.stderr.write(`testbed: ${fails} check(s) failed\n`);
      return fails === 0 ? 0 : 1;
    }
    default:
      throw new Error(`main.ts: unknown command '${verb ?? ''}' (up, down, status, demo)`);
  }
}

main().then(
  (code) => process.exit(code),
  (e: Error) => {
    process.stderr.write(`testbed: ${e.message}\n`);
    process.exit(1);
  },
);
