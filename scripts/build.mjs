#!/usr/bin/env node
// Builds what `bin/distnat` runs: src/ as JavaScript in dist/, one file for
// the command line and one chunk per command (src/cli/commands/index.ts
// loads only the command being run), so start-up reads a few files instead
// of the whole tree. npm runs this before it packs distnat and when a
// checkout installs its dependencies (prepare); scripts/setup runs it too.
// Type checking belongs to `npm run lint`, not to the build.
//
// Start-up (docs/benchmarks.md, "bench:cli"): yargs and the packages it
// imports are bundled into dist/main.js, because Node resolving and loading
// their ~40 files cost more than distnat's own code, and string-width is
// replaced by src/cli/string-width.ts, because importing it compiles Unicode
// property-of-strings patterns that took longer than starting Node. yargs
// reads its message translations from files at run time: they are copied to
// dist/locales/. The other dependencies stay in node_modules; only commands
// that need them load them.
//
// The version `distnat --version` prints is fixed here: package.json's, and
// the commit when this is a git checkout of distnat itself (not, say, a
// tarball unpacked inside some other repository), or $DISTNAT_COMMIT.
import { execFileSync } from 'node:child_process';
import { env } from 'node:process';
import { cpSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { build } from 'esbuild';

const ROOT = resolve(import.meta.dirname, '..');
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));

/** Packages bundled into dist/main.js; every other dependency is imported from node_modules at run time. */
const BUNDLED = ['yargs'];

function git(...args) {
  return execFileSync('git', args, {
    cwd: ROOT,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  }).trim();
}

/** "0.1.0 (commit 0123456789ab)", "... , modified)" for uncommitted changes, or "0.1.0" outside a checkout. */
function versionString() {
  let commit = env.DISTNAT_COMMIT || undefined;
  let modified = false;
  if (commit === undefined) {
    try {
      if (resolve(git('rev-parse', '--show-toplevel')) === ROOT) {
        commit = git('rev-parse', '--short=12', 'HEAD');
        modified = git('status', '--porcelain', '--untracked-files=no') !== '';
      }
    } catch {
      // No git, or not a repository: the version alone.
    }
  }
  return commit === undefined
    ? pkg.version
    : `${pkg.version} (commit ${commit}${modified ? ', modified' : ''})`;
}

const YARGS_SHIM = /[\\/]yargs[\\/]lib[\\/]platform-shims[\\/]esm\.mjs$/;
const LOCALES_FROM = "resolve(__dirname, '../../../locales')";
// dist/main.js's own URL: the build checks below that yargs lands in that file.
const LOCALES_TO = "fileURLToPath(new URL('./locales/', import.meta.url))";

/** string-width becomes src/cli/string-width.ts; yargs looks for its locales in dist/locales/. */
const startupPlugin = {
  name: 'distnat-startup',
  setup(b) {
    b.onResolve({ filter: /^string-width$/ }, () => ({ path: join(ROOT, 'src/cli/string-width.ts') }));
    b.onLoad({ filter: YARGS_SHIM }, (args) => {
      const text = readFileSync(args.path, 'utf8');
      if (!text.includes(LOCALES_FROM))
        return { errors: [{ text: `${args.path} no longer reads its locales from ${LOCALES_FROM}` }] };
      return { contents: text.replace(LOCALES_FROM, LOCALES_TO), loader: 'js' };
    });
  },
};

const result = await build({
  absWorkingDir: ROOT,
  // The router's forwarding workers run in threads of their own, started from this file (workers.ts).
  entryPoints: { main: 'src/cli/main.ts', 'router-worker': 'src/router/daemon/worker-main.ts' },
  outdir: 'dist',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external: Object.keys(pkg.dependencies).filter((d) => !BUNDLED.includes(d)),
  plugins: [startupPlugin],
  define: { __DISTNAT_VERSION__: JSON.stringify(versionString()) },
  sourcemap: true,
  chunkNames: 'chunks/[name]-[hash]',
  metafile: true,
  logLevel: 'warning',
});

const home = Object.entries(result.metafile.outputs).find(([, o]) =>
  Object.keys(o.inputs).some((i) => YARGS_SHIM.test(i)),
)?.[0];
if (home !== 'dist/main.js')
  throw new Error(`yargs was bundled into ${home}, not dist/main.js: its locales would not be found`);
const yargsDir = dirname(createRequire(import.meta.url).resolve('yargs/package.json'));
cpSync(join(yargsDir, 'locales'), join(ROOT, 'dist/locales'), { recursive: true });
