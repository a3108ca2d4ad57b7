/**
 * Log lines for journald: the "<N>" syslog priority prefix only when stderr
 * is the stream systemd connected (JOURNAL_STREAM = its device:inode), on
 * the logger's lines and on the command's own error message, every line.
 * The real journald's reading of the prefix is shown by the systemd machines'
 * test (test/netns/units-nspawn.test.ts, `journalctl -p warning`).
 */
import { spawnSync } from 'node:child_process';
import { closeSync, fstatSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { PassThrough } from 'node:stream';
import winston from 'winston';
import { afterAll, describe, expect, it } from 'vitest';
import { forJournal, stderrIsJournal } from '../../../src/util/journal.ts';
import { createLogger } from '../../../src/util/log.ts';

const DISTNAT = resolve(import.meta.dirname, '../../../bin/distnat');
const dir = mkdtempSync(join(tmpdir(), 'distnat-journal-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The lines a logger writes, through a stream transport in place of the console. */
function linesOf(journal: boolean, write: (log: winston.Logger) => void): string[] {
  const log = createLogger({ journal, json: true, level: 'debug' });
  const stream = new PassThrough();
  let out = '';
  stream.on('data', (d: Buffer) => (out += d.toString()));
  log.clear().add(new winston.transports.Stream({ stream }));
  write(log);
  return out.trim().split('\n');
}

describe('journald priorities', () => {
  it('takes stderr for the journal only when JOURNAL_STREAM names its device and inode', () => {
    const stat = () => ({ dev: 25n, ino: 123456789012n });
    expect(stderrIsJournal({ JOURNAL_STREAM: '25:123456789012' }, stat)).toBe(true);
    expect(stderrIsJournal({ JOURNAL_STREAM: '25:123456789013' }, stat)).toBe(false);
    expect(stderrIsJournal({ JOURNAL_STREAM: 'x' }, stat)).toBe(false);
    expect(stderrIsJournal({}, stat)).toBe(false);
  });

  it("prefixes each log line with its level's syslog priority, and nothing off the journal", () => {
    const lines = linesOf(true, (log) => {
      log.error('e');
      log.warn('w');
      log.info('i');
      log.debug('d');
    });
    expect(lines.map((l) => l.slice(0, 3))).toEqual(['<3>', '<4>', '<6>', '<7>']);
    expect(JSON.parse(lines[1]!.slice(3))).toMatchObject({ level: 'warn', message: 'w' });
    expect(linesOf(false, (log) => log.warn('w'))[0]).toMatch(/^\{/);
  });

  it('prefixes every line of a message written outside the logger', () => {
    expect(forJournal('distnat: one\n  two\n', 'error', true)).toBe('<3>distnat: one\n<3>  two\n');
    expect(forJournal('distnat: one\n', 'error', false)).toBe('distnat: one\n');
  });

  it('gives the error of a refused start priority 3 when stderr is the journal stream', () => {
    const bad = join(dir, 'bad.yaml');
    const run = (journal: boolean) => {
      const errPath = join(dir, `stderr-${journal}`);
      const fd = openSync(errPath, 'w');
      const { dev, ino } = fstatSync(fd, { bigint: true });
      const env = { ...process.env, JOURNAL_STREAM: journal ? `${dev}:${ino}` : `${dev}:${ino + 1n}` };
      const r = spawnSync(DISTNAT, ['router', '--config', bad], { env, stdio: ['ignore', 'pipe', fd] });
      closeSync(fd);
      return { status: r.status, stderr: readFileSync(errPath, 'utf8') };
    };
    const journal = run(true);
    expect(journal.status).toBe(78);
    expect(journal.stderr).toMatch(/^<3>distnat: .*bad\.yaml/);
    expect(
      journal.stderr
        .split('\n')
        .filter(Boolean)
        .every((l) => l.startsWith('<3>')),
    ).toBe(true);
    expect(run(false).stderr).toMatch(/^distnat: /);
  });
});
