/**
 * The sidecar component: two listeners (outbound, inbound) that find each
 * connection's original destination, sniff HTTP from other TCP, and hand it
 * to the HTTP edge or the TCP pass-through; an admin server; a snapshot source
 * whose updates are compiled and swapped whole. start/stop; SIGTERM handling
 * belongs to the CLI, which calls `drain`.
 */
import * as http from 'node:http';
import * as net from 'node:net';
import { loadNative } from '../lib/netns';
import { withContext } from '../lib/errors';
import { compile, buildUpstream, defaultPolicy, ServiceState, type RoutingTable, type Snapshot, type Upstream } from './catalog';
import { EndpointRegistry } from './endpoint';
import { BreakerSet } from './breakers';
import { createAgent } from './forward';
import { connInfo, createHttpEdge, type Destination } from './http';
import { createMetrics, type Direction, type SidecarMetrics } from './metrics';
import { OutlierDetector } from './outlier';
import type { SnapshotSource } from './sources';
import { createStack } from './stack';
import { Deadlines } from './deadlines';
import { proxyTcp } from './tcp';
import { createAdmin } from './admin';
import { createFastEdge, type FastEdge } from './fast';
import { UpstreamPool } from './upstream';

export interface SidecarOptions {
  source: SnapshotSource;
  /** Listen address (default 0.0.0.0) and ports; 0 picks a free port. */
  host?: string;
  outboundPort: number;
  /** Inbound listener; omitted: none. */
  inboundPort?: number;
  adminPort?: number;
  adminHost?: string;
  /** This pod's identity, for the source_* labels and short service names. */
  workload: string;
  namespace: string;
  clusterDomain?: string;
  /** Header timeout: a client slower than this sending its request head is cut off (slowloris). */
  headersTimeoutMs?: number;
  /** Idle keep-alive connection timeout, client side. */
  keepAliveTimeoutMs?: number;
  maxHeaderSize?: number;
  maxBufferedBody?: number;
  /** How long to wait for a client's first bytes before treating the connection as raw TCP. */
  sniffTimeoutMs?: number;
  /** Tells inbound HTTP from TCP; defaults to looking for an HTTP/1 method. */
  random?: () => number;
  now?: () => number;
  log?: (msg: string) => void;
}

export interface Sidecar {
  start(): Promise<void>;
  /** Stops accepting, waits for in-flight requests and connections up to `deadlineMs`, then closes the rest. */
  drain(deadlineMs: number): Promise<void>;
  stop(): Promise<void>;
  readonly ports: { outbound: number; inbound?: number; admin?: number };
  readonly metrics: SidecarMetrics;
  table(): RoutingTable | undefined;
  /** Applies a snapshot now (also what the source calls). */
  apply(s: Snapshot): void;
}

const METHOD_START = /^(GET|HEAD|POST|PUT|DELETE|OPTIONS|PATCH|TRACE|CONNECT|PRI) /;

