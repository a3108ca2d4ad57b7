/**
 * Runs the built `distnat` command (bin/distnat) as a user would, with help
 * wrapped at 100 columns so that tests can match whole lines.
 */
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';

export const DISTNAT = resolve(import.meta.dirname, '../../bin/distnat');

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The command's exit code and output; killed after 30 s so that a hang fails the test instead of stalling it. */
export function runDistnat(args: readonly string[], cwd: string): Promise<CliRun> {
  return new Promise((done, reject) => {
    const p = spawn(DISTNAT, args, { cwd, env: { ...process.env, COLUMNS: '100' } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => p.kill('SIGKILL'), 30_000);
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr });
    });
  });
}
