/**
 * The layers of src/, enforced by `npm run lint` (docs/architecture.md).
 *
 *   cli                                   the `distnat` command
 *    |
 *   router   host   peer                  daemons: data path + plumbing
 *    |
 *   ike -> ipsec, pki     pap             protocols
 *    |
 *   io -> wire, metrics   config  control  util     foundations
 *
 * Imports may only point down, never between daemons, and between protocols
 * only where one is built on the other (IKE installs IPsec SAs and checks
 * certificates). Every edge between two folders must be listed in LAYERS, so
 * the folder graph is a DAG by construction; module-level cycles are refused
 * as well.
 */
const FOUNDATIONS = ['wire', 'io', 'util', 'config', 'control', 'metrics'];
const PROTOCOLS = ['pap', 'ipsec', 'ike', 'pki'];
const DAEMONS = ['router', 'host', 'peer'];

/** Folder -> the folders it may import from (besides itself). */
const LAYERS = {
  cli: [...DAEMONS, ...PROTOCOLS, ...FOUNDATIONS],
  router: [...PROTOCOLS, ...FOUNDATIONS],
  host: [...PROTOCOLS, ...FOUNDATIONS],
  peer: [...PROTOCOLS, ...FOUNDATIONS],
  ike: ['ipsec', 'pki', ...FOUNDATIONS],
  ipsec: FOUNDATIONS,
  pki: FOUNDATIONS,
  pap: FOUNDATIONS,
  io: ['wire', 'metrics', 'util'],
  wire: ['util'],
  config: ['util'],
  control: ['util'],
  metrics: ['util'],
  util: [],
};

const any = (names) => `^src/(${names.join('|')})/`;

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'A cycle of imports: one of its modules belongs below the others (docs/architecture.md).',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'src-stands-alone',
      severity: 'error',
      comment: 'The product never imports tests, benchmarks or scripts.',
      from: { path: '^src/' },
      to: { path: '^(test|scripts)/' },
    },
    {
      name: 'no-unknown-folder',
      severity: 'error',
      comment: 'A new top-level folder under src/ needs a place in LAYERS first.',
      from: { path: '^src/', pathNot: any(Object.keys(LAYERS)) },
      to: {},
    },
    ...Object.entries(LAYERS).map(([folder, allowed]) => ({
      name: `layer-${folder}`,
      severity: 'error',
      comment: `src/${folder}/ may import only from ${allowed.length ? allowed.join(', ') : 'itself'} (docs/architecture.md).`,
      from: { path: `^src/${folder}/` },
      to: { path: '^src/', pathNot: any([folder, ...allowed]) },
    })),
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
};
