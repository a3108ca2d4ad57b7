#!/usr/bin/env node
// Writes what an installation puts beside the `distnat` command, made by the
// built command line itself (run `npm run build` first; `npm run prepare`
// runs both):
//
//   dist/share/man/man1/distnat.1                     the man page, from every command's --help
//   dist/share/bash-completion/completions/distnat    bash completion (`distnat completion`)
//   dist/share/zsh/vendor-completions/_distnat        zsh completion
//
// The tree mirrors /usr/share (or /usr/local/share), so an installer copies
// it as it is: docs/command-line.md says where each file goes. `--out DIR`
// writes the tree somewhere else.
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { env, execPath } from 'node:process';
import { parseArgs, promisify } from 'node:util';
import { renderManPage, parseHelp } from './lib/man-page.mjs';

const ROOT = resolve(import.meta.dirname, '..');
const MAIN = join(ROOT, 'dist/main.js');
const { values } = parseArgs({ options: { out: { type: 'string' } } });
const SHARE = resolve(values.out ?? join(ROOT, 'dist/share'));
const run = promisify(execFile);

/** The built command line's output, unwrapped and in English whatever the caller's locale. */
async function distnat(args, extraEnv = {}) {
  const { stdout } = await run(execPath, [MAIN, ...args], {
    cwd: ROOT,
    env: { ...env, COLUMNS: '1000', LC_ALL: 'C', LANG: 'C', LANGUAGE: '', ...extraEnv },
  });
  return stdout;
}

/** "distnat ca <command>" -> ["ca"]: the words that select a command. */
const path = (usage) =>
  usage
    .split(' ')
    .slice(1)
    .filter((w) => !/^[<[]/.test(w));

/**
 * The help of every command under `words`, depth first, in the order the help
 * lists them. `distnat completion --help` prints the script, not help: its
 * entry is made from the line that lists it.
 */
async function helpTree(words) {
  const text = await distnat([...words, '--help']);
  const commands = parseHelp(text).sections.find((s) => s.title === 'Commands')?.rows ?? [];
  const below = await Promise.all(
    commands.map(([usage, ...what]) =>
      path(usage)[0] === 'completion' ? [`${usage}\n\n${what.join(' ')}\n`] : helpTree(path(usage)),
    ),
  );
  return [...(words.length > 0 ? [text] : []), ...below.flat()];
}

/** The page's date: $SOURCE_DATE_EPOCH, else the commit's, else today, so that a rebuild of one commit is the same. */
function pageDate() {
  if (env.SOURCE_DATE_EPOCH) return new Date(Number(env.SOURCE_DATE_EPOCH) * 1000).toISOString().slice(0, 10);
  try {
    const top = execFileSync('git', ['rev-parse', '--show-toplevel'], {
      cwd: ROOT,
      encoding: 'utf8',
      stdio: 'pipe',
    });
    if (resolve(top.trim()) === ROOT)
      return execFileSync('git', ['log', '-1', '--format=%cs'], { cwd: ROOT, encoding: 'utf8' }).trim();
  } catch {
    // not a checkout
  }
  return new Date().toISOString().slice(0, 10);
}

const FILES = [
  [
    '/etc/distnat/router.yaml',
    "the router's configuration (native-setup/config/router.yaml shows every field)",
  ],
  ['/etc/distnat/host.yaml', "a host agent's configuration"],
  ['/var/lib/distnat/router', 'the lease journal and its lock; ca/ holds the local CA (ca issue-local)'],
  ['/var/lib/distnat/host', "a host agent's state"],
  [
    '/run/distnat/router.sock, /run/distnat/host.sock',
    'control sockets read by distnat status and distnat withdraw',
  ],
];

function write(file, text) {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, text);
}

const [top, commands, version, bash, zsh] = await Promise.all([
  distnat(['--help']),
  helpTree([]),
  distnat(['--version']),
  distnat(['completion'], { SHELL: '/bin/bash' }),
  distnat(['completion'], { SHELL: '/bin/zsh' }),
]);
write(
  join(SHARE, 'man/man1/distnat.1'),
  renderManPage({
    top,
    commands,
    version: version.trim(),
    date: pageDate(),
    files: FILES,
    seeAlso:
      'ip(8), nft(8), systemd.exec(5), swanctl(8). The documents installed with distnat (docs/): ' +
      'design.md (what distnat is and how it works), glossary.md, router.md, host.md, pki.md, ' +
      'firewall.md, metrics.md, command-line.md, deploy.md.',
  }),
);
write(join(SHARE, 'bash-completion/completions/distnat'), bash);
write(join(SHARE, 'zsh/vendor-completions/_distnat'), zsh);
