/**
 * What `distnat --version` prints: the package version and the commit it was
 * built from, fixed by scripts/build.mjs (esbuild `define`). Run from src/
 * without a build (tests under tsx), the identifier does not exist.
 */
declare const __DISTNAT_VERSION__: string;

export const VERSION: string =
  typeof __DISTNAT_VERSION__ === 'string' ? __DISTNAT_VERSION__ : 'unknown (not built: npm run build)';
