/**
 * Servers the agent hosts beside the overlay, each optional and loaded only
 * when asked for: the resident CNI daemon (cni/daemon.ts, so plugin calls
 * skip Node's start-up) and the embedded DNS server (dns/server.ts over the
 * cluster view of the same store), sharing the agent's metrics registry.
 */
import type { Registry } from 'prom-client';
import type { Store } from '../store/types';
import { MeshworkError } from '../lib/errors';
import type { Logger } from './logger';

export interface HostedOptions {
  store: Store;
  registry: Registry;
  logger: Logger;
  /** Serve CNI calls on this unix socket. */
  cniSocket?: string;
  /** Serve DNS on ADDR[:PORT] (UDP and TCP; port 53 by default). */
  dns?: string;
}

export interface Hosted { stop(): Promise<void>; dnsAddress?: string }

export function parseDnsListen(text: string): { address: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+))(?::(\d{1,5}))?$/.exec(text.trim());
  const port = m?.[3] === undefined ? 53 : Number(m[3]);
  if (!m || port > 65535) throw new MeshworkError('EAGENT_CONFIG', `--dns: expected ADDR[:PORT], got ${JSON.stringify(text)}`);
  return { address: m[1] ?? m[2], port };
}

export async function startHosted(o: HostedOptions): Promise<Hosted> {
  const stops: Array<() => Promise<void>> = [];
  const out: Hosted = { async stop() { for (const s of stops.reverse()) await s().catch(() => {}); } };
  try {
    if (o.cniSocket) {
      const { createCniDaemon } = await import('../cni/daemon');
      const { handle } = await import('../cni/plugin');
      const daemon = createCniDaemon({
        socketPath: o.cniSocket, handle,
        logger: { info: (m) => o.logger.info(m, { component: 'cni-daemon' }), error: (m) => o.logger.error(m, { component: 'cni-daemon' }) },
      });
      await daemon.start();
      stops.push(() => daemon.stop());
      o.logger.info('CNI daemon listening', { socket: daemon.socketPath });
    }
    if (o.dns) {
      const listen = parseDnsListen(o.dns);
      const { createClusterView } = await import('../dns/cluster-view');
      const { createDnsServer } = await import('../dns/server');
      const view = createClusterView({ store: o.store, logger: { warn: (m) => o.logger.warn(m, { component: 'dns' }) } });
      await view.start();
      stops.push(() => view.stop());
      const dns = createDnsServer({ view, listen: [listen], registry: o.registry });
      await dns.start();
      stops.push(() => dns.stop());
      const a = dns.addresses()[0];
      out.dnsAddress = `${a.address}:${a.port}`;
      o.logger.info('DNS listening', { address: a.address, port: a.port });
    }
  } catch (err) {
    await out.stop();
    throw err;
  }
  return out;
}
