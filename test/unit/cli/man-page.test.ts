/**
 * distnat(1) and the shell completions are made from the built command
 * line's own help (scripts/build-share.mjs): the help is cut into parts
 * correctly, text is escaped for roff, and the page groff renders without a
 * warning holds every command and every flag the help shows.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
// @ts-expect-error: a build-time script in plain JavaScript, without types
import { parseHelp, roff } from '../../../scripts/lib/man-page.mjs';

const ROOT = resolve(import.meta.dirname, '../../..');

describe('roff', () => {
  it('escapes backslashes and hyphens, and protects a line that starts like a request', () => {
    expect(roff('--run-dir C:\\x')).toBe('\\-\\-run\\-dir C:\\ex');
    expect(roff(".hidden\n'quoted\nplain")).toBe("\\&.hidden\n\\&'quoted\nplain");
  });
});

describe('parseHelp', () => {
  const help = [
    'distnat status [role]',
    '',
    'print the live tables',
    '',
    'Positionals:',
    '  role                  [choices: "router", "host"] [default: "router"]',
    '',
    'Options:',
    '      --run-dir  where the socket is     [string] [default: "/run/distnat"]',
    '  -h, --help     Show help               [boolean]',
    '',
    'Examples:',
    '  distnat status router  the router',
    '',
    'Exit codes: 0 ok.',
    '',
    '  indented: kept',
    '',
  ].join('\n');

  it('cuts usage, description, sections by columns, and the closing text', () => {
    const p = parseHelp(help);
    expect(p.usage).toBe('distnat status [role]');
    expect(p.description).toBe('print the live tables');
    expect(p.sections).toEqual([
      { title: 'Positionals', rows: [['role', '[choices: "router", "host"] [default: "router"]']] },
      {
        title: 'Options',
        rows: [
          ['--run-dir', 'where the socket is', '[string] [default: "/run/distnat"]'],
          ['-h, --help', 'Show help', '[boolean]'],
        ],
      },
      { title: 'Examples', rows: [['distnat status router', 'the router']] },
    ]);
    expect(p.epilogue).toBe('Exit codes: 0 ok.\n\n  indented: kept');
  });
});

describe('scripts/build-share.mjs', { timeout: 300_000 }, () => {
  const out = mkdtempSync(join(tmpdir(), 'dxm-share-'));
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it('writes a man page groff takes without a warning, with every command and flag, and the completions', () => {
    const r = spawnSync(process.execPath, [join(ROOT, 'scripts/build-share.mjs'), '--out', out], {
      encoding: 'utf8',
    });
    expect(r.status, r.stderr).toBe(0);
    const page = join(out, 'man/man1/distnat.1');
    const warnings = spawnSync('groff', ['-man', '-Tutf8', '-ww', '-z', page], { encoding: 'utf8' });
    expect(warnings.stderr).toBe('');
    const text = execFileSync('groff', ['-man', '-Tascii', '-P-cbou', page], {
      encoding: 'utf8',
      env: { ...process.env, MANWIDTH: '200' },
    }).replace(/-\n\s*/g, '-');
    const distnat = (...args: string[]) =>
      execFileSync(process.execPath, [join(ROOT, 'dist/main.js'), ...args], {
        encoding: 'utf8',
        env: { ...process.env, COLUMNS: '1000', LC_ALL: 'C' },
      });
    for (const [cmd, flags] of [
      [['router'], ['--shared-address', '--crl-address', '--ca-port']],
      [['host'], ['--lan-if', '--wait-seconds', '--pap-transport']],
      [
        ['ca', 'issue-local'],
        ['--crl-address', '--crl-url'],
      ],
      [['status'], ['--run-dir', '--json']],
    ] as const) {
      expect(text).toContain(`distnat ${cmd.join(' ')}`);
      const help = distnat(...cmd, '--help');
      for (const flag of flags) {
        expect(help).toContain(flag);
        expect(text, `${cmd.join(' ')} ${flag}`).toContain(flag);
      }
    }
    expect(text).toMatch(/EXIT STATUS\s+Exit codes: 0 ok/);
    expect(readFileSync(join(out, 'bash-completion/completions/distnat'), 'utf8')).toContain(
      'complete -o bashdefault -o default -F _distnat_yargs_completions distnat',
    );
    expect(readFileSync(join(out, 'zsh/vendor-completions/_distnat'), 'utf8')).toMatch(/^#compdef distnat\n/);
  });
});
