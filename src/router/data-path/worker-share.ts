/**
 * Which forwarding worker takes which of the hosts' IP-in-IP datagrams
 * (docs/router.md, "Workers"): a classic BPF socket filter per worker, on
 * that worker's own protocol-4 raw socket. Every raw socket of a protocol
 * gets every packet, so without filters N workers would forward each
 * datagram N times; with them each datagram is taken by exactly one.
 *
 * The share is a hash of the outer source (the host) and the inner source
 * port for TCP and UDP, modulo N, so one flow always meets the same worker
 * and never overtakes itself. Everything else goes to worker 0: inner
 * fragments (offset or MF set: a datagram's fragments must meet in one
 * fragment table, and a later fragment has no port to hash), outer headers
 * with options, and packets too short to hold what the hash reads (a BPF
 * load past the end would drop the packet silently; worker 0 counts it by
 * reason). ICMP, ESP and AH hash on the host alone.
 *
 * A raw IPv4 socket's filter sees the packet from the outer IPv4 header
 * (offset 0): raw_rcv pushes back to the network header before the socket
 * queues it (checked on the kernel by test/netns/router-workers.test.ts).
 */
import { IPV4_MIN_HEADER_LENGTH, Ipv4Field } from '../../wire/ipv4.ts';
import { IpProtocol } from '../../wire/result.ts';

/** Classic BPF opcodes (linux/filter.h, linux/bpf_common.h). */
const Op = {
  LD_W_LEN: 0x80,
  LD_B_ABS: 0x30,
  LD_H_ABS: 0x28,
  LD_W_ABS: 0x20,
  LD_H_IND: 0x48,
  LD_IMM: 0x00,
  LDX_B_MSH: 0xb1,
  ALU_ADD_K: 0x04,
  ALU_XOR_X: 0xac,
  ALU_MUL_K: 0x24,
  ALU_RSH_K: 0x74,
  ALU_MOD_K: 0x94,
  JA: 0x05,
  JEQ_K: 0x15,
  JGE_K: 0x35,
  JGE_X: 0x3d,
  JSET_K: 0x45,
  TAX: 0x07,
  TXA: 0x87,
  RET_K: 0x06,
} as const;

const OUTER = IPV4_MIN_HEADER_LENGTH;
/** MF and the fragment offset of the flags word. */
const FRAGMENT_BITS = 0x3fff;
/** Accept the whole packet. */
const ALL = 0xffff_ffff;

export interface BpfInstruction {
  readonly code: number;
  readonly jt: number;
  readonly jf: number;
  readonly k: number;
}

/**
 * The filter of worker `share` of `shares`: accepts the datagrams that
 * worker forwards. shares >= 2 (one worker needs no filter).
 */
export function workerShareFilter(share: number, shares: number): BpfInstruction[] {
  if (!Number.isInteger(shares) || shares < 2 || shares > 64)
    throw new RangeError(`shares must be 2..64, not ${shares}`);
  if (!Number.isInteger(share) || share < 0 || share >= shares)
    throw new RangeError(`share must be 0..${shares - 1}, not ${share}`);
  // Labels are resolved after the program is laid out: jumps are relative.
  type Jump = number | string;
  const prog: { code: number; jt: Jump; jf: Jump; k: number; label?: string }[] = [];
  const op = (code: number, k = 0, jt: Jump = 0, jf: Jump = 0, label?: string) =>
    prog.push({ code, jt, jf, k, ...(label === undefined ? {} : { label }) });

  op(Op.LD_W_LEN);
  op(Op.JGE_K, 2 * OUTER, 0, 'default');
  op(Op.LD_B_ABS, Ipv4Field.VERSION_IHL);
  op(Op.JEQ_K, 0x45, 0, 'default');
  op(Op.LD_H_ABS, OUTER + Ipv4Field.FLAGS_FRAGMENT);
  op(Op.JSET_K, FRAGMENT_BITS, 'default', 0);
  op(Op.LD_B_ABS, OUTER + Ipv4Field.PROTOCOL);
  op(Op.JEQ_K, IpProtocol.TCP, 'port', 0);
  op(Op.JEQ_K, IpProtocol.UDP, 'port', 'no-port');
  // X = the inner header's length; the source port is at OUTER + X.
  op(Op.LDX_B_MSH, OUTER, 0, 0, 'port');
  op(Op.TXA);
  op(Op.ALU_ADD_K, OUTER + 2);
  op(Op.TAX);
  op(Op.LD_W_LEN);
  op(Op.JGE_X, 0, 0, 'default');
  op(Op.LDX_B_MSH, OUTER);
  op(Op.LD_H_IND, OUTER);
  op(Op.JA, 0, 'hash');
  op(Op.LD_IMM, 0, 0, 0, 'no-port');
  op(Op.TAX, 0, 0, 0, 'hash');
  op(Op.LD_W_ABS, Ipv4Field.SRC);
  op(Op.ALU_XOR_X);
  op(Op.ALU_MUL_K, 0x9e37_79b1);
  op(Op.ALU_RSH_K, 16);
  op(Op.ALU_MOD_K, shares);
  op(Op.JEQ_K, share, 0, 'reject');
  op(Op.RET_K, ALL);
  op(Op.RET_K, 0, 0, 0, 'reject');
  op(Op.RET_K, share === 0 ? ALL : 0, 0, 0, 'default');

  const at = new Map<string, number>();
  prog.forEach((p, i) => p.label !== undefined && at.set(p.label, i));
  const target = (from: number, j: Jump): number => {
    if (typeof j === 'number') return j;
    const to = at.get(j);
    if (to === undefined || to <= from) throw new Error(`bad label ${j}`);
    return to - from - 1;
  };
  return prog.map((p, i) => {
    if (p.code === Op.JA) return { code: p.code, jt: 0, jf: 0, k: target(i, p.jt) };
    return { code: p.code, jt: target(i, p.jt), jf: target(i, p.jf), k: p.k >>> 0 };
  });
}

/** The program as SO_ATTACH_FILTER takes it: struct sock_filter, 8 bytes each, in host order. */
export function encodeBpf(program: readonly BpfInstruction[]): Uint8Array {
  const words = new Uint32Array(program.length * 2);
  const halves = new Uint16Array(words.buffer);
  const bytes = new Uint8Array(words.buffer);
  program.forEach((p, i) => {
    halves[i * 4] = p.code;
    bytes[i * 8 + 2] = p.jt;
    bytes[i * 8 + 3] = p.jf;
    words[i * 2 + 1] = p.k;
  });
  return bytes;
}
