/**
 * A small authoritative server for `example.test`, standing in for an
 * upstream resolver in tests (loopback or a test namespace, never the
 * internet). UDP and TCP on one port; `tc.example.test` is truncated over UDP.
 */
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import { encodeReply, parseQuery, RCODE, TYPE, type Rr } from '../../dns/wire';
import * as rr from '../../dns/records';

export interface FakeUpstream { port: number; queries: number; close(): Promise<void> }

const SOA = rr.soa('example.test', 60, { primary: 'ns.example.test', admin: 'root.example.test', serial: 1, refresh: 60, retry: 60, expiration: 600, minimum: 30 });

function answer(name: string, type: number): { rcode: number; answers: Rr[]; authority: Rr[] } {
  const recs: Rr[] = [];
  if (name === 'known.example.test') recs.push(rr.a(name, 1, '192.0.2.1'));
  else if (name === 'long.example.test') recs.push(rr.a(name, 3600, '192.0.2.2'));
  else if (name === 'big.example.test' || name === 'tc.example.test') recs.push(rr.txt(name, 60, 'a'.repeat(200), 'b'.repeat(200), 'c'.repeat(200)));
  else if (name === 'nodata.example.test') { /* exists, no records of any asked type */ }
  else return { rcode: RCODE.NXDOMAIN, answers: [], authority: [SOA] };
  const answers = recs.filter((r) => r.type === type);
  return { rcode: RCODE.NOERROR, answers, authority: answers.length ? [] : [SOA] };
}

export async function startFakeUpstream(host = '127.0.0.1', port = 0): Promise<FakeUpstream> {
  const self = { port: 0, queries: 0 } as FakeUpstream;
  const reply = (msg: Buffer, tcp: boolean): Buffer => {
    self.queries++;
    const q = parseQuery(msg);
    const a = answer(q.name, q.type);
    const enc = encodeReply({ id: q.id, rd: q.rd, aa: true, rcode: a.rcode, question: q.question, answers: a.answers, authority: a.authority, additional: [], opt: !!q.edns }).buf;
    if (!tcp && q.name === 'tc.example.test') return encodeReply({ id: q.id, rd: q.rd, aa: true, tc: true, rcode: 0, question: q.question, answers: [], authority: [], additional: [], opt: !!q.edns }).buf;
    return enc;
  };
  const udp = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
  await new Promise<void>((r) => udp.bind(port, host, r));
  self.port = (udp.address() as net.AddressInfo).port;
  udp.on('message', (m, ri) => { try { udp.send(reply(m, false), ri.port, ri.address); } catch { /* ignore junk */ } });
  const tcp = net.createServer((s) => {
    let buf = Buffer.alloc(0);
    s.on('error', () => undefined);
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const out = reply(buf.subarray(2, 2 + buf.readUInt16BE(0)), true);
        buf = buf.subarray(2 + buf.readUInt16BE(0));
        const l = Buffer.alloc(2); l.writeUInt16BE(out.length);
        s.write(Buffer.concat([l, out]));
      }
    });
  });
  await new Promise<void>((r) => tcp.listen(self.port, host, r));
  let closed = false;
  self.close = async () => {
    if (closed) return;
    closed = true;
    await Promise.all([new Promise<void>((r) => udp.close(() => r())), new Promise<void>((r) => tcp.close(() => r()))]);
  };
  return self;
}

export { TYPE };
