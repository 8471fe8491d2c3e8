/**
 * The fast path's upstream side: per-endpoint pools of keep-alive sockets, one
 * request at a time on each, the response head parsed here and its body
 * framing followed (Content-Length, chunked, close-delimited) so a socket
 * returns to its pool exactly when the response is over. Failures become the
 * same UpstreamErrors the node:http forward raises.
 */
import * as net from 'node:net';
import { UpstreamError } from './errors';
import { ChunkedScanner, HeadMemo, parseResponseHeadMemo, type ResponseHead } from './h1parse';
import { Deadlines, type Deadline } from './deadlines';

/** Where a response body goes once the edge has written the head. */
export interface BodySink {
  /** Returns false when the sink wants no more for now (backpressure); `drain` is then awaited. */
  write(chunk: Buffer): boolean;
  /** `complete` false: the body was cut short. */
  end(complete: boolean): void;
  waitDrain(resume: () => void): void;
}

const MAX_RESPONSE_HEAD = 64 * 1024;
const EMPTY = Buffer.alloc(0);

/** A response whose head has arrived; the body follows into a sink (or is discarded). */
export class FastResponse {
  readonly statusCode: number;
  private pending: Buffer[] | undefined;
  private sink: BodySink | undefined;
  private finished: boolean | undefined;
  private closeFns: (() => void)[] | undefined;

  constructor(readonly head: ResponseHead, private readonly conn: UpstreamConn) { this.statusCode = head.status; }

  /** Sends the body to `sink` (what arrived so far at once). */
  attach(sink: BodySink): void {
    this.sink = sink;
    const p = this.pending;
    this.pending = undefined;
    if (p) for (const c of p) if (!sink.write(c)) this.conn.throttle(sink);
    if (this.finished !== undefined) this.deliverEnd();
  }

  /** Takes the body bytes received so far when they are one piece of at most `max` bytes (to send with the head in one write). */
  takeSmallPending(max: number): Buffer | undefined {
    const p = this.pending;
    if (!p || p.length !== 1 || p[0].length > max) return undefined;
    this.pending = undefined;
    return p[0];
  }

  /** Discards the body (the socket is still reused when the response completes). */
  resume(): this {
    if (!this.sink) this.attach(DISCARD);
    return this;
  }

  /** 'close': the body is over (complete or not); the only event layers use. */
  once(_event: 'close', fn: () => void): this {
    if (this.finished !== undefined && !this.sink) (this.closeFns ??= []).push(fn);
    else if (this.finished !== undefined) fn();
    else (this.closeFns ??= []).push(fn);
    return this;
  }

  /** The client went away: the upstream socket cannot be reused mid-body. */
  abandon(): void {
    if (this.finished === undefined) this.conn.destroy();
  }

  /** @internal body bytes from the connection. */
  data(chunk: Buffer): void {
    if (this.sink) { if (!this.sink.write(chunk)) this.conn.throttle(this.sink); } else (this.pending ??= []).push(chunk);
  }

  /** @internal the body ended. */
  end(complete: boolean): void {
    if (this.finished !== undefined) return;
    this.finished = complete;
    if (this.sink) this.deliverEnd();
  }

  private deliverEnd(): void {
    this.sink!.end(this.finished!);
    const fns = this.closeFns;
    this.closeFns = undefined;
    if (fns) for (const f of fns) f();
  }
}

const DISCARD: BodySink = { write: () => true, end: () => {}, waitDrain: (r) => r() };

interface Exchange {
  resolve(r: FastResponse): void;
  reject(e: UpstreamError): void;
  method: string;
  label: string;
  /** Per-try timeout. */
  timer: Deadline | undefined;
  /** The connection carrying the request now (a stale pooled one may hand it to a fresh one). */
  conn: UpstreamConn;
  head: string;
  body: Buffer | null;
  key: string;
  address: string;
  port: number;
}

/** Methods safe to send again when a reused socket died before answering (RFC 9110 §9.2.2). */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

const enum Phase { Idle, Head, Body }

/** One upstream socket; listeners are bound once, not per request. */
class UpstreamConn {
  readonly sock: net.Socket;
  connected = false;
  /** Taken from the pool (it served a request before). */
  reused = false;
  private gotBytes = false;
  /** When an idle socket is to be dropped rather than reused (the server's keep-alive hint), ms epoch; 0: never. */
  idleUntil = 0;
  private phase = Phase.Idle;
  private ex: Exchange | undefined;
  private res: FastResponse | undefined;
  private buf: Buffer = EMPTY;
  private framing: ResponseHead['framing'] = 'none';
  private remaining = 0;
  private reusable = false;
  private keepAliveMs = 0;
  private scanner: ChunkedScanner | undefined;
  private dead = false;

