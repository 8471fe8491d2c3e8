/**
 * Raw TCP pass-through: one upstream connection per client connection,
 * load-balanced per connection (a failed connect tries another endpoint), bytes
 * copied untouched both ways and counted.
 */
import * as net from 'node:net';
import type { Upstream } from './catalog';
import type { Endpoint } from './endpoint';
import type { Direction, SidecarMetrics } from './metrics';
import { chooseEndpoint } from './pick';
import type { Destination } from './http';

export interface TcpDeps {
  direction: Direction;
  metrics?: SidecarMetrics;
  random: () => number;
  now: () => number;
  connectTimeoutMs: number;
}

const CONNECT_TRIES = 3;

export function proxyTcp(deps: TcpDeps, client: net.Socket, up: Upstream | undefined, fallback: Destination | undefined, sourceIp: string): void {
  const service = up?.name ?? 'unknown';
  deps.metrics?.tcpOpened(deps.direction, service);
  const tried = new Set<Endpoint>();
  let upstream: net.Socket | undefined;
  let done = false;
  const finish = () => {
    if (done) return;
    done = true;
    const sent = upstream?.bytesWritten ?? 0;
    const received = upstream?.bytesRead ?? 0;
    upstream?.destroy();
    client.destroy();
    deps.metrics?.tcpClosed(deps.direction, service, sent, received);
  };
  client.on('error', finish);
  client.on('close', finish);

  const attempt = (n: number): void => {
    if (done) return;
    const ep = up ? chooseEndpoint(up, undefined, deps.random, deps.now(), sourceIp, tried) : undefined;
    const to = up ? ep : fallback;
    if (!to) { finish(); return; }
    if (ep) tried.add(ep);
    let connected = false;
    const sock = net.connect({ host: to.address, port: to.port });
    upstream = sock;
    sock.setTimeout(deps.connectTimeoutMs, () => sock.destroy(new Error('connect timeout')));
    sock.once('connect', () => {
      connected = true;
      if (ep) ep.inflight++;
      sock.setTimeout(0);
      sock.setNoDelay(true);
      client.pipe(sock);
      sock.pipe(client);
      client.resume();
    });
    sock.on('error', () => {
      // Never connected: another endpoint may answer.
      if (!connected && up && n + 1 < CONNECT_TRIES) attempt(n + 1); else finish();
    });
    sock.on('close', () => {
      if (!connected) return;
      if (ep) ep.inflight--;
      finish();
    });
  };
  attempt(0);
}
