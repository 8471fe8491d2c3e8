/**
 * Forwarding to upstream resolvers: UDP from a fresh random port per query
 * (with a random ID and the question checked on the way back), retried over
 * TCP when the reply is truncated. Upstream health is tracked: after
 * `maxFails` consecutive failures an upstream is skipped, and a probe asks it
 * every `probeIntervalMs` until it answers again. When no upstream is usable
 * the handler fails at once, so the client gets SERVFAIL (or a stale answer
 * from the cache) instead of a timeout.
 */
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import { randomInt } from 'node:crypto';
import { MeshworkError } from '../lib/errors';
import { buildQuery, decodeMessage, questionFor, RCODE, TYPE, type Message } from './wire';
import { emptyAnswer, type Answer, type Handler } from './chain';
import type { DnsMetrics } from './metrics';
import { upstreamLabel, type Upstream } from './upstreams';

export class UpstreamError extends MeshworkError {
  constructor(message: string, cause?: unknown) { super('EUPSTREAM', message, { cause }); }
}

export interface ForwardOptions {
  upstreams: Upstream[];
  /** Per-attempt timeout (default 400 ms). */
  timeoutMs?: number;
  /** Total time across upstreams for one question (default 700 ms). */
  budgetMs?: number;
  /** Consecutive failures before an upstream is skipped (default 2). */
  maxFails?: number;
  probeIntervalMs?: number;
  metrics: DnsMetrics;
}

interface Health { fails: number; probe?: NodeJS.Timeout }

function sameQuestion(m: Message, question: Buffer): boolean {
  if (m.questions.length !== 1) return false;
  const q = m.questions[0];
  const nameLen = question.length - 4;
  if (q.wire.length !== nameLen || q.type !== question.readUInt16BE(nameLen) || q.qclass !== question.readUInt16BE(nameLen + 2)) return false;
  // DNS names compare case-insensitively in ASCII only (RFC 4343): bytes 0xC0-0xDE are not letters here.
  for (let i = 0; i < nameLen; i++) if (asciiLower(q.wire[i]) !== asciiLower(question[i])) return false;
  return true;
}

const asciiLower = (c: number): number => (c >= 0x41 && c <= 0x5a ? c | 0x20 : c);

export function exchangeUdp(u: Upstream, question: Buffer, timeoutMs: number): Promise<{ msg: Message; raw: Buffer }> {
  return new Promise((resolve, reject) => {
    const id = randomInt(0x10000);
    const sock = dgram.createSocket(net.isIPv6(u.address) ? 'udp6' : 'udp4');
    let done = false;
    const finish = (err: Error | undefined, v?: { msg: Message; raw: Buffer }) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      try { sock.close(); } catch { /* already closed */ }
      if (err) reject(err); else resolve(v!);
    };
    const timer = setTimeout(() => finish(new UpstreamError(`${upstreamLabel(u)}: timeout after ${timeoutMs} ms`)), timeoutMs);
    sock.on('error', (e) => finish(new UpstreamError(`${upstreamLabel(u)}: ${(e as NodeJS.ErrnoException).code ?? e.message}`, e)));
    sock.on('message', (raw) => {
      // Anything not matching our ID and question is ignored, not trusted (spoofing).
      if (raw.length < 12 || raw.readUInt16BE(0) !== id || (raw[2] & 0x80) === 0) return;
      let msg: Message;
      try { msg = decodeMessage(raw); } catch { return; }
      if (!sameQuestion(msg, question)) return;
      finish(undefined, { msg, raw });
    });
    // A failed connect (no route: ENETUNREACH) reaches only this callback, not 'error'; sending
    // on the unconnected socket would then throw outside any handler and end the process.
    sock.connect(u.port, u.address, (err?: Error) => {
      if (err) { finish(new UpstreamError(`${upstreamLabel(u)}: ${(err as NodeJS.ErrnoException).code ?? err.message}`, err)); return; }
      sock.send(buildQuery(id, question), (e) => { if (e) finish(new UpstreamError(`${upstreamLabel(u)}: send: ${e.message}`, e)); });
    });
  });
}

