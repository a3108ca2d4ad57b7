/**
 * Run by bpf-libbpf.test.ts in a child process whose dynamic loader finds a
 * broken libbpf.so.1 first: prints what the BPF wrapper and the packet I/O
 * addon each say, as one JSON line.
 */
import { BpfUnavailableError, openBpfObject, bpfObjectPath } from '../../../src/io/bpf.ts';
import { loadNative } from '../../../src/io/native.ts';

let bpf: { name: string; reason?: string; message: string } | undefined;
try {
  openBpfObject(bpfObjectPath('router'));
} catch (e) {
  bpf = {
    name: (e as Error).name,
    message: (e as Error).message,
    ...(e instanceof BpfUnavailableError ? { reason: e.reason } : {}),
  };
}
console.log(JSON.stringify({ bpf, nativeVersion: loadNative().version() }));
