/**
 * `distnat --version` names the commit it was built from (scripts/build.mjs
 * fixes it at build time) and falls back to the package version where there
 * is no commit to name: a tarball unpacked outside any repository, or inside
 * someone else's. Each case builds a copy of the tree in a directory of its
 * own (src/ and node_modules/ linked, not copied).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../../..');
const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
const work = mkdtempSync(join(tmpdir(), 'dxv-version-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A copy of what the build reads, at `dir`. */
function tree(dir: string): string {
  mkdirSync(join(dir, 'scripts'), { recursive: true });
  cpSync(join(ROOT, 'scripts/build.mjs'), join(dir, 'scripts/build.mjs'));
  cpSync(join(ROOT, 'package.json'), join(dir, 'package.json'));
  symlinkSync(join(ROOT, 'src'), join(dir, 'src'));
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  return dir;
}

function buildAndAsk(dir: string, env: Record<string, string> = {}): string {
  const environment = { ...process.env, ...env };
  if (env.DISTNAT_COMMIT === undefined) delete environment.DISTNAT_COMMIT;
  const b = spawnSync(process.execPath, [join(dir, 'scripts/build.mjs')], { cwd: dir, env: environment });
  expect(b.status, b.stderr?.toString()).toBe(0);
  const r = spawnSync(process.execPath, [join(dir, 'dist/main.js'), '--version'], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return r.stdout;
}

const git = (dir: string, ...args: string[]): string =>
  execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@example.com', ...args], {
    cwd: dir,
    encoding: 'utf8',
  }).trim();

describe('distnat --version', { timeout: 120_000 }, () => {
  it('a git checkout: the version and the commit, and "modified" with uncommitted changes', () => {
    const dir = tree(join(work, 'checkout'));
    writeFileSync(join(dir, '.gitignore'), 'node_modules\nsrc\ndist\n');
    git(dir, 'init', '-q');
    git(dir, 'add', '.');
    git(dir, 'commit', '-qm', 'x');
    const head = git(dir, 'rev-parse', '--short=12', 'HEAD');
    expect(buildAndAsk(dir)).toBe(`distnat ${version} (commit ${head})\n`);
    writeFileSync(join(dir, '.gitignore'), 'node_modules\nsrc\ndist\n# changed\n');
    expect(buildAndAsk(dir)).toBe(`distnat ${version} (commit ${head}, modified)\n`);
  });

  it('not a checkout (an unpacked tarball): the version alone', () => {
    const dir = tree(join(work, 'tarball'));
    expect(buildAndAsk(dir)).toBe(`distnat ${version}\n`);
  });

  it("inside another project's repository: that repository's commit is not distnat's", () => {
    const outer = join(work, 'outer');
    mkdirSync(outer);
    git(outer, 'init', '-q');
    git(outer, 'commit', '-q', '--allow-empty', '-m', 'someone else');
    const dir = tree(join(outer, 'node_modules/distnat'));
    expect(buildAndAsk(dir)).toBe(`distnat ${version}\n`);
  });

  it('DISTNAT_COMMIT names the commit when the build has no repository to ask', () => {
    const dir = tree(join(work, 'packaged'));
    expect(buildAndAsk(dir, { DISTNAT_COMMIT: '0123456789ab' })).toBe(
      `distnat ${version} (commit 0123456789ab)\n`,
    );
  });
});
