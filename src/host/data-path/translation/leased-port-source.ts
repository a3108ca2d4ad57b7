/**
 * Where the source port translation table gets locally unique ports: the
 * host's PAP leases (patent Table 1, "u_ports" with an allocated flag). The
 * PAP client's HostLeases implements this; tests use an in-memory one.
 *
 * Both calls are on the packet path (a new flow takes a port) and must be
 * O(1) and allocation-free.
 */
export interface LeasedPortSource {
  /** A free leased port, now marked allocated; -1 when every leased port is in use. */
  takePort(): number;
  /** Gives back a port taken with takePort (its mapping ended). Ports of a withdrawn lease are not returned. */
  returnPort(port: number): void;
}