  constructor(readonly pool: UpstreamPool, readonly key: string, address: string, port: number) {
    // Reads land in the pool's one buffer and reach onData without the readable-stream
    // machinery (push, 'data', a nextTick per read); each read is copied out (a small copy
    // comes from Node's buffer slab) because what onData keeps must outlive the next read.
    this.sock = net.connect({
      host: address, port, noDelay: true,
      onread: { buffer: pool.readBuffer, callback: (n: number, buf: Buffer) => { this.onData(Buffer.from(buf.subarray(0, n))); return true; } },
    });
    this.sock.once('connect', () => { this.connected = true; });
    this.sock.on('error', (err: NodeJS.ErrnoException) => this.onGone(err));
    this.sock.on('close', () => this.onGone(undefined));
    this.sock.on('end', () => this.onEnd());
  }

  send(ex: Exchange, head: string, body: Buffer | null): void {
    this.ex = ex;
    ex.conn = this;
    this.phase = Phase.Head;
    this.gotBytes = false;
    const s = this.sock;
    if (body && body.length > 0) { s.cork(); s.write(head, 'latin1'); s.write(body); s.uncork(); } else s.write(head, 'latin1');
  }

  /** Fails the exchange in flight (per-try timeout, cancel) and drops the socket. */
  fail(kind: 'timeout' | 'reset' | 'connect-failure', cause: unknown): void {
    const ex = this.ex;
    if (ex && this.phase === Phase.Head) {
      this.ex = undefined;
      this.pool.deadlines.cancel(ex.timer);
      ex.reject(new UpstreamError(kind, ex.label, cause));
    }
    this.destroy();
  }

  destroy(): void {
    if (this.dead) return;
    this.dead = true;
    this.sock.destroy();
    this.pool.forget(this);
    if (this.phase === Phase.Body) { this.phase = Phase.Idle; this.res?.end(false); }
  }

  throttle(sink: BodySink): void {
    if (this.sock.isPaused()) return;
    this.sock.pause();
    sink.waitDrain(() => this.sock.resume());
  }

  private onData(chunk: Buffer): void {
    if (this.phase === Phase.Idle) { this.destroy(); return; } // nothing asked: not a socket to trust
    if (this.phase === Phase.Head) {
      this.gotBytes = true;
      this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
      let head: ResponseHead | undefined;
      for (;;) {
        try { head = parseResponseHeadMemo(this.buf, this.ex!.method, MAX_RESPONSE_HEAD, this.pool.heads); } catch (err) { this.fail('reset', err); return; }
        if (!head) return;
        // Interim responses (100, 103) are dropped; the final one follows.
        if (head.status < 200) { if (head.status === 101) { this.fail('reset', new Error('unexpected 101 from upstream')); return; } this.buf = this.buf.subarray(head.length); continue; }
        break;
      }
      const rest = this.buf.subarray(head.length);
      this.buf = EMPTY;
      const ex = this.ex!;
      this.ex = undefined;
      this.pool.deadlines.cancel(ex.timer);
      this.framing = head.framing;
      this.remaining = head.contentLength;
      this.reusable = head.reusable;
      // Like node:http's Agent: stop reusing a second before the server said it would close an idle socket.
      this.keepAliveMs = head.keepAliveMs;
      this.scanner = head.framing === 'chunked' ? new ChunkedScanner() : undefined;
      this.phase = Phase.Body;
      const res = new FastResponse(head, this);
      this.res = res;
      ex.resolve(res);
      if (head.framing === 'none' || (head.framing === 'length' && head.contentLength === 0)) { this.complete(rest.length === 0); return; }
      if (rest.length) this.body(rest);
      return;
    }
    this.body(chunk);
  }

  private body(chunk: Buffer): void {
    const res = this.res!;
    if (this.framing === 'close') { res.data(chunk); return; }
    if (this.framing === 'length') {
      if (chunk.length < this.remaining) { this.remaining -= chunk.length; res.data(chunk); return; }
      const extra = chunk.length > this.remaining;
      res.data(extra ? chunk.subarray(0, this.remaining) : chunk);
      this.remaining = 0;
      this.complete(!extra);
      return;
    }
    let end: number;
    try { end = this.scanner!.scan(chunk, 0); } catch { this.destroy(); return; }
    if (end < 0) { res.data(chunk); return; }
    res.data(end === chunk.length ? chunk : chunk.subarray(0, end));
    this.complete(end === chunk.length);
  }

  /** The response is over; `clean`: nothing extra arrived, so the socket may serve another request. */
  private complete(clean: boolean): void {
    const res = this.res!;
    this.res = undefined;
    this.phase = Phase.Idle;
    this.scanner = undefined;
    if (clean && this.reusable && !this.dead) {
      this.idleUntil = this.keepAliveMs > 1000 ? Date.now() + this.keepAliveMs - 1000 : 0;
      if (this.keepAliveMs > 0 && this.keepAliveMs <= 1000) this.destroy(); else this.pool.release(this);
    } else this.destroy();
    res.end(true);
  }

