/**
 * `meshwork dns serve`: runs the embedded DNS server on its own (the agent
 * hosts the same server in-process). Flags are validated here, at the edge.
 */
import * as http from 'node:http';
import * as os from 'node:os';
import { isIP } from 'node:net';
import type { Command } from 'commander';
import { Registry } from 'prom-client';
import { MeshworkError } from '../lib/errors';
import { openStore } from '../store/open';
import { createClusterView } from '../dns/cluster-view';
import { createDnsServer, type ListenAddress } from '../dns/server';
import { runDnsWorkers, isDnsWorker } from '../dns/workers';
import { defaultUpstreams, parseUpstream, type Upstream } from '../dns/upstreams';
import { parseZone } from '../dns/cluster-zone';

export function parseListen(s: string): ListenAddress {
  const t = s.trim();
  // "[v6]:port", "v6" (several colons, no port), "v4:port" or "v4".
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(t) ?? (t.split(':').length > 2 ? [t, t, undefined] : /^([^:]+)(?::(\d+))?$/.exec(t));
  const address = m?.[1] ?? '';
  const port = m?.[2] !== undefined ? Number(m[2]) : 53;
  if (!m || !isIP(address) || port > 65535) {
    throw new MeshworkError('EUSAGE', `--listen ${s}: expected ADDRESS[:PORT] (e.g. 10.0.0.1:53 or [fd00::1]:53)`);
  }
  return { address, port };
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

interface ServeFlags {
  listen?: string[]; zone: string; upstream?: string[]; upstreams: boolean; store?: string;
  workers: string; ttl: string; metrics?: string;
}

export function register(program: Command): void {
  const dns = program.command('dns').description('the embedded DNS server (cluster zone, container names, forwarding cache)');
  dns.command('serve')
    .description('serve DNS for the cluster zone and container names, forwarding everything else')
    .option('--listen <addr[:port]>', 'address to serve on (repeatable; default 127.0.0.1:53)', collect)
    .option('--zone <zone>', 'cluster zone', 'cluster.local')
    .option('--upstream <ip[:port]>', 'upstream resolver (repeatable; default: /etc/resolv.conf without loopback)', collect)
    .option('--no-upstreams', 'answer only our own names (REFUSED for the rest)')
    .option('--store <spec>', 'cluster store (file:/path, etcd:http://host:2379, memory:); default $MESHWORK_STORE or file:/var/lib/meshwork')
    .option('--workers <n>', 'worker processes sharing the sockets (0: serve in this process; "auto": one per core)', '0')
    .option('--ttl <seconds>', 'TTL of cluster records', '5')
    .option('--metrics <addr:port>', 'serve Prometheus metrics on http://addr:port/metrics')
    .action(async (f: ServeFlags) => {
      const listen = (f.listen?.length ? f.listen : ['127.0.0.1:53']).map(parseListen);
      let upstreams: Upstream[] = [];
      if (f.upstreams) upstreams = f.upstream?.length ? f.upstream.map(parseUpstream) : defaultUpstreams();
      const workers = f.workers === 'auto' ? os.availableParallelism() : Number(f.workers);
      if (!Number.isInteger(workers) || workers < 0 || workers > 64) throw new MeshworkError('EUSAGE', `--workers ${f.workers}: expected 0..64 or "auto"`);
      const ttl = Number(f.ttl);
      if (!Number.isInteger(ttl) || ttl < 0) throw new MeshworkError('EUSAGE', `--ttl ${f.ttl}: expected a whole number of seconds`);
      const logger = { warn: (m: string) => process.stderr.write(`meshwork dns: ${m}\n`) };
      const registry = new Registry();
      const serverOpts = { zone: parseZone(f.zone, '--zone'), upstreams, listen, ttl, logger };
      const openView = async () => {
        const store = await openStore(f.store ?? process.env.MESHWORK_STORE);
        const view = createClusterView({ store, logger });
        await view.start();
        return { view, close: async () => { await view.stop(); await store.close(); } };
      };

      let stop: () => Promise<void>;
      if (workers > 0) {
        const running = await runDnsWorkers({ workers, openView, server: serverOpts, registry, logger });
        // A worker that cannot listen (address in use, ...) fails the whole command, leaving nothing behind.
        await running.ready.catch(async (err) => { await running.stop(); throw new MeshworkError('EDNSLISTEN', (err as Error).message, { cause: err }); });
        stop = running.stop;
      } else {
        const { view, close } = await openView();
        const server = createDnsServer({ ...serverOpts, view, registry });
        await server.start().catch(async (err) => { await close(); throw err; });
        stop = async () => { await server.stop(); await close(); };
      }
      if (isDnsWorker()) return; // workers live until the primary stops them
      let metricsServer: http.Server | undefined;
      if (f.metrics) {
        const m = parseListen(f.metrics);
        metricsServer = http.createServer((req, res) => {
          if (req.url !== '/metrics') { res.writeHead(404).end(); return; }
          registry.metrics().then((body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body), () => res.writeHead(500).end());
        }).listen(m.port, m.address);
      }
      process.stderr.write(`meshwork dns: serving ${f.zone} on ${listen.map((l) => `${l.address}:${l.port}`).join(', ')}${workers ? ` with ${workers} workers` : ''}\n`);
      await new Promise<void>((resolve) => {
        const done = () => resolve();
        process.once('SIGINT', done);
        process.once('SIGTERM', done);
      });
      metricsServer?.close();
      await stop();
    });
}
