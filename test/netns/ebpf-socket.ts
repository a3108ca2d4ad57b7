/** One JSON command to an eBPF test agent's Unix socket (ebpf-agent.ts, ebpf-host-agent.ts), one JSON reply. */
import { createConnection } from 'node:net';

export function askAgent<T>(socket: string, command: object): Promise<T> {
  return new Promise((resolve, reject) => {
    const c = createConnection(socket);
    let text = '';
    c.on('data', (d) => (text += d.toString('utf8')));
    c.on('end', () => {
      try {
        const reply = JSON.parse(text) as T & { error?: string };
        if (reply.error !== undefined) reject(new Error(reply.error));
        else resolve(reply);
      } catch (e) {
        reject(new Error(`agent answered ${JSON.stringify(text)}: ${(e as Error).message}`));
      }
    });
    c.on('error', reject);
    c.write(`${JSON.stringify(command)}\n`);
  });
}
