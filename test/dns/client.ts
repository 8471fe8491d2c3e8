/** A tiny DNS client for tests: raw control over flags, EDNS and framing. */
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import { decodeMessage, questionFor, TYPE, wireToName, type Message, type Rr } from '../../dns/wire';

export interface QueryOptions { id?: number; edns?: { payload?: number; version?: number } | false; rd?: boolean; opcode?: number }

export function buildTestQuery(name: string, type: number, o: QueryOptions = {}): Buffer {
  const q = questionFor(name, type);
  const edns = o.edns === undefined ? { payload: 1232 } : o.edns;
  const out = Buffer.alloc(12 + q.length + (edns ? 11 : 0));
  out.writeUInt16BE(o.id ?? 4242, 0);
  out[2] = ((o.opcode ?? 0) << 3) | (o.rd === false ? 0 : 1);
  out.writeUInt16BE(1, 4);
  out.writeUInt16BE(edns ? 1 : 0, 10);
  q.copy(out, 12);
  if (edns) {
    const off = 12 + q.length;
    out.writeUInt16BE(TYPE.OPT, off + 1);
    out.writeUInt16BE(edns.payload ?? 1232, off + 3);
    out[off + 6] = edns.version ?? 0;
  }
  return out;
}

/** Sends raw bytes over UDP; resolves with the reply or undefined after `timeoutMs`. */
export function udpRaw(host: string, port: number, msg: Buffer, timeoutMs = 2000): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const s = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
    const t = setTimeout(() => { s.close(); resolve(undefined); }, timeoutMs);
    s.on('message', (m) => { clearTimeout(t); s.close(); resolve(m); });
    s.on('error', () => { clearTimeout(t); s.close(); resolve(undefined); });
    s.send(msg, port, host);
  });
}

export async function udpQuery(host: string, port: number, name: string, type: number, o: QueryOptions = {}): Promise<{ msg: Message; raw: Buffer }> {
  const raw = await udpRaw(host, port, buildTestQuery(name, type, o));
  if (!raw) throw new Error(`no UDP reply for ${name}`);
  return { msg: decodeMessage(raw), raw };
}

/** Sends several queries on one TCP connection at once (pipelined); resolves with replies by ID. */
export function tcpQueries(host: string, port: number, queries: Buffer[], timeoutMs = 3000): Promise<Map<number, Message>> {
  return new Promise((resolve, reject) => {
    const out = new Map<number, Message>();
    let buf = Buffer.alloc(0);
    const s = net.connect({ host, port });
    const t = setTimeout(() => { s.destroy(); reject(new Error(`tcp: ${out.size}/${queries.length} replies`)); }, timeoutMs);
    s.on('error', (e) => { clearTimeout(t); reject(e); });
    s.on('connect', () => s.write(Buffer.concat(queries.map((q) => { const l = Buffer.alloc(2); l.writeUInt16BE(q.length); return Buffer.concat([l, q]); }))));
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const m = decodeMessage(buf.subarray(2, 2 + buf.readUInt16BE(0)));
        buf = buf.subarray(2 + buf.readUInt16BE(0));
        out.set(m.id, m);
      }
      if (out.size === queries.length) { clearTimeout(t); s.end(); resolve(out); }
    });
  });
}

/** Records of a section as "name TYPE rdata-summary" strings, for readable asserts. */
export function show(rrs: Rr[]): string[] {
  return rrs.map((r) => {
    const name = Buffer.isBuffer(r.name) ? wireToName(r.name) : r.name;
    let data: string;
    switch (r.type) {
      case TYPE.A: data = [...r.rdata].join('.'); break;
      case TYPE.AAAA: data = r.rdata.toString('hex').replace(/(.{4})(?!$)/g, '$1:'); break;
      case TYPE.CNAME: case TYPE.PTR: case TYPE.NS: data = wireToName(r.rdata); break;
      case TYPE.SRV: data = `${r.rdata.readUInt16BE(0)} ${r.rdata.readUInt16BE(2)} ${r.rdata.readUInt16BE(4)} ${wireToName(r.rdata, 6)}`; break;
      case TYPE.SOA: data = wireToName(r.rdata); break;
      case TYPE.TXT: {
        const parts: string[] = [];
        for (let o = 0; o < r.rdata.length; o += 1 + r.rdata[o]) parts.push(r.rdata.toString('utf8', o + 1, o + 1 + r.rdata[o]));
        data = parts.join('|');
        break;
      }
      default: data = r.rdata.toString('hex');
    }
    return `${name} ${r.type === TYPE.AAAA ? 'AAAA' : Object.entries(TYPE).find(([, v]) => v === r.type)?.[0] ?? r.type} ${data}`;
  });
}