export function createSidecar(opts: SidecarOptions): Sidecar {
  const random = opts.random ?? Math.random;
  const now = opts.now ?? Date.now;
  const log = opts.log ?? (() => {});
  const metrics = createMetrics({ workload: opts.workload, namespace: opts.namespace });
  const registry = new EndpointRegistry();
  const states = new Map<string, ServiceState>();
  const breakers = new BreakerSet(metrics);
  const outliers = new OutlierDetector(now, metrics);
  const agent = createAgent();
  const localAgent = createAgent();
  const pools: UpstreamPool[] = [];
  // Overall and per-try timeouts of every listener, one list per duration.
  const deadlines = new Deadlines();
  const fastEdges: FastEdge[] = [];
  let current: RoutingTable | undefined;
  let ready = false;
  let draining = false;
  const inboundUpstreams = new Map<number, Upstream>();
  const sockets = new Set<net.Socket>();
  const servers: net.Server[] = [];
  const ports: { outbound: number; inbound?: number; admin?: number } = { outbound: opts.outboundPort };

  function apply(s: Snapshot): void {
    const table = compile(s, { registry, states, random, namespace: opts.namespace, clusterDomain: opts.clusterDomain ?? 'cluster.local' });
    current = table;
    breakers.retain(new Set(registry.all().map((e) => e.key)));
    ready = true;
  }

  // The last answer, reused while the table and the question are the same: most connections
  // ask for one service again and again, and comparing two short strings beats lower-casing,
  // concatenating and hashing them on every request.
  let memo: { t: RoutingTable; host: string; port: number | undefined; up: Upstream } | undefined;

  function resolveOutbound(host: string | undefined, dst: Destination | undefined): Upstream | undefined {
    const t = current;
    if (!t) return undefined;
    if (host) {
      const m = memo;
      if (m !== undefined && m.t === t && m.host === host && m.port === dst?.port) return m.up;
      const up = lookupHost(t, host, dst);
      if (up) { memo = { t, host, port: dst?.port, up }; return up; }
    }
    return dst ? t.byAddress.get(`${dst.address}:${dst.port}`) : undefined;
  }

  function lookupHost(t: RoutingTable, host: string, dst: Destination | undefined): Upstream | undefined {
    const i = host.lastIndexOf(':');
    const hasPort = i > 0 && !host.endsWith(']');
    const name = (hasPort ? host.slice(0, i) : host).toLowerCase();
    const port = hasPort ? host.slice(i + 1) : String(dst?.port ?? 80);
    return t.byHost.get(`${name}:${port}`);
  }

  /** Inbound traffic goes to the application on loopback at the port it was sent to. */
  function resolveInbound(_host: string | undefined, dst: Destination | undefined): Upstream | undefined {
    if (!dst) return undefined;
    let up = inboundUpstreams.get(dst.port);
    if (!up) {
      const name = `${opts.workload}.${opts.namespace}`;
      const ep = registry.get('127.0.0.1', dst.port, {}, `${opts.namespace}/${opts.workload}`);
      up = buildUpstream(name, { port: dst.port, targetPort: dst.port, protocol: 'TCP' }, defaultPolicy(name), [ep], new ServiceState(), random);
      inboundUpstreams.set(dst.port, up);
    }
    return up;
  }

  function makeListener(direction: Direction, port: number): { server: net.Server; http: http.Server } {
    const resolve = direction === 'outbound' ? resolveOutbound : resolveInbound;
    const a = direction === 'outbound' ? agent : localAgent;
    const pool = new UpstreamPool({ deadlines });
    pools.push(pool);
    const stack = createStack({ agent: a, pool, breakers, outliers, random, now, metrics, direction, deadlines });
    const passthrough = (dst: Destination) => (direction === 'inbound' ? { address: '127.0.0.1', port: dst.port } : dst);
    const maxBufferedBody = opts.maxBufferedBody ?? 64 * 1024;
    const edge = createHttpEdge({ direction, stack, agent: a, metrics, resolve, now, random, passthrough, maxBufferedBody });
    const hs = http.createServer({
      maxHeaderSize: opts.maxHeaderSize ?? 16 * 1024,
      headersTimeout: opts.headersTimeoutMs ?? 10_000,
      requestTimeout: 0,
      keepAliveTimeout: opts.keepAliveTimeoutMs ?? 60_000,
      connectionsCheckingInterval: Math.min(1000, opts.headersTimeoutMs ?? 1000),
    }, (req, res) => { void edge.onRequest(req, res); });
    // Connections reach this server by 'connection' events, never by listen(); Node
    // starts its headers-timeout sweep (slowloris defence) on 'listening', so start it here.
    hs.emit('listening');
    hs.on('upgrade', edge.onUpgrade);
    hs.on('clientError', (err: NodeJS.ErrnoException, socket) => {
      if (!socket.writable) { socket.destroy(); return; }
      const code = err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large'
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request';
      socket.end(`HTTP/1.1 ${code}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
    });
    // HTTP/1.1 requests start on the fast path; what it does not take goes to `hs` with the bytes unread.
    const fast = createFastEdge({
      direction, stack, pool, metrics, resolve, passthrough, maxBufferedBody,
      maxHeaderSize: opts.maxHeaderSize ?? 16 * 1024,
      headersTimeoutMs: opts.headersTimeoutMs ?? 10_000,
      keepAliveTimeoutMs: opts.keepAliveTimeoutMs ?? 60_000,
      draining: () => draining,
      handOff(sock, unread) {
        sock.pause();
        if (unread.length) sock.unshift(unread);
        hs.emit('connection', sock);
        sock.resume();
      },
    });
    fastEdges.push(fast);
    const tcpDeps = { direction, metrics, random, now, connectTimeoutMs: 5000 };
    const server = net.createServer({ noDelay: true }, (sock) => {
      sockets.add(sock);
      sock.once('close', () => sockets.delete(sock));
      sock.on('error', () => sock.destroy());
      let dst: Destination | undefined;
      try {
        const d = loadNative().originalDst((sock as unknown as { _handle: { fd: number } })._handle.fd);
        // Not redirected: conntrack reports our own address; treat as no original destination.
        if (d.port !== sock.localPort || d.address !== sock.localAddress?.replace(/^::ffff:/, '')) dst = { address: d.address, port: d.port };
      } catch { /* not a redirected connection: Host header decides */ }
      const sourceIp = (sock.remoteAddress ?? '').replace(/^::ffff:/, '');
      connInfo.set(sock, { dst, sourceIp });
      const up = resolve(undefined, dst);
      if (up?.tcpOnly) { proxyTcp(tcpDeps, sock, up, dst, sourceIp); return; }
      const sniff = setTimeout(() => { sock.removeListener('data', onFirst); toTcp(); }, opts.sniffTimeoutMs ?? 500);
      const toTcp = () => proxyTcp(tcpDeps, sock, up, dst && (direction === 'inbound' ? { address: '127.0.0.1', port: dst.port } : dst), sourceIp);
      const onFirst = (chunk: Buffer) => {
        clearTimeout(sniff);
        if (METHOD_START.test(chunk.subarray(0, 8).toString('latin1'))) {
          fast.accept(sock, chunk, dst, sourceIp);
        } else {
          sock.pause();
          sock.unshift(chunk);
          toTcp();
        }
      };
      sock.once('data', onFirst);
    });
    return { server, http: hs };
  }

  const listen = (server: net.Server, port: number, host: string): Promise<number> => new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => { server.removeListener('error', reject); resolve((server.address() as net.AddressInfo).port); });
  });

  const admin = createAdmin({
    metrics, isReady: () => ready && !draining, table: () => current, inbound: () => [...inboundUpstreams.values()], now,
  });
  const httpServers: http.Server[] = [];

  return {
    ports,
    metrics,
    table: () => current,
    apply,
    async start() {
      try {
        await opts.source.start((s) => {
          try { apply(s); metrics.reload('success'); } catch (err) { metrics.reload('failure'); log(withContext('snapshot refused', err).message); }
        }, (err) => { metrics.reload('failure'); log(withContext('snapshot refused, keeping the previous one', err).message); });
        const host = opts.host ?? '0.0.0.0';
        const out = makeListener('outbound', opts.outboundPort);
        servers.push(out.server); httpServers.push(out.http);
        ports.outbound = await listen(out.server, opts.outboundPort, host);
        if (opts.inboundPort !== undefined) {
          const inb = makeListener('inbound', opts.inboundPort);
          servers.push(inb.server); httpServers.push(inb.http);
          ports.inbound = await listen(inb.server, opts.inboundPort, host);
        }
        if (opts.adminPort !== undefined) {
          servers.push(admin);
          ports.admin = await listen(admin, opts.adminPort, opts.adminHost ?? host);
        }
      } catch (err) {
        await this.stop();
        throw withContext('sidecar start', err);
      }
    },
    async drain(deadlineMs) {
      draining = true;
      for (const s of servers) if (s !== admin) s.close();
      for (const h of httpServers) h.closeIdleConnections();
      for (const f of fastEdges) f.closeIdle();
      const until = Date.now() + deadlineMs;
      while (sockets.size > 0 && Date.now() < until) {
        for (const h of httpServers) h.closeIdleConnections();
        for (const f of fastEdges) f.closeIdle();
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    async stop() {
      draining = true;
      await opts.source.stop();
      for (const s of servers) s.close();
      for (const sock of sockets) sock.destroy();
      for (const h of httpServers) { h.closeAllConnections(); h.close(() => {}); }
      admin.closeAllConnections();
      breakers.stop();
      outliers.stop();
      agent.destroy();
      localAgent.destroy();
      for (const p of pools) p.destroy();
      deadlines.stop();
    },
  };
}
