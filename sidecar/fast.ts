/**
 * The HTTP/1.1 fast path, client side: request heads are parsed straight off
 * the socket (sidecar/h1parse.ts), each request runs the same layer stack as
 * the node:http edge, and the response is written back with its framing
 * passed through untouched. Requests are handled one at a time per connection
 * (pipelined ones wait in the buffer). The first request the fast path does not
 * take (upgrade, expect, chunked or large body, HTTP/1.0, anything malformed or
 * oversized) hands the connection, bytes included, to the node:http server for
 * the rest of its life, so odd traffic is answered exactly as before.
 */
import { STATUS_CODES } from 'node:http';
import type * as net from 'node:net';
import type { Upstream } from './catalog';
import type { Handler, RequestCtx } from './context';
import { responseFor, UpstreamError } from './errors';
import { sendFast } from './forward';
import { HeadMemo, parseRequestHeadMemo, type RequestHead } from './h1parse';
import type { Destination } from './http';
import type { Direction, SidecarMetrics } from './metrics';
import type { BodySink, FastResponse, UpstreamPool } from './upstream';

export interface FastEdgeDeps {
  direction: Direction;
  stack: Handler;
  pool: UpstreamPool;
  metrics?: SidecarMetrics;
  resolve(host: string | undefined, dst: Destination | undefined): Upstream | undefined;
  passthrough(dst: Destination): Destination;
  /** Requests with larger bodies go to node:http, which streams them. */
  maxBufferedBody: number;
  maxHeaderSize: number;
  headersTimeoutMs: number;
  keepAliveTimeoutMs: number;
  /** Gives the connection, with the bytes not yet handled put back, to the node:http server. */
  handOff(sock: net.Socket, unread: Buffer): void;
  /** True while draining: responses then close their connection. */
  draining(): boolean;
}

const EMPTY = Buffer.alloc(0);

/** The request as layers see it (method, url, lower-case headers). */
class FastRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: Record<string, string>;
  constructor(h: RequestHead) { this.method = h.method; this.url = h.url; this.headers = h.headers; }
}

export interface FastEdge {
  accept(sock: net.Socket, first: Buffer, dst: Destination | undefined, sourceIp: string): void;
  /** Closes connections with no request in flight (drain). */
  closeIdle(): void;
}

export function createFastEdge(deps: FastEdgeDeps): FastEdge {
  const conns = new Set<ClientConn>();
  // Idle keep-alive connections are closed by one sweep over all of them, not by a socket
  // timeout each: Node re-arms a socket's timer on every read and write, a timer-list
  // insertion per message on the hot path. Closing happens within a quarter of the timeout late.
  let sweeper: NodeJS.Timeout | undefined;
  const sweep = () => {
    const now = Date.now();
    for (const c of conns) c.closeIfIdleSince(now - deps.keepAliveTimeoutMs);
    if (conns.size === 0 && sweeper) { clearInterval(sweeper); sweeper = undefined; }
  };
  return {
    accept(sock, first, dst, sourceIp) {
      if (!sweeper) {
        sweeper = setInterval(sweep, Math.min(1000, Math.max(25, deps.keepAliveTimeoutMs / 4)));
        sweeper.unref();
      }
      new ClientConn(deps, conns, sock, dst, sourceIp).onData(first);
    },
    closeIdle() { for (const c of conns) c.closeIfIdle(); },
  };
}

/** One client connection; listeners bound once, one request in flight at a time. */
class ClientConn implements BodySink {
  private buf: Buffer = EMPTY;
  /** A request is being served (pipelined bytes wait in `buf`). */
  private busy = false;
  private closed = false;
  private closeAfter = false;
  /** This connection's last request head, for the next identical one. */
  private readonly heads = new HeadMemo<RequestHead>();
  /** Last request bytes or response end, ms epoch (the keep-alive sweep reads it). */
  private lastActive = Date.now();
  private headTimer: NodeJS.Timeout | undefined;
  private ctx: RequestCtx | undefined;
  private res: FastResponse | undefined;
  private readonly onDataBound = (c: Buffer) => this.onData(c);
  private readonly onCloseBound = () => this.onClose();

  constructor(private readonly deps: FastEdgeDeps, private readonly conns: Set<ClientConn>, private readonly sock: net.Socket,
    private readonly dst: Destination | undefined, private readonly sourceIp: string) {
    conns.add(this);
    sock.on('data', this.onDataBound);
    sock.on('close', this.onCloseBound);
  }

  onData(chunk: Buffer): void {
    this.lastActive = Date.now();
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    if (!this.busy) this.next();
    // A client pipelining far ahead waits for the responses (bounded buffer).
    else if (this.buf.length > this.deps.maxHeaderSize + this.deps.maxBufferedBody) this.sock.pause();
  }

  closeIfIdle(): void {
    if (!this.busy && !this.closed) this.sock.end();
  }

  /** Keep-alive timeout: no request in flight and nothing heard since `since` (ms epoch). */
  closeIfIdleSince(since: number): void {
    if (!this.busy && !this.closed && this.lastActive < since) this.sock.destroy();
  }

  private next(): void {
    if (this.closed || this.buf.length === 0) return;
    const head = parseRequestHeadMemo(this.buf, this.deps.maxHeaderSize, this.heads);
    if (head === 'incomplete') { this.armHeadTimer(); return; }
    if (head === 'fallback' || head.contentLength > this.deps.maxBufferedBody) { this.handOff(); return; }
    // The head is complete: like node:http (requestTimeout 0), a body may take its time.
    if (this.headTimer) { clearTimeout(this.headTimer); this.headTimer = undefined; }
    const total = head.length + head.contentLength;
    if (this.buf.length < total) return;
    const body = head.contentLength > 0 ? this.buf.subarray(head.length, total) : EMPTY;
    this.buf = this.buf.length === total ? EMPTY : this.buf.subarray(total);
    this.busy = true;
    this.closeAfter = head.close;
    void this.serve(head, body);
  }

