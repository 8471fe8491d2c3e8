/**
 * The DNS server: UDP and TCP front ends over one resolver chain
 * (cluster zone -> container names -> cache -> forward, fixed here), with a
 * packet cache in front for repeated questions. This is the edge: every
 * failure below becomes an rcode here, nothing escapes as an exception, and a
 * packet we cannot even read the header of is dropped.
 */
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { MeshworkError, withContext } from '../lib/errors';
import type { ClusterView, Logger } from './cluster-view';
import { compose, emptyAnswer, type Answer, type Context, type Question } from './chain';
import { createClusterZone, normalizeZone } from './cluster-zone';
import { createContainerNames } from './containers';
import { createCache, type CacheOptions } from './cache';
import { createForwarder, type ForwardOptions } from './forward';
import { createDnsMetrics, type DnsMetrics } from './metrics';
import { createPacketCache, quickQuestion, replyFlags } from './packet-cache';
import { defaultUpstreams, type Upstream } from './upstreams';
import { bareReply, CLASS_IN, encodeReply, OUR_PAYLOAD, parseQuery, questionFor, RCODE, TYPE, type Query } from './wire';

export interface ListenAddress { address: string; port: number }

export interface DnsServerOptions {
  view: ClusterView;
  /** Cluster zone (default cluster.local). */
  zone?: string;
  /** Upstream resolvers; default: the host's resolv.conf without loopback entries. */
  upstreams?: Upstream[];
  listen: ListenAddress[];
  registry?: Registry;
  /** Used instead of creating metrics on `registry` (worker processes ship tallies to the primary). */
  metrics?: DnsMetrics;
  logger?: Logger;
  /** TTL of the records we are authoritative for (default 5 s). */
  ttl?: number;
  cache?: CacheOptions;
  forward?: Omit<ForwardOptions, 'upstreams' | 'metrics'>;
  tcp?: { idleMs?: number; maxConnections?: number; maxInFlightPerConnection?: number };
  /** Queries resolving through the chain at once before new UDP ones are dropped (default 2048). */
  maxPending?: number;
}

export interface DnsServer {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Bound addresses, in `listen` order (port 0 resolved). */
  addresses(): ListenAddress[];
  readonly metrics: DnsMetrics;
}

const MAX_CHASE = 8;

