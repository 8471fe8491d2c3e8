/**
 * The HTTP edge: reads a request off a client connection, finds its upstream,
 * runs the layer stack and writes what comes back, or, on failure, the status
 * and `x-meshwork-*` header the error maps to. The only place a response to
 * the client is written. WebSocket upgrades are passed through as bytes.
 */
import * as http from 'node:http';
import * as net from 'node:net';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Upstream } from './catalog';
import type { Handler, RequestCtx } from './context';
import { responseFor, UpstreamError } from './errors';
import { sendTo, stripHopHeaders } from './forward';
import type { Direction, SidecarMetrics } from './metrics';
import { chooseEndpoint } from './pick';

export interface Destination { address: string; port: number }

export interface HttpEdgeDeps {
  direction: Direction;
  stack: Handler;
  agent: http.Agent;
  metrics?: SidecarMetrics;
  /** Finds the upstream of a request from its Host header and the connection's original destination. */
  resolve(host: string | undefined, dst: Destination | undefined): Upstream | undefined;
  /** Where an unknown destination goes (the original destination, rewritten for inbound). */
  passthrough(dst: Destination): Destination;
  /** Bodies up to this size are buffered so they can be retried or mirrored. */
  maxBufferedBody: number;
  now: () => number;
  random: () => number;
}

const EMPTY = Buffer.alloc(0);
/** Per-connection facts the listener found before handing the socket to the HTTP server. */
export const connInfo = new WeakMap<object, { dst?: Destination; sourceIp: string }>();

export function createHttpEdge(deps: HttpEdgeDeps) {
  const { metrics, direction } = deps;

  function record(up: Upstream | undefined, subset: string, route: string, code: number, start: number): void {
    metrics?.requestSeries(direction, up?.name ?? 'unknown', subset, route, code).record((performance.now() - start) / 1000);
  }

  function fail(res: ServerResponse, err: unknown): number {
    const r = responseFor(err);
    if (res.headersSent) { res.destroy(); return r.status; }
    // Nobody to answer: recorded as response code 0, as Istio's metrics do for a downstream disconnect.
    if (res.destroyed) return 0;
    const body = `${err instanceof Error ? err.message : String(err)}\n`;
    res.writeHead(r.status, { [r.header]: r.reason, 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) });
    res.end(body);
    return r.status;
  }

  async function onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const start = performance.now();
    const info = connInfo.get(req.socket);
    const up = deps.resolve(req.headers.host, info?.dst);
    let body: Buffer | null = EMPTY;
    const len = req.headers['content-length'];
    if (req.headers['transfer-encoding'] !== undefined || (len !== undefined && len !== '0')) {
      body = len !== undefined && Number(len) <= deps.maxBufferedBody ? await collect(req) : null;
    }
    if (!up) return passthrough(req, res, body, info?.dst, start);
    const ctx: RequestCtx = { req, body, upstream: up, sourceIp: info?.sourceIp ?? req.socket.remoteAddress ?? '' };
    res.once('close', () => { if (!res.writableFinished) { ctx.expired = true; ctx.cancel?.(); } });
    let upRes: IncomingMessage;
    try {
      // Requests of this edge carry no fastHead, so forward answers through node:http.
      upRes = await deps.stack(ctx) as IncomingMessage;
    } catch (err) {
      const code = fail(res, err);
      record(up, ctx.subset?.name ?? '', ctx.route?.name ?? '', code, start);
      return;
    }
    relay(upRes, res, ctx.extraHeaders);
    record(up, ctx.subset?.name ?? '', ctx.route!.name, upRes.statusCode!, start);
  }

  async function passthrough(req: IncomingMessage, res: ServerResponse, body: Buffer | null, dst: Destination | undefined, start: number): Promise<void> {
    if (!dst) {
      const code = fail(res, new UpstreamError('connect-failure', req.headers.host ?? '?', new Error(`no service known for host ${req.headers.host ?? '(none)'} and no original destination`)));
      record(undefined, '', '', code, start);
      return;
    }
    const to = deps.passthrough(dst);
    const ctx: RequestCtx = { req, body, upstream: undefined as unknown as Upstream, sourceIp: '' };
    try {
      const upRes = await sendTo(deps.agent, ctx, to.address, to.port, `${to.address}:${to.port}`);
      relay(upRes, res, undefined);
      record(undefined, '', 'passthrough', upRes.statusCode!, start);
    } catch (err) {
      record(undefined, '', 'passthrough', fail(res, err), start);
    }
  }

  function onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const info = connInfo.get(socket);
    const up = deps.resolve(req.headers.host, info?.dst);
    const ep = up ? chooseEndpoint(up, req, deps.random, deps.now(), info?.sourceIp ?? '') : undefined;
    const to = ep ? { address: ep.address, port: ep.port } : info?.dst ? deps.passthrough(info.dst) : undefined;
    if (!to) { socket.end('HTTP/1.1 503 Service Unavailable\r\nx-meshwork-error: no-healthy-upstream\r\ncontent-length: 0\r\n\r\n'); return; }
    const upstream = net.connect(to.port, to.address);
    const lines = [`${req.method} ${req.url} HTTP/1.1`];
    for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
    upstream.write(`${lines.join('\r\n')}\r\n\r\n`);
    if (head.length) upstream.write(head);
    upstream.pipe(socket).pipe(upstream);
    const close = () => { upstream.destroy(); socket.destroy(); };
    upstream.on('error', () => {
      if (!upstream.bytesRead && socket.writable) socket.end('HTTP/1.1 502 Bad Gateway\r\nx-meshwork-error: upstream-connect-failure\r\ncontent-length: 0\r\n\r\n');
      close();
    });
    socket.on('error', close);
    socket.on('close', close);
    upstream.on('close', close);
  }

  return { onRequest, onUpgrade };
}

function relay(upRes: IncomingMessage, res: ServerResponse, extra: Record<string, string> | undefined): void {
  const headers = stripHopHeaders(upRes.headers);
  if (extra) Object.assign(headers, extra);
  res.writeHead(upRes.statusCode!, upRes.statusMessage, headers);
  upRes.pipe(res);
  upRes.once('aborted', () => res.destroy());
  upRes.once('error', () => res.destroy());
}

function collect(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)));
    req.on('error', reject);
  });
}
