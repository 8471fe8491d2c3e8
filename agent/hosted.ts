/**
 * Servers the agent hosts beside the overlay, each optional and loaded only
 * when asked for: the resident CNI daemon (cni/daemon.ts, so plugin calls
 * skip Node's start-up) and the embedded DNS server (dns/server.ts over the
 * cluster view of the same store), sharing the agent's metrics registry.
 */
import type { Registry } from 'prom-client';
import type { Store } from '../store/types';
import type { Upstream } from '../dns/upstreams';
import { MeshworkError, withContext } from '../lib/errors';
import type { Logger } from './logger';

export interface HostedOptions {
  store: Store;
  registry: Registry;
  logger: Logger;
  /** Serve CNI calls on this unix socket. */
  cniSocket?: string;
  /** Serve DNS (from `dnsSettings`, checked before the agent starts). */
  dns?: DnsSettings;
}

export interface DnsSettings {
  /** ADDR[:PORT] to serve on (UDP and TCP; port 53 by default). */
  listen: { address: string; port: number };
  /** The zone it answers (default cluster.local). */
  zone: string;
  /** Where it forwards other names (default: resolv.conf without loopback). */
  upstreams?: Upstream[];
}

export interface Hosted { stop(): Promise<void>; dnsAddress?: string }

export function parseDnsListen(text: string): { address: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+))(?::(\d{1,5}))?$/.exec(text.trim());
  const port = m?.[3] === undefined ? 53 : Number(m[3]);
  if (!m || port > 65535) throw new MeshworkError('EAGENT_CONFIG', `--dns: expected ADDR[:PORT], got ${JSON.stringify(text)}`);
  return { address: m[1] ?? m[2], port };
}

/** The DNS flags, checked once, before the agent starts, so a typo changes nothing. */
export async function dnsSettings(o: { dns: string; dnsZone?: string; dnsUpstreams?: string[] }): Promise<DnsSettings> {
  const { parseZone } = await import('../dns/cluster-zone');
  const { parseUpstream } = await import('../dns/upstreams');
  const upstream = (u: string) => { try { return parseUpstream(u); } catch (err) { throw withContext('--dns-upstream', err); } };
  return {
    listen: parseDnsListen(o.dns),
    zone: parseZone(o.dnsZone ?? 'cluster.local', '--dns-zone'),
    upstreams: o.dnsUpstreams?.length ? o.dnsUpstreams.map(upstream) : undefined,
  };
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
      const { listen, zone, upstreams } = o.dns;
      const { createClusterView } = await import('../dns/cluster-view');
      const { createDnsServer } = await import('../dns/server');
      const logger = { warn: (m: string) => o.logger.warn(m, { component: 'dns' }) };
      const view = createClusterView({ store: o.store, logger });
      await view.start();
      stops.push(() => view.stop());
      const dns = createDnsServer({ view, listen: [listen], registry: o.registry, zone, upstreams, logger });
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
