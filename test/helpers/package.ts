/**
 * distnat as an install puts it in place, for the tests that run it as an
 * unprivileged user (a unit never runs a developer's checkout, which may
 * well be unreadable to others: /root is mode 700 on Debian) and for the
 * package's own test: the working tree packed as a release is (`npm pack`:
 * build, npm-shrinkwrap.json, the "files" of package.json) and installed by
 * native-setup/install-package.sh, as install.sh installs it in /opt/distnat,
 * in a world-readable directory outside the checkout.
 *
 * A vitest globalSetup (vitest.config.ts): it runs once, before the tests,
 * and hands the installed package to them (`inject('distnatPackage')`).
 * Installing builds the native addon, half a minute: the directory is named
 * after the tarball's hash and this Node.js, so that the next run with the
 * same package finds it. Directories not used for two days are removed.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  utimesSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { TestProject } from 'vitest/node';

export interface InstalledPackage {
  /** The installed package: what /opt/distnat is on a machine. */
  readonly dir: string;
  /** Its command, bin/distnat. */
  readonly bin: string;
  /** The native addon built for it. */
  readonly addon: string;
  /** The tarball it was installed from, as `npm pack` made it: what install.sh --package takes. */
  readonly tarball: string;
}

declare module 'vitest' {
  export interface ProvidedContext {
    distnatPackage: InstalledPackage;
  }
}

const CHECKOUT = resolve(import.meta.dirname, '../..');
/** Readable by every user, whatever the checkout's place; kept across runs. */
const CACHE = '/var/tmp';
const PREFIX = 'distnat-package-';
const UNUSED_MS = 2 * 24 * 3600 * 1000;

function run(cmd: string, args: string[], cwd: string): string {
  return execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Packs the working tree and installs the package, or finds it installed by an earlier run. */
export function installPackage(): InstalledPackage {
  const scratch = mkdtempSync(join(tmpdir(), 'distnat-pack-'));
  try {
    // prepack, prepare (the build) and postpack run as for a release.
    const name = run('npm', ['pack', '--silent', '--pack-destination', scratch], CHECKOUT)
      .trim()
      .split('\n')
      .pop()!;
    const packed = join(scratch, name);
    const hash = createHash('sha256')
      .update(readFileSync(packed))
      .update(`${process.version} ${process.arch}`)
      .digest('hex')
      .slice(0, 16);
    const dir = join(CACHE, PREFIX + hash);
    if (!existsSync(join(dir, 'bin/distnat'))) {
      // Another run may be installing the same package: install-package.sh
      // renames its work into place, and the loser of the rename fails; the
      // winner's directory is as good.
      try {
        run(join(CHECKOUT, 'native-setup/install-package.sh'), [packed, dir], scratch);
      } catch (e) {
        if (!existsSync(join(dir, 'bin/distnat'))) {
          const err = e as { stderr?: string; message: string };
          throw new Error(`installing the package failed: ${err.stderr ?? err.message}`, { cause: e });
        }
      }
    }
    // Beside the installation, for the tests that install the package
    // elsewhere; renamed into place, as a concurrent run may be reading it.
    const tarball = `${dir}.tgz`;
    if (!existsSync(tarball)) {
      copyFileSync(packed, `${tarball}.${process.pid}`);
      renameSync(`${tarball}.${process.pid}`, tarball);
    }
    const now = new Date();
    utimesSync(dir, now, now);
    utimesSync(tarball, now, now);
    prune(dir, tarball);
    return {
      dir,
      bin: join(dir, 'bin/distnat'),
      addon: join(dir, 'native-setup/addon/build/Release/distnat_native.node'),
      tarball,
    };
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** Installed packages of earlier runs and their tarballs, unused for two days. */
function prune(...keep: string[]): void {
  for (const name of readdirSync(CACHE)) {
    if (!name.startsWith(PREFIX)) continue;
    const dir = join(CACHE, name);
    if (keep.includes(dir)) continue;
    try {
      if (Date.now() - statSync(dir).mtimeMs < UNUSED_MS) continue;
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // another run pruned it first
    }
  }
}

/**
 * The `package` and `netns` projects each run this set-up, one after the
 * other in the one vitest process; packing builds the whole tree, so the
 * second takes the first one's package.
 */
const INSTALLED = Symbol.for('distnat.test.installedPackage');

export default function setup(project: TestProject): void {
  const shared = globalThis as { [INSTALLED]?: InstalledPackage };
  project.provide('distnatPackage', (shared[INSTALLED] ??= installPackage()));
}
