/**
 * Test pods for the sidecar tests: tiny HTTP servers that report their
 * version and name, can be slowed, made to fail, stopped and restarted; and
 * helpers to build Service/TrafficPolicy objects and to fire many requests.
 */
import * as http from 'node:http';
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import type { Service, TrafficPolicy, TrafficPolicySpec } from '../../policies/model';
import type { EndpointRecord } from '../../store/records';

export interface Backend {
  name: string;
  version: string;
  address: string;
  port: number;
  hits: number;
  /** Requests seen with a Host ending in -shadow (mirrored). */
  shadowHits: number;
  delayMs: number;
  status: number;
  stop(): Promise<void>;
  start(): Promise<void>;
}

function listenOn(server: http.Server, port: number, address: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, address, () => { server.removeListener('error', reject); resolve((server.address() as AddressInfo).port); });
  });
}

/** One server per version on 127.0.0.(2+i), all on one port (a Service has one targetPort). */
export async function startBackends(versions: string[]): Promise<{ backends: Backend[]; port: number; stopAll(): Promise<void> }> {
  for (let tries = 0; ; tries++) {
    const made: Backend[] = [];
    try {
      let port = 0;
      for (let i = 0; i < versions.length; i++) {
        const b = makeBackend(`pod${i}`, versions[i], `127.0.0.${2 + i}`);
        port = await b.listen(port);
        made.push(b);
      }
      return { backends: made, port, stopAll: async () => { await Promise.all(made.map((b) => b.stop())); } };
    } catch (err) {
      await Promise.all(made.map((b) => b.stop()));
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || tries > 20) throw err;
    }
  }
}

function makeBackend(name: string, version: string, address: string): Backend & { listen(port: number): Promise<number> } {
  let server: http.Server | undefined;
  const b = {
    name, version, address, port: 0, hits: 0, shadowHits: 0, delayMs: 0, status: 200,
    async listen(port: number) {
      server = http.createServer((req, res) => {
        if (String(req.headers.host).includes('-shadow')) b.shadowHits++; else b.hits++;
        const reply = () => {
          const body = JSON.stringify({ name, version, url: req.url });
          res.writeHead(b.status, { 'content-type': 'application/json', 'x-version': version, 'x-pod': name });
          res.end(body);
        };
        req.resume();
        if (b.delayMs) setTimeout(reply, b.delayMs); else reply();
      });
      server.keepAliveTimeout = 30_000;
      b.port = await listenOn(server, port, address);
      return b.port;
    },
    async stop() {
      const s = server;
      server = undefined;
      if (!s) return;
      s.closeAllConnections();
      await new Promise((r) => s.close(r));
    },
    async start() { await b.listen(b.port); },
  };
  return b;
}

export function service(name: string, port: number, targetPort: number, selector: Record<string, string>, clusterIP?: string, appProtocol?: 'tcp' | 'http'): Service {
  return {
    kind: 'Service', metadata: { name, namespace: 'default', labels: {} },
    spec: { type: 'ClusterIP', selector, clusterIP, ports: [{ port, targetPort, protocol: 'TCP', appProtocol }] },
  };
}

export function policy(spec: Partial<TrafficPolicySpec> & { service: string }): TrafficPolicy {
  return {
    kind: 'TrafficPolicy', metadata: { name: `${spec.service}-policy`, namespace: 'default', labels: {} },
    spec: { subsets: [], loadBalancer: { type: 'round-robin' }, routes: [], ...spec },
  };
}

export function endpointsOf(backends: Array<{ name: string; version: string; address: string }>, app: string): EndpointRecord[] {
  return backends.map((b) => ({
    network: 'test', containerId: b.name, ifname: 'eth0', namespace: 'default', pod: b.name, node: 'n1',
    ips: [b.address], labels: { app, version: b.version }, ready: true,
  }));
}

export const canarySubsets = [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2' } }];

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

export interface Reply { status: number; headers: http.IncomingHttpHeaders; body: string }

export function get(port: number, host: string, path = '/', headers: Record<string, string> = {}, opts: { agent?: http.Agent | false; method?: string; body?: string } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method: opts.method ?? 'GET', headers: { host, ...headers }, agent: opts.agent ?? agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** Fires `n` requests, `concurrency` at a time; returns each reply (or error). */
export async function load(n: number, concurrency: number, one: (i: number) => Promise<Reply>): Promise<Array<Reply | Error>> {
  const out: Array<Reply | Error> = new Array(n);
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < n) {
      const i = next++;
      try { out[i] = await one(i); } catch (err) { out[i] = err as Error; }
    }
  }));
  return out;
}

export function versionOf(r: Reply | Error): string {
  return r instanceof Error ? `error:${r.message}` : r.status !== 200 ? `status:${r.status}` : String(r.headers['x-version']);
}

export function tally(rs: Array<Reply | Error>, f: (r: Reply | Error) => string = versionOf): Record<string, number> {
  const t: Record<string, number> = {};
  for (const r of rs) t[f(r)] = (t[f(r)] ?? 0) + 1;
  return t;
}

/** A raw TCP connection that sends `data` and resolves with whatever comes back until close or `until` matches. */
export function rawExchange(port: number, data: string | Buffer, until?: (text: string) => boolean, host = '127.0.0.1'): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, host);
    let got = '';
    s.on('data', (d) => { got += d.toString('latin1'); if (until?.(got)) { s.destroy(); resolve(got); } });
    s.on('end', () => resolve(got));
    s.on('close', () => resolve(got));
    s.on('error', reject);
    s.write(data);
  });
}
