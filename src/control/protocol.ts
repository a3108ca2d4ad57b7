/**
 * The control socket: a Unix stream socket in the run directory on which a
 * daemon answers one JSON request per connection with one JSON reply. It is
 * how `distnat status` reads live tables without a network port.
 */
export interface ControlRequest {
  command: 'status';
}

export type ControlReply = { ok: true; status: unknown } | { ok: false; error: string };

export function controlSocketPath(runDir: string, role: 'router' | 'host' | 'peer', name?: string): string {
  return `${runDir}/${role}${name ? `-${name}` : ''}.sock`;
}