export function exchangeTcp(u: Upstream, question: Buffer, timeoutMs: number): Promise<{ msg: Message; raw: Buffer }> {
  return new Promise((resolve, reject) => {
    const id = randomInt(0x10000);
    const q = buildQuery(id, question);
    const framed = Buffer.alloc(q.length + 2);
    framed.writeUInt16BE(q.length, 0);
    q.copy(framed, 2);
    let buf = Buffer.alloc(0);
    let done = false;
    const sock = net.connect({ host: u.address, port: u.port });
    const finish = (err: Error | undefined, v?: { msg: Message; raw: Buffer }) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err); else resolve(v!);
    };
    const timer = setTimeout(() => finish(new UpstreamError(`${upstreamLabel(u)} (tcp): timeout after ${timeoutMs} ms`)), timeoutMs);
    sock.on('connect', () => sock.write(framed));
    sock.on('error', (e) => finish(new UpstreamError(`${upstreamLabel(u)} (tcp): ${(e as NodeJS.ErrnoException).code ?? e.message}`, e)));
    sock.on('end', () => finish(new UpstreamError(`${upstreamLabel(u)} (tcp): closed before a reply`)));
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length < 2) return;
      const len = buf.readUInt16BE(0);
      if (buf.length < 2 + len) return;
      const raw = buf.subarray(2, 2 + len);
      try {
        const msg = decodeMessage(raw);
        if (msg.id !== id || !sameQuestion(msg, question)) throw new Error('reply does not match the query');
        finish(undefined, { msg, raw });
      } catch (e) {
        finish(new UpstreamError(`${upstreamLabel(u)} (tcp): ${(e as Error).message}`, e));
      }
    });
  });
}

export function createForwarder(opts: ForwardOptions): Handler & { stop(): void; healthy(u: Upstream): boolean } {
  const timeoutMs = opts.timeoutMs ?? 400;
  const budgetMs = opts.budgetMs ?? 700;
  const maxFails = opts.maxFails ?? 2;
  const probeMs = opts.probeIntervalMs ?? 1000;
  const health = new Map<string, Health>(opts.upstreams.map((u) => [upstreamLabel(u), { fails: 0 }]));
  const of = (u: Upstream): Health => health.get(upstreamLabel(u)) ?? { fails: 0 };
  let stopped = false;

  const ok = (u: Upstream): void => {
    const h = of(u);
    h.fails = 0;
    if (h.probe) { clearInterval(h.probe); h.probe = undefined; }
  };
  const failed = (u: Upstream, reason: string): void => {
    const h = of(u);
    h.fails++;
    opts.metrics.upstreamFailure(upstreamLabel(u), reason);
    if (h.fails >= maxFails && !h.probe && !stopped) {
      // Probe with a question any resolver answers; any reply at all revives it.
      h.probe = setInterval(() => {
        exchangeUdp(u, questionFor('', TYPE.NS), timeoutMs).then(() => ok(u), () => undefined);
      }, probeMs);
      h.probe.unref();
    }
  };
  const isHealthy = (u: Upstream): boolean => of(u).fails < maxFails;

  return {
    name: 'forward',
    healthy: isHealthy,
    stop() { stopped = true; for (const h of health.values()) if (h.probe) clearInterval(h.probe); },
    async serve(q): Promise<Answer> {
      if (opts.upstreams.length === 0) return emptyAnswer(RCODE.REFUSED);
      const usable = opts.upstreams.filter(isHealthy);
      if (usable.length === 0) throw new UpstreamError('every upstream is down');
      const deadline = Date.now() + budgetMs;
      const errors: string[] = [];
      for (const u of usable) {
        const left = deadline - Date.now();
        if (left <= 0) break;
        const started = process.hrtime.bigint();
        try {
          let r = await exchangeUdp(u, q.wire, Math.min(timeoutMs, left));
          if (r.msg.flags & 0x0200) r = await exchangeTcp(u, q.wire, Math.max(50, Math.min(timeoutMs, deadline - Date.now())));
          opts.metrics.upstreamLatency(upstreamLabel(u), Number(process.hrtime.bigint() - started) / 1e9);
          if (r.msg.rcode === RCODE.SERVFAIL || r.msg.rcode === RCODE.REFUSED) {
            // It answered, so it is alive; but try the next one for a real answer.
            ok(u);
            opts.metrics.upstreamFailure(upstreamLabel(u), r.msg.rcode === RCODE.SERVFAIL ? 'servfail' : 'refused');
            errors.push(`${upstreamLabel(u)}: rcode ${r.msg.rcode}`);
            continue;
          }
          ok(u);
          return { rcode: r.msg.rcode, aa: false, answers: r.msg.answers, authority: r.msg.authority, additional: r.msg.additional, reuse: 0 };
        } catch (err) {
          const reason = /timeout/.test((err as Error).message) ? 'timeout' : 'error';
          failed(u, reason);
          errors.push((err as Error).message);
        }
      }
      throw new UpstreamError(`no upstream answered: ${errors.join('; ') || 'time budget spent'}`);
    },
  };
}