  /** Slowloris defence: a head must be complete within headersTimeoutMs of its first byte. */
  private armHeadTimer(): void {
    if (this.headTimer) return;
    this.headTimer = setTimeout(() => {
      this.headTimer = undefined;
      if (this.closed || this.busy) return;
      this.sock.end('HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
      this.closed = true;
    }, this.deps.headersTimeoutMs);
  }

  private handOff(): void {
    if (this.headTimer) { clearTimeout(this.headTimer); this.headTimer = undefined; }
    this.conns.delete(this);
    this.sock.removeListener('data', this.onDataBound);
    this.sock.removeListener('close', this.onCloseBound);
    this.closed = true;
    const unread = this.buf;
    this.buf = EMPTY;
    this.deps.handOff(this.sock, unread);
  }

  private async serve(head: RequestHead, body: Buffer): Promise<void> {
    const { deps } = this;
    const start = performance.now();
    const req = new FastRequest(head);
    const up = deps.resolve(head.headers.host, this.dst);
    const ctx: RequestCtx = { req, body, upstream: up as Upstream, sourceIp: this.sourceIp, fastHead: head.upstream ??= `${head.method} ${head.url} HTTP/1.1\r\n${head.forward}\r\n` };
    this.ctx = ctx;
    let res: FastResponse;
    try {
      if (up) res = await deps.stack(ctx) as FastResponse;
      else if (this.dst) { const to = deps.passthrough(this.dst); res = await sendFast(deps.pool, ctx, to.address, to.port, `${to.address}:${to.port}`); }
      else throw new UpstreamError('connect-failure', head.headers.host, new Error(`no service known for host ${head.headers.host} and no original destination`));
    } catch (err) {
      this.ctx = undefined;
      const code = this.fail(err);
      this.record(up, ctx, up ? ctx.route?.name ?? '' : this.dst ? 'passthrough' : '', code, start);
      return;
    }
    this.ctx = undefined;
    this.record(up, ctx, up ? ctx.route!.name : 'passthrough', res.statusCode, start);
    if (this.closed) { res.resume(); res.abandon(); return; }
    this.respond(res, ctx.extraHeaders);
  }

  private record(up: Upstream | undefined, ctx: RequestCtx, route: string, code: number, start: number): void {
    this.deps.metrics?.requestSeries(this.deps.direction, up?.name ?? 'unknown', ctx.subset?.name ?? '', route, code).record((performance.now() - start) / 1000);
  }

  private respond(res: FastResponse, extra: Record<string, string> | undefined): void {
    const h = res.head;
    if (h.framing === 'close' || this.deps.draining()) this.closeAfter = true;
    let text: string;
    if (!extra && !this.closeAfter) text = h.downstream ??= renderHead(h, undefined, false);
    else text = renderHead(h, extra, this.closeAfter);
    this.res = res;
    // Head and a small first body piece leave in one write (one syscall, one segment).
    const first = res.takeSmallPending(16 * 1024);
    if (first) {
      const out = Buffer.allocUnsafe(text.length + first.length);
      out.write(text, 0, 'latin1');
      first.copy(out, text.length);
      this.sock.write(out);
    } else this.sock.write(text, 'latin1');
    res.attach(this);
  }

  /** Writes the mapped error response (status and x-meshwork-* header). */
  private fail(err: unknown): number {
    const r = responseFor(err);
    // Nobody to answer: recorded as response code 0, as Istio's metrics do for a downstream disconnect.
    if (this.closed) return 0;
    const body = `${err instanceof Error ? err.message : String(err)}\n`;
    if (this.deps.draining()) this.closeAfter = true;
    this.sock.write(`HTTP/1.1 ${r.status} ${STATUS_CODES[r.status] ?? ''}\r\n${r.header}: ${r.reason}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${this.closeAfter ? 'connection: close\r\n' : ''}\r\n${body}`);
    this.done(true);
    return r.status;
  }

  // ---- BodySink: the upstream response body.
  write(chunk: Buffer): boolean {
    return this.closed ? true : this.sock.write(chunk);
  }

  waitDrain(resume: () => void): void {
    if (this.closed) { resume(); return; }
    this.sock.once('drain', resume);
  }

  end(complete: boolean): void {
    this.res = undefined;
    this.done(complete);
  }

  /** The exchange is over: next request, or close. */
  private done(complete: boolean): void {
    this.busy = false;
    this.lastActive = Date.now();
    if (this.closed) return;
    if (!complete) { this.sock.destroy(); return; }
    if (this.closeAfter) { this.closed = true; this.sock.end(); return; }
    if (this.sock.isPaused()) this.sock.resume();
    this.next();
  }

  private onClose(): void {
    this.closed = true;
    this.conns.delete(this);
    if (this.headTimer) clearTimeout(this.headTimer);
    // The client is gone: abort the attempt in flight and start no other (no retry for nobody).
    if (this.ctx) { this.ctx.expired = true; this.ctx.cancel?.(); }
    this.res?.abandon();
  }
}

function renderHead(h: FastResponse['head'], extra: Record<string, string> | undefined, close: boolean): string {
  let text = `HTTP/1.1 ${h.status} ${h.reason}\r\n${h.forward}`;
  if (h.framing === 'chunked') text += 'transfer-encoding: chunked\r\n';
  if (extra) for (const k in extra) text += `${k}: ${extra[k]}\r\n`;
  if (close) text += 'connection: close\r\n';
  return `${text}\r\n`;
}
