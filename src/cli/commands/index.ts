import type { Argv } from 'yargs';
import { statusCommand } from './status.ts';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const commands: ((y: Argv<any>) => Argv<any>)[] = [statusCommand];
commands.push((await import('./router.ts')).routerCommand);
commands.push((await import('./host.ts')).hostCommand);
commands.push((await import('./ca.ts')).caCommand);
commands.push((await import('./peer.ts')).peerCommand);