  private onEnd(): void {
    if (this.phase === Phase.Body && this.framing === 'close') { this.reusable = false; this.complete(false); }
  }

  private onGone(err: NodeJS.ErrnoException | undefined): void {
    if (this.phase === Phase.Head) {
      const ex = this.ex;
      // A pooled socket the server had closed while idle: the request never reached it; try once on a fresh one.
      if (ex && this.reused && !this.gotBytes && IDEMPOTENT.has(ex.method)) {
        this.ex = undefined;
        this.phase = Phase.Idle;
        this.destroy();
        this.pool.fresh(ex);
        return;
      }
      this.fail(this.connected ? 'reset' : 'connect-failure', err ?? new Error('upstream closed the connection before responding'));
      return;
    }
    if (this.phase === Phase.Body && this.framing === 'close' && !err) { this.reusable = false; this.complete(false); return; }
    this.destroy();
  }
}

export interface UpstreamPoolOptions {
  /** Idle sockets kept per endpoint. */
  maxIdlePerEndpoint?: number;
  /** Where per-try timeouts are kept (shared with the stack's overall timeouts when given). */
  deadlines?: Deadlines;
}

/** Keep-alive sockets per endpoint (address:port), most recently used first. */
export class UpstreamPool {
  private readonly idle = new Map<string, UpstreamConn[]>();
  private readonly all = new Set<UpstreamConn>();
  private readonly maxIdle: number;
  /** @internal */
  readonly deadlines: Deadlines;
  /** The deadlines are this pool's own (not shared with the stack), so destroy() ends them. */
  private readonly ownDeadlines: boolean;
  /** @internal the last response head parsed in this pool, for the next identical one. */
  readonly heads = new HeadMemo<ResponseHead>();
  /** @internal where every upstream socket of the pool reads into (copied out at once). */
  readonly readBuffer = Buffer.allocUnsafe(64 * 1024);

  constructor(opts: UpstreamPoolOptions = {}) {
    this.maxIdle = opts.maxIdlePerEndpoint ?? 256;
    this.ownDeadlines = !opts.deadlines;
    this.deadlines = opts.deadlines ?? new Deadlines();
  }

  /**
   * Sends one request (head already serialised) and resolves at the response
   * head. `key` names the endpoint's pool (one per address and port); `timeoutMs`
   * bounds the wait for the head; `holder.cancel` receives the abort while it lasts.
   */
  send(address: string, port: number, key: string, method: string, head: string, body: Buffer | null, timeoutMs: number | undefined, holder: { cancel?: () => void }): Promise<FastResponse> {
    const list = this.idle.get(key);
    let conn = list?.pop();
    if (conn && conn.idleUntil !== 0) {
      const now = Date.now();
      while (conn && conn.idleUntil !== 0 && conn.idleUntil <= now) { conn.destroy(); conn = list!.pop(); }
    }
    if (conn) conn.reused = true;
    else { conn = new UpstreamConn(this, key, address, port); this.all.add(conn); }
    const first = conn;
    return new Promise<FastResponse>((resolve, reject) => {
      const ex: Exchange = {
        resolve: (r) => { holder.cancel = undefined; resolve(r); },
        reject, method, label: key, timer: undefined, conn: first, head, body, key, address, port,
      };
      if (timeoutMs) ex.timer = this.deadlines.add(timeoutMs, () => ex.conn.fail('timeout', new Error(`no response within ${timeoutMs} ms`)));
      holder.cancel = () => ex.conn.fail('timeout', new Error('request timed out'));
      first.send(ex, head, body);
    });
  }

  /** @internal sends an exchange again on a new connection. */
  fresh(ex: Exchange): void {
    const conn = new UpstreamConn(this, ex.key, ex.address, ex.port);
    this.all.add(conn);
    conn.send(ex, ex.head, ex.body);
  }

  /** @internal */
  release(c: UpstreamConn): void {
    let list = this.idle.get(c.key);
    if (!list) { list = []; this.idle.set(c.key, list); }
    if (list.length >= this.maxIdle) { c.destroy(); return; }
    list.push(c);
  }

  /** @internal */
  forget(c: UpstreamConn): void {
    this.all.delete(c);
    const list = this.idle.get(c.key);
    if (!list) return;
    const i = list.indexOf(c);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.idle.delete(c.key);
  }

  destroy(): void {
    for (const c of [...this.all]) c.destroy();
    this.idle.clear();
    if (this.ownDeadlines) this.deadlines.stop();
  }
}
