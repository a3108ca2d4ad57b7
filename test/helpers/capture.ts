/**
 * Packet captures inside a namespace, and reading fields back with tshark.
 *
 * Captures run dumpcap, the capture engine tshark itself drives (same
 * package, same pcapng files): tshark needs about 1.4 s to load its
 * dissectors before capturing, dumpcap about 50 ms. Three timing facts shape
 * this module (measured with Wireshark 4.0 on this kernel):
 * - "File: ..." on dumpcap's stderr comes after the interface is open, the
 *   filter applied and the file created; packets sent right after it are
 *   captured (20 of 20 tries). tshark's own "Capturing on" line comes before
 *   that point and loses packets about half the time.
 * - dumpcap reads the kernel's packet ring in blocks with a 250 ms timeout and
 *   does not drain it when interrupted, so packets sent less than ~250 ms
 *   before SIGINT are lost. stop() therefore waits until the packets the test
 *   expects have been written (`packets`), or a settle time otherwise.
 * - dumpcap reports "Packets: N" about once a second, so waiting for a count
 *   takes up to a second.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe as describeResult, run, sleep, spawnBackground, waitUntil } from './process.ts';
import type { Background } from './process.ts';

export interface CaptureOptions {
  /** Capture (BPF) filter, e.g. 'udp port 7032'. */
  filter?: string;
  /** pcapng file to write; default a fresh file in a temporary directory. */
  file?: string;
  /** How long to wait for the capture to become active (default 10 s). */
  timeoutMs?: number;
}

export interface StopOptions {
  /** Wait until at least this many packets are in the file before stopping. */
  packets?: number;
  /** Without `packets`: how long to let the last packets reach the file (default 400 ms). */
  settleMs?: number;
  timeoutMs?: number;
}

export interface FieldsOptions {
  /** Display filter (tshark -Y). */
  filter?: string;
  /** Preferences (tshark -o), e.g. { 'udp.check_checksum': 'TRUE' }. */
  prefs?: Record<string, string>;
}

export interface Capture {
  readonly file: string;
  readonly ns: string;
  readonly iface: string;
  /** Packets written to the file so far, as dumpcap last reported (about once a second). */
  packetCount(): number;
  /** Resolves once at least `n` packets are in the file. */
  waitForPackets(n: number, timeoutMs?: number): Promise<void>;
  /** Stops the capture; the file is then complete. Calling it again does nothing. */
  stop(options?: StopOptions): Promise<void>;
  /**
   * One row per packet (after the display filter), one string per field in
   * the order asked; several occurrences of a field are joined with ','.
   * Reads the file, so call stop() first.
   */
  fields(fields: readonly string[], options?: FieldsOptions): Promise<string[][]>;
}

/** Reads fields from any capture file with `tshark -r -T fields`. */
export async function readFields(
  file: string,
  fields: readonly string[],
  options: FieldsOptions = {},
): Promise<string[][]> {
  const argv = [
    'tshark',
    '-r',
    file,
    '-T',
    'fields',
    '-E',
    'separator=/t',
    '-E',
    'occurrence=a',
    '-E',
    'aggregator=,',
  ];
  for (const f of fields) argv.push('-e', f);
  if (options.filter !== undefined) argv.push('-Y', options.filter);
  for (const [key, value] of Object.entries(options.prefs ?? {})) argv.push('-o', `${key}:${value}`);
  const result = await run(argv, { timeoutMs: 30_000 });
  if (result.code !== 0) throw new Error(`tshark -r ${file}: ${describeResult(result)}`);
  return result.stdout
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => line.split('\t'));
}

/** Starts capturing on `iface` in namespace `ns`; resolves when the capture is really active. */
export async function startCapture(
  ns: string,
  iface: string,
  options: CaptureOptions = {},
): Promise<Capture> {
  const file = options.file ?? join(mkdtempSync(join(tmpdir(), 'distnat-capture-')), `${ns}-${iface}.pcapng`);
  const argv = ['dumpcap', '-n', '-i', iface, '-w', file];
  if (options.filter !== undefined) argv.push('-f', options.filter);
  const dumpcap: Background = spawnBackground(ns, argv);
  try {
    await dumpcap.waitForOutput(/^File: /m, { stream: 'stderr', timeoutMs: options.timeoutMs ?? 10_000 });
  } catch (e) {
    await dumpcap.stop({ signal: 'SIGKILL' });
    throw e;
  }
  const packetCount = (): number => {
    const counts = [...dumpcap.stderr().matchAll(/Packets(?: captured)?: (\d+)/g)];
    return Number(counts.at(-1)?.[1] ?? 0);
  };
  let stopped: Promise<void> | undefined;

  return {
    file,
    ns,
    iface,
    packetCount,
    waitForPackets: (n, timeoutMs = 10_000) =>
      waitUntil(`${n} packets on ${ns}/${iface} (have ${packetCount()})`, () => packetCount() >= n, {
        timeoutMs,
      }),
    stop(stopOptions: StopOptions = {}) {
      stopped ??= (async () => {
        if (!dumpcap.running()) {
          throw new Error(`dumpcap on ${ns}/${iface} ended early: ${dumpcap.stderr()}`);
        }
        if (stopOptions.packets !== undefined) {
          await waitUntil(
            `${stopOptions.packets} packets on ${ns}/${iface} (have ${packetCount()})`,
            () => packetCount() >= stopOptions.packets!,
            { timeoutMs: stopOptions.timeoutMs ?? 10_000 },
          );
        } else {
          await sleep(stopOptions.settleMs ?? 400);
        }
        const status = await dumpcap.stop({ signal: 'SIGINT', timeoutMs: 5000 });
        if (status.code !== 0)
          throw new Error(
            `dumpcap on ${ns}/${iface} ended with ${status.code ?? status.signal}: ${dumpcap.stderr()}`,
          );
      })();
      return stopped;
    },
    fields: (fields, fieldsOptions) => readFields(file, fields, fieldsOptions),
  };
}