export function createDnsServer(opts: DnsServerOptions): DnsServer {
  if (!opts.listen?.length) throw new MeshworkError('EDNSCONFIG', 'dns server: no listen address given');
  const zone = normalizeZone(opts.zone ?? 'cluster.local');
  const metrics = opts.metrics ?? createDnsMetrics(opts.registry);
  const view = opts.view;
  const forwarder = createForwarder({ upstreams: opts.upstreams ?? defaultUpstreams(), metrics, ...opts.forward });
  const chain = compose(
    [createClusterZone({ view, zone, ttl: opts.ttl, serverAddresses: opts.listen.map((l) => l.address) }), createContainerNames({ view, ttl: opts.ttl }), createCache({ ...opts.cache, metrics }), forwarder],
    async () => emptyAnswer(RCODE.REFUSED),
  );
  const packets = createPacketCache();
  const maxPending = opts.maxPending ?? 2048;
  const idleMs = opts.tcp?.idleMs ?? 10_000;
  const maxInFlight = opts.tcp?.maxInFlightPerConnection ?? 32;
  let pending = 0;
  const udp: dgram.Socket[] = [];
  const tcp: net.Server[] = [];
  const conns = new Set<net.Socket>();
  const bound: ListenAddress[] = [];

  const context = (client: string | undefined, depth: number): Context => ({
    depth,
    resolve: (name, type) => depth >= MAX_CHASE
      ? Promise.resolve(emptyAnswer(RCODE.SERVFAIL))
      : chain({ name, type, qclass: CLASS_IN, wire: questionFor(name, type), client }, context(client, depth + 1)),
  });

  /** Full (untruncated) reply for a parsed query, through the chain; stores it in the packet cache. */
  const resolve = async (q: Query, client: string, msg: Buffer): Promise<Buffer> => {
    const generation = view.generation;
    const question: Question = { name: q.name, type: q.type, qclass: q.qclass, wire: q.question, client };
    let answer: Answer;
    try {
      answer = await chain(question, context(client, 0));
    } catch {
      // Upstream failures and anything unexpected: SERVFAIL now, never a client timeout.
      answer = emptyAnswer(RCODE.SERVFAIL);
    }
    const enc = encodeReply({
      id: q.id, rd: q.rd, cd: q.cd, aa: answer.aa, rcode: answer.rcode, question: q.question,
      answers: answer.answers, authority: answer.authority, additional: answer.additional, opt: !!q.edns, do: q.edns?.do,
    });
    // Names some container is known by get asker-dependent answers: those never enter the packet cache.
    if (answer.reuse !== 0 && generation === view.generation && !view.current().containerNames.has(q.name)) {
      const now = Date.now();
      packets.set(msg, 12 + q.question.length, replyFlags(msg, !!q.edns, q.edns?.do), {
        buf: Buffer.from(enc.buf), ttlOffsets: answer.reuse === 'view' ? [] : enc.ttlOffsets,
        ttls: enc.ttlOffsets.map((o) => enc.buf.readUInt32BE(o)), createdAt: now, lastAge: 0, generation,
        validUntil: answer.reuse === 'view' ? Infinity : now + answer.reuse * 1000,
      });
    }
    metrics.query(q.type, answer.rcode);
    return enc.buf;
  };

  /**
   * Answers one message. Returns the reply (synchronously on the fast path),
   * undefined to stay silent, and the query (for UDP size limits).
   */
  const handle = (msg: Buffer, client: string): { reply: Buffer | Promise<Buffer> | undefined; q?: Query } => {
    if (msg.length < 12) { metrics.dropped('short'); return { reply: undefined }; }
    if (msg[2] & 0x80) { metrics.dropped('response'); return { reply: undefined }; }
    const id = msg.readUInt16BE(0);
    const rd = (msg[2] & 0x01) !== 0;
    const opcode = (msg[2] >> 3) & 0x0f;
    if (opcode !== 0) {
      // Echo the question and OPT when the message reads as one: an EDNS query must get OPT back
      // (RFC 6891 §6.1.1), or dig and stub resolvers take us for a server that cannot do EDNS.
      let shape: Query | undefined;
      try { shape = parseQuery(msg); } catch { /* header only */ }
      metrics.query(shape?.type ?? 0, RCODE.NOTIMP);
      const r = bareReply({ id, rd, question: shape?.question, opt: !!shape?.edns, do: shape?.edns?.do }, RCODE.NOTIMP);
      r[2] |= opcode << 3;
      return { reply: r };
    }
    let q: Query;
    try {
      q = parseQuery(msg);
    } catch {
      metrics.query(0, RCODE.FORMERR);
      return { reply: bareReply({ id, rd, opt: false }, RCODE.FORMERR) };
    }
    if (q.edns && q.edns.version > 0) {
      metrics.query(q.type, RCODE.BADVERS);
      return { reply: bareReply({ id, rd, question: q.question, opt: true, do: q.edns.do }, RCODE.BADVERS), q };
    }
    // Zone transfers are not offered (the zone lives in the cluster store, not in files to copy):
    // REFUSED, as an authoritative server without a transfer policy answers, rather than an
    // SOA-only reply a client would take for an empty zone.
    if (q.type === TYPE.AXFR || q.type === TYPE.IXFR || (q.qclass !== CLASS_IN && q.qclass !== TYPE.ANY)) {
      metrics.query(q.type, RCODE.REFUSED);
      return { reply: bareReply({ id, rd, question: q.question, opt: !!q.edns, do: q.edns?.do }, RCODE.REFUSED), q };
    }
    const qEnd = 12 + q.question.length;
    const hit = packets.get(msg, qEnd, replyFlags(msg, !!q.edns, q.edns?.do), Date.now(), view.generation);
    if (hit) {
      const out = Buffer.allocUnsafe(hit.buf.length);
      hit.buf.copy(out);
      out.writeUInt16BE(id, 0);
      q.question.copy(out, 12);
      metrics.cacheHit('packet');
      metrics.query(q.type, out[3] & 0x0f);
      return { reply: out, q };
    }
    return { reply: resolve(q, client, msg), q };
  };

  /** Clamps a UDP reply to the client's payload size, leaving a TC stub when it does not fit. */
  const fitUdp = (reply: Buffer, q: Query | undefined): Buffer => {
    if (!q) return reply;
    const limit = q.edns ? Math.min(Math.max(q.edns.payload, 512), 65_535) : 512;
    if (reply.length <= limit) return reply;
    metrics.truncated();
    return bareReply({ id: q.id, rd: q.rd, question: q.question, opt: !!q.edns, do: q.edns?.do }, reply[3] & 0x0f, true);
  };

  const onUdp = (sock: dgram.Socket) => (msg: Buffer, rinfo: dgram.RemoteInfo): void => {
    // Fast path: a plain query whose reply is cached goes out without being parsed.
    if (msg.length >= 12 && (msg[2] & 0xf8) === 0) {
      const qq = quickQuestion(msg);
      if (qq) {
        const hit = packets.get(msg, qq.qEnd, replyFlags(msg, qq.edns >= 0, qq.do), Date.now(), view.generation);
        const limit = qq.edns < 0 ? 512 : Math.max(qq.edns, 512);
        if (hit && hit.buf.length <= limit) {
          const out = Buffer.allocUnsafe(hit.buf.length);
          hit.buf.copy(out);
          msg.copy(out, 0, 0, 2);
          msg.copy(out, 12, 12, qq.qEnd);
          sock.send(out, rinfo.port, rinfo.address);
          metrics.cacheHit('packet');
          metrics.query((msg[qq.qEnd - 4] << 8) | msg[qq.qEnd - 3], out[3] & 0x0f);
          return;
        }
      }
    }
    // Past the fast path work is unbounded (upstreams may be slow): shed load before starting any.
    if (pending >= maxPending) { metrics.dropped('overload'); return; }
    let r: ReturnType<typeof handle>;
    try { r = handle(msg, rinfo.address); } catch { return; }
    if (!r.reply) return;
    if (Buffer.isBuffer(r.reply)) { sock.send(fitUdp(r.reply, r.q), rinfo.port, rinfo.address); return; }
    pending++;
    r.reply.then((buf) => sock.send(fitUdp(buf, r.q), rinfo.port, rinfo.address), () => undefined).finally(() => { pending--; });
  };

  const onTcp = (sock: net.Socket): void => {
    conns.add(sock);
    sock.setNoDelay(true);
    sock.setTimeout(idleMs, () => sock.destroy());
    sock.on('error', () => undefined);
    sock.on('close', () => conns.delete(sock));
    const client = (sock.remoteAddress ?? '').replace(/^::ffff:/, '');
    let buf: Buffer = Buffer.alloc(0);
    let inFlight = 0;
    const write = (reply: Buffer): void => {
      if (sock.destroyed) return;
      const framed = Buffer.allocUnsafe(reply.length + 2);
      framed.writeUInt16BE(reply.length, 0);
      reply.copy(framed, 2);
      sock.write(framed);
    };
    sock.on('data', (d: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, d]) : d;
      // RFC 7766: several length-prefixed queries per connection, answered as each completes.
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0);
        if (len < 12) { sock.destroy(); return; }
        if (buf.length < 2 + len) break;
        const msg = Buffer.from(buf.subarray(2, 2 + len));
        buf = buf.subarray(2 + len);
        let r: ReturnType<typeof handle>;
        try { r = handle(msg, client); } catch { continue; }
        if (!r.reply) continue;
        if (Buffer.isBuffer(r.reply)) { write(r.reply); continue; }
        inFlight++;
        if (inFlight >= maxInFlight) sock.pause();
        r.reply.then(write, () => undefined).finally(() => { inFlight--; if (sock.isPaused() && inFlight < maxInFlight) sock.resume(); });
      }
    });
  };

  const bindUdp = (l: ListenAddress): Promise<dgram.Socket> => new Promise((resolve, reject) => {
    // Replies go to literal addresses: a synchronous lookup skips dns.lookup's deferral on every send.
    const s = dgram.createSocket({
      type: net.isIPv6(l.address) ? 'udp6' : 'udp4',
      lookup: (address: string, _o: unknown, cb: (e: Error | null, a: string, f: number) => void) => cb(null, address, address.includes(':') ? 6 : 4),
    } as dgram.SocketOptions);
    s.once('error', reject);
    s.bind(l.port, l.address, () => {
      s.off('error', reject);
      s.on('error', (e) => opts.logger?.warn(`dns: udp ${l.address}: ${e.message}`));
      s.on('message', onUdp(s));
      // Room for bursts: a full receive queue drops queries before we see them.
      try { s.setRecvBufferSize(4 << 20); s.setSendBufferSize(4 << 20); } catch { /* capped by net.core.*mem_max */ }
      resolve(s);
    });
  });
  const bindTcp = (l: ListenAddress): Promise<net.Server> => new Promise((resolve, reject) => {
    const s = net.createServer(onTcp);
    s.maxConnections = opts.tcp?.maxConnections ?? 256;
    s.once('error', reject);
    s.listen({ port: l.port, host: l.address }, () => { s.off('error', reject); s.on('error', () => undefined); resolve(s); });
  });

  return {
    metrics,
    addresses: () => bound.slice(),
    async start() {
      for (const l of opts.listen) {
        // UDP and TCP share one port: with port 0, take UDP's and bind TCP to it (retrying on a clash).
        for (let attempt = 0; ; attempt++) {
          let u: dgram.Socket | undefined;
          try {
            u = await bindUdp(l);
            const port = (u.address() as AddressInfo).port;
            const t = await bindTcp({ address: l.address, port });
            udp.push(u); tcp.push(t);
            bound.push({ address: l.address, port });
            break;
          } catch (err) {
            u?.close();
            if (l.port !== 0 || attempt >= 5) {
              await this.stop();
              throw withContext(`dns: listening on ${l.address}:${l.port}`, err);
            }
          }
        }
      }
    },
    async stop() {
      forwarder.stop();
      for (const c of conns) c.destroy();
      await Promise.all([
        ...udp.splice(0).map((s) => new Promise<void>((r) => s.close(() => r()))),
        ...tcp.splice(0).map((s) => new Promise<void>((r) => s.close(() => r()))),
      ]);
      packets.clear();
    },
  };
}

export { OUR_PAYLOAD };
