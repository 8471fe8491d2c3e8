/**
 * One agent per overlay network per host. A second agent with the same node
 * name and underlay looks to the store exactly like a restart, so it would
 * re-register the node under its own lease; when either process ends, that
 * lease lapses and the node's record and subnet vanish from every peer until
 * the survivor registers again. The guard is an abstract Unix socket named
 * after the network, bound in the host's network namespace for the agent's
 * life: the kernel frees it however the holder dies (a restart never waits),
 * and a second agent finds it taken before it touches the store or the kernel.
 * The holder answers a connection with its pid and node, for the error.
 */
import * as net from 'node:net';
import { MeshworkError } from '../lib/errors';
import { inNetnsSync } from '../lib/netns';

export class AgentRunningError extends MeshworkError {
  constructor(network: string, holder: string) {
    super('EAGENT_RUNNING', `another meshwork agent (${holder}) already serves network ${network} on this host: stop it first, one agent per network per host`);
  }
}

export interface InstanceLock { release(): Promise<void> }

const socketName = (network: string) => `\0meshwork-agent/${network}`;

/** Runs `fn` in the managed namespace (bind/connect happen synchronously, so the socket lands there). */
const inHost = <T>(netnsPath: string | undefined, fn: () => T): T => (netnsPath ? inNetnsSync(netnsPath, fn) : fn());

export async function acquireInstanceLock(network: string, node: string, netnsPath?: string): Promise<InstanceLock> {
  const srv = net.createServer((c) => c.end(JSON.stringify({ pid: process.pid, node })));
  srv.unref();
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    inHost(netnsPath, () => srv.listen(socketName(network), () => { srv.off('error', reject); resolve(); }));
  }).catch(async (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EADDRINUSE') throw err;
    throw new AgentRunningError(network, await describeHolder(network, netnsPath));
  });
  return { release: () => new Promise<void>((r) => srv.close(() => r())) };
}

function describeHolder(network: string, netnsPath?: string): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    const done = () => {
      try {
        const h = JSON.parse(text) as { pid?: number; node?: string };
        resolve(`pid ${h.pid}, node ${h.node}`);
      } catch { resolve('unknown process'); }
    };
    const c = inHost(netnsPath, () => net.connect(socketName(network)));
    c.setTimeout(1000, () => c.destroy());
    c.on('data', (d) => (text += d));
    c.on('close', done);
    c.on('error', () => { /* close follows */ });
  });
}
