/**
 * The only layer that touches sockets for HTTP: one request to the endpoint
 * the balancer chose, over a shared keep-alive pool. Failures become typed
 * UpstreamErrors telling a connect failure (nothing was sent) from a reset (the
 * upstream went away mid-exchange) so retries can match `retryOn`.
 */
import * as http from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { UpstreamError } from './errors';
import type { Handler, RequestCtx } from './context';
import type { UpstreamPool } from './upstream';

/** Hop-by-hop headers (RFC 9110 §7.6.1) never cross the proxy. */
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'proxy-authorization', 'proxy-authenticate']);
const CONNECT_CODES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'ETIMEDOUT']);

export function stripHopHeaders(h: IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  const named = typeof h.connection === 'string' ? h.connection.toLowerCase().split(',').map((s) => s.trim()) : undefined;
  for (const k in h) {
    const v = h[k];
    if (v === undefined || HOP.has(k) || (named && named.includes(k))) continue;
    out[k] = v;
  }
  return out;
}

export function createAgent(opts: { maxFreeSockets?: number } = {}): http.Agent {
  return new http.Agent({ keepAlive: true, noDelay: true, maxSockets: Infinity, maxFreeSockets: opts.maxFreeSockets ?? 256, scheduling: 'lifo' });
}

/**
 * Sends one attempt to `ctx.endpoint`; resolves with the response headers received.
 * Requests of the fast path go over the raw socket pool, others through node:http.
 */
export function createForward(agent: http.Agent, pool: UpstreamPool): Handler {
  return (ctx: RequestCtx) => {
    const ep = ctx.endpoint!;
    if (ctx.fastHead === undefined) return sendTo(agent, ctx, ep.address, ep.port, ep.key);
    return sendFast(pool, ctx, ep.address, ep.port, ep.key);
  };
}

/** One fast-path attempt: the head rendered from the parsed request, then the buffered body. */
export function sendFast(pool: UpstreamPool, ctx: RequestCtx, address: string, port: number, label: string) {
  return pool.send(address, port, label, ctx.req.method!, ctx.fastHead!, ctx.body, ctx.perTryTimeoutMs, ctx);
}

export function sendTo(agent: http.Agent, ctx: RequestCtx, address: string, port: number, label: string, headers?: Record<string, string | string[]>): Promise<IncomingMessage> {
  return new Promise<IncomingMessage>((resolve, reject) => {
    const src = ctx.req;
    let connected = false;
    let timer: NodeJS.Timeout | undefined;
    let settled = false;
    const fail = (kind: 'connect-failure' | 'reset' | 'timeout', cause: unknown) => {
      if (settled) return;
      settled = true;
      if (timer) clearTimeout(timer);
      up.destroy();
      reject(new UpstreamError(kind, label, cause));
    };
    const up = http.request({
      agent, host: address, port, method: src.method, path: src.url,
      headers: headers ?? stripHopHeaders(src.headers), setHost: false,
    });
    up.on('socket', (s) => {
      if (!s.connecting) connected = true;
      else s.once('connect', () => { connected = true; });
    });
    up.on('response', (res) => {
      if (settled) { res.resume(); return; }
      settled = true;
      if (timer) clearTimeout(timer);
      ctx.cancel = undefined;
      resolve(res);
    });
    up.on('error', (err: NodeJS.ErrnoException) => {
      fail(!connected && CONNECT_CODES.has(err.code ?? '') ? 'connect-failure' : connected ? 'reset' : 'connect-failure', err);
    });
    if (ctx.perTryTimeoutMs) timer = setTimeout(() => fail('timeout', new Error(`no response within ${ctx.perTryTimeoutMs} ms`)), ctx.perTryTimeoutMs);
    ctx.cancel = () => fail('timeout', new Error('request timed out'));
    if (ctx.body) up.end(ctx.body.length > 0 ? ctx.body : undefined);
    else (src as IncomingMessage).pipe(up);
  });
}
