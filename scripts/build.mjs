#!/usr/bin/env node
// Builds what `bin/distnat` runs: src/ as JavaScript in dist/, one file for
// the command line and one chunk per command (src/cli/commands/index.ts
// loads only the command being run), so start-up reads a few files instead
// of the whole tree. npm runs this before it packs distnat and when a
// checkout installs its dependencies (prepare); scripts/setup runs it too.
// Dependencies stay in node_modules (yargs reads its own locale files at run
// time), and type checking belongs to `npm run lint`, not to the build.
import { build } from 'esbuild';

await build({
  entryPoints: ['src/cli/main.ts'],
  outdir: 'dist',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  packages: 'external',
  sourcemap: true,
  chunkNames: 'chunks/[name]-[hash]',
  logLevel: 'warning',
});
