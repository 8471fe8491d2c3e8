/**
 * The DNS wire format, as much of it as the server needs: a strict, allocation-
 * light query parser (the hot path), a full message decoder for upstream
 * replies (names in RDATA decompressed so records can be re-encoded anywhere)
 * and an encoder with owner-name compression. Record RDATA for our own
 * authoritative answers is produced by dns/records.ts through dns2.
 */
import { MeshworkError } from '../lib/errors';

export const TYPE = {
  A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, MX: 15, TXT: 16, AAAA: 28, SRV: 33, DNAME: 39, OPT: 41, IXFR: 251, AXFR: 252, ANY: 255,
} as const;
export const CLASS_IN = 1;
export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5, BADVERS: 16 } as const;

const TYPE_NAMES: Record<number, string> = Object.fromEntries(Object.entries(TYPE).map(([k, v]) => [v, k]));
export function typeName(t: number): string { return TYPE_NAMES[t] ?? `TYPE${t}`; }
const RCODE_NAMES: Record<number, string> = Object.fromEntries(Object.entries(RCODE).map(([k, v]) => [v, k]));
export function rcodeName(r: number): string { return RCODE_NAMES[r] ?? `RCODE${r}`; }

/** Our advertised EDNS UDP payload size (the DNS flag day 2020 value). */
export const OUR_PAYLOAD = 1232;

export class DnsFormatError extends MeshworkError {
  constructor(message: string) { super('EDNSFORMAT', message); }
}

/** A decoded query: what the server needs to answer it. */
export interface Query {
  id: number;
  opcode: number;
  rd: boolean;
  cd: boolean;
  /** Lower-cased presentation name without trailing dot ("" for the root); dots and backslashes in a label escaped. */
  name: string;
  type: number;
  qclass: number;
  /** The question exactly as sent (name, type, class): echoed back and forwarded. */
  question: Buffer;
  edns?: { payload: number; version: number; do: boolean };
}

/** A resource record. `name` is a presentation name or its uncompressed wire form. */
export interface Rr {
  name: string | Buffer;
  type: number;
  class: number;
  ttl: number;
  rdata: Buffer;
}

export function isResponse(buf: Buffer): boolean { return buf.length >= 3 && (buf[2] & 0x80) !== 0; }
export function opcodeOf(buf: Buffer): number { return (buf[2] >> 3) & 0x0f; }

/** Reads a possibly compressed name at `off`; returns wire form and where the name ended. */
function readName(buf: Buffer, off: number): { wire: Buffer; end: number } {
  const parts: Buffer[] = [];
  let total = 1;
  let end = -1;
  let jumps = 0;
  for (;;) {
    if (off >= buf.length) throw new DnsFormatError('name runs past the end of the message');
    const len = buf[off];
    if ((len & 0xc0) === 0xc0) {
      if (off + 1 >= buf.length) throw new DnsFormatError('truncated compression pointer');
      if (end < 0) end = off + 2;
      const target = ((len & 0x3f) << 8) | buf[off + 1];
      // Pointers must go backwards; this also bounds the loop.
      if (target >= off || ++jumps > 64) throw new DnsFormatError('bad compression pointer');
      off = target;
      continue;
    }
    if (len & 0xc0) throw new DnsFormatError(`bad label type 0x${len.toString(16)}`);
    if (len === 0) { if (end < 0) end = off + 1; break; }
    if (off + 1 + len > buf.length) throw new DnsFormatError('label runs past the end of the message');
    total += len + 1;
    if (total > 255) throw new DnsFormatError('name longer than 255 octets');
    parts.push(buf.subarray(off, off + 1 + len));
    off += 1 + len;
  }
  parts.push(Buffer.alloc(1));
  return { wire: Buffer.concat(parts, total), end };
}

/**
 * One label in presentation form: a dot or backslash inside a label is
 * escaped, so `web\.team-a.svc...` (one label "web.team-a") can never be
 * mistaken for the name `web.team-a.svc...`.
 */
function labelText(buf: Buffer, start: number, end: number): string {
  const l = buf.toString('latin1', start, end);
  return l.includes('.') || l.includes('\\') ? l.replace(/[.\\]/g, '\\$&') : l;
}

/** Wire name to lower-case presentation form (labels joined by dots; dots and backslashes in a label escaped). */
export function wireToName(wire: Buffer, off = 0): string {
  let out = '';
  while (off < wire.length && wire[off] !== 0) {
    const len = wire[off];
    if (out) out += '.';
    out += labelText(wire, off + 1, off + 1 + len);
    off += 1 + len;
  }
  return out.toLowerCase();
}

/** Presentation name to uncompressed wire form; validates label and name lengths. */
export function nameToWire(name: string): Buffer {
  const trimmed = name.endsWith('.') ? name.slice(0, -1) : name;
  const labels = trimmed ? trimmed.split('.') : [];
  let total = 1;
  for (const l of labels) {
    if (l.length === 0 || l.length > 63) throw new DnsFormatError(`bad label in name "${name}"`);
    total += l.length + 1;
  }
  if (total > 255) throw new DnsFormatError(`name "${name}" longer than 255 octets`);
  const out = Buffer.alloc(total);
  let o = 0;
  for (const l of labels) { out[o++] = l.length; o += out.write(l, o, 'latin1'); }
  return out;
}

/**
 * Parses a query. Throws DnsFormatError for anything malformed: callers answer
 * FORMERR (when at least a header arrived) or drop.
 */
export function parseQuery(buf: Buffer): Query {
  if (buf.length < 12) throw new DnsFormatError('message shorter than a header');
  const qd = buf.readUInt16BE(4);
  const an = buf.readUInt16BE(6);
  const ns = buf.readUInt16BE(8);
  const ar = buf.readUInt16BE(10);
  if (qd !== 1) throw new DnsFormatError(`expected one question, got ${qd}`);
  let off = 12;
  // Fast scan of an uncompressed question name (compression in a question is legal but unused).
  let name = '';
  for (;;) {
    if (off >= buf.length) throw new DnsFormatError('question name runs past the end');
    const len = buf[off];
    if (len === 0) { off++; break; }
    if (len > 63) throw new DnsFormatError('bad label in question');
    if (off + 1 + len > buf.length) throw new DnsFormatError('question label runs past the end');
    if (off - 12 + len + 2 > 255) throw new DnsFormatError('question name longer than 255 octets');
    name += (name ? '.' : '') + labelText(buf, off + 1, off + 1 + len);
    off += 1 + len;
  }
  if (off + 4 > buf.length) throw new DnsFormatError('question type/class missing');
  const type = buf.readUInt16BE(off);
  const qclass = buf.readUInt16BE(off + 2);
  const question = buf.subarray(12, off + 4);
  off += 4;
  let edns: Query['edns'];
  if (an || ns || ar) {
    // Skip answer/authority records (unusual in a query), then look for OPT.
    for (let i = 0; i < an + ns + ar; i++) {
      const n = readName(buf, off);
      off = n.end;
      if (off + 10 > buf.length) throw new DnsFormatError('record header runs past the end');
      const rtype = buf.readUInt16BE(off);
      const rdlen = buf.readUInt16BE(off + 8);
      if (off + 10 + rdlen > buf.length) throw new DnsFormatError('record data runs past the end');
      if (rtype === TYPE.OPT && i >= an + ns) {
        if (edns) throw new DnsFormatError('more than one OPT record');
        if (n.wire.length !== 1) throw new DnsFormatError('OPT owner is not the root');
        edns = { payload: buf.readUInt16BE(off + 2), version: buf[off + 5], do: (buf[off + 6] & 0x80) !== 0 };
      }
      off += 10 + rdlen;
    }
  }
  return {
    id: buf.readUInt16BE(0),
    opcode: (buf[2] >> 3) & 0x0f,
    rd: (buf[2] & 0x01) !== 0,
    cd: (buf[3] & 0x10) !== 0,
    name: name.toLowerCase(),
    type,
    qclass,
    question,
    edns,
  };
}

export interface Message {
  id: number;
  flags: number;
  rcode: number;
  questions: Array<{ wire: Buffer; type: number; qclass: number }>;
  answers: Rr[];
  authority: Rr[];
  additional: Rr[];
  opt?: { payload: number; extRcode: number; version: number };
}

/** RDATA types carrying names that may be compressed (RFC 3597 §4 lists the legacy ones). */
function decodeRdata(buf: Buffer, type: number, off: number, len: number): Buffer {
  const end = off + len;
  const names = (o: number, count: number): { parts: Buffer[]; o: number } => {
    const parts: Buffer[] = [];
    for (let i = 0; i < count; i++) { const n = readName(buf, o); parts.push(n.wire); o = n.end; }
    return { parts, o };
  };
  switch (type) {
    case TYPE.NS: case TYPE.CNAME: case TYPE.PTR: case TYPE.DNAME: {
      const r = names(off, 1);
      if (r.o !== end) throw new DnsFormatError('bad name rdata length');
      return r.parts[0];
    }
    case TYPE.MX: {
      const r = names(off + 2, 1);
      if (r.o !== end) throw new DnsFormatError('bad MX rdata length');
      return Buffer.concat([buf.subarray(off, off + 2), r.parts[0]]);
    }
    case TYPE.SRV: {
      const r = names(off + 6, 1);
      if (r.o !== end) throw new DnsFormatError('bad SRV rdata length');
      return Buffer.concat([buf.subarray(off, off + 6), r.parts[0]]);
    }
    case TYPE.SOA: {
      const r = names(off, 2);
      if (r.o + 20 !== end) throw new DnsFormatError('bad SOA rdata length');
      return Buffer.concat([...r.parts, buf.subarray(r.o, end)]);
    }
    default:
      return Buffer.from(buf.subarray(off, end));
  }
}

/** Decodes a whole message (used for upstream replies). */
export function decodeMessage(buf: Buffer): Message {
  if (buf.length < 12) throw new DnsFormatError('message shorter than a header');
  const counts = [4, 6, 8, 10].map((o) => buf.readUInt16BE(o));
  let off = 12;
  const questions: Message['questions'] = [];
  for (let i = 0; i < counts[0]; i++) {
    const n = readName(buf, off);
    off = n.end;
    if (off + 4 > buf.length) throw new DnsFormatError('question runs past the end');
    questions.push({ wire: n.wire, type: buf.readUInt16BE(off), qclass: buf.readUInt16BE(off + 2) });
    off += 4;
  }
  const sections: Rr[][] = [[], [], []];
  let opt: Message['opt'];
  for (let s = 0; s < 3; s++) {
    for (let i = 0; i < counts[s + 1]; i++) {
      const n = readName(buf, off);
      off = n.end;
      if (off + 10 > buf.length) throw new DnsFormatError('record header runs past the end');
      const type = buf.readUInt16BE(off);
      const klass = buf.readUInt16BE(off + 2);
      const ttl = buf.readUInt32BE(off + 4);
      const rdlen = buf.readUInt16BE(off + 8);
      off += 10;
      if (off + rdlen > buf.length) throw new DnsFormatError('record data runs past the end');
      if (type === TYPE.OPT) {
        opt = { payload: klass, extRcode: ttl >>> 24, version: (ttl >>> 16) & 0xff };
      } else {
        sections[s].push({ name: n.wire, type, class: klass, ttl: Math.min(ttl, 0x7fffffff), rdata: decodeRdata(buf, type, off, rdlen) });
      }
      off += rdlen;
    }
  }
  return {
    id: buf.readUInt16BE(0),
    flags: buf.readUInt16BE(2),
    rcode: (buf[3] & 0x0f) | ((opt?.extRcode ?? 0) << 4),
    questions,
    answers: sections[0],
    authority: sections[1],
    additional: sections[2],
    opt,
  };
}

export interface Reply {
  id: number;
  rd: boolean;
  cd?: boolean;
  aa: boolean;
  tc?: boolean;
  rcode: number;
  question?: Buffer;
  answers: Rr[];
  authority: Rr[];
  additional: Rr[];
  /** Adds an OPT record with our payload size (when the query had EDNS). */
  opt: boolean;
  /** The query's DO bit, copied into our OPT (RFC 3225 §3). */
  do?: boolean;
}

/** Where the TTL fields of an encoded message are, so cached copies can age them. */
export interface Encoded { buf: Buffer; ttlOffsets: number[] }

/** Encodes a reply with owner-name compression (RDATA names are written uncompressed). */
export function encodeReply(r: Reply): Encoded {
  const chunks: Buffer[] = [];
  let size = 12;
  const seen = new Map<string, number>();
  const ttlOffsets: number[] = [];
  const header = Buffer.alloc(12);
  header.writeUInt16BE(r.id, 0);
  header[2] = 0x80 | (r.aa ? 0x04 : 0) | (r.tc ? 0x02 : 0) | (r.rd ? 0x01 : 0);
  header[3] = 0x80 | (r.cd ? 0x10 : 0) | (r.rcode & 0x0f);
  header.writeUInt16BE(r.question ? 1 : 0, 4);
  header.writeUInt16BE(r.answers.length, 6);
  header.writeUInt16BE(r.authority.length, 8);
  header.writeUInt16BE(r.additional.length + (r.opt ? 1 : 0), 10);
  chunks.push(header);
  const addName = (wire: Buffer): void => {
    let o = 0;
    while (wire[o] !== 0) {
      const key = wire.toString('latin1', o).toLowerCase();
      const at = seen.get(key);
      if (at !== undefined) {
        const p = Buffer.alloc(2);
        p.writeUInt16BE(0xc000 | at, 0);
        if (o) { chunks.push(wire.subarray(0, o)); size += o; }
        chunks.push(p); size += 2;
        return;
      }
      if (size + o < 0x4000) seen.set(key, size + o);
      o += wire[o] + 1;
    }
    chunks.push(wire); size += wire.length;
  };
  if (r.question) {
    // The question is echoed byte for byte (case preserved) and seeds compression.
    addName(r.question.subarray(0, r.question.length - 4));
    chunks.push(r.question.subarray(r.question.length - 4)); size += 4;
  }
  for (const rr of [...r.answers, ...r.authority, ...r.additional]) {
    addName(typeof rr.name === 'string' ? nameToWire(rr.name) : rr.name);
    const fixed = Buffer.alloc(10);
    fixed.writeUInt16BE(rr.type, 0);
    fixed.writeUInt16BE(rr.class, 2);
    fixed.writeUInt32BE(Math.max(0, Math.min(rr.ttl, 0x7fffffff)) >>> 0, 4);
    fixed.writeUInt16BE(rr.rdata.length, 8);
    ttlOffsets.push(size + 4);
    chunks.push(fixed, rr.rdata); size += 10 + rr.rdata.length;
  }
  if (r.opt) {
    const opt = Buffer.alloc(11);
    opt.writeUInt16BE(TYPE.OPT, 1);
    opt.writeUInt16BE(OUR_PAYLOAD, 3);
    opt[5] = (r.rcode >> 4) & 0xff;
    if (r.do) opt[7] = 0x80;
    chunks.push(opt); size += 11;
  }
  return { buf: Buffer.concat(chunks, size), ttlOffsets };
}

/** A reply with no records: errors, and the TC stub a UDP client retries over TCP. */
export function bareReply(q: { id: number; rd: boolean; question?: Buffer; opt: boolean; do?: boolean }, rcode: number, tc = false): Buffer {
  return encodeReply({ id: q.id, rd: q.rd, aa: false, tc, rcode, question: q.question, answers: [], authority: [], additional: [], opt: q.opt, do: q.do }).buf;
}

/** Builds an outgoing query (to an upstream) around a question taken verbatim from a client. */
export function buildQuery(id: number, question: Buffer, withOpt = true): Buffer {
  const out = Buffer.alloc(12 + question.length + (withOpt ? 11 : 0));
  out.writeUInt16BE(id, 0);
  out[2] = 0x01; // RD: we want recursion from our upstreams
  out.writeUInt16BE(1, 4);
  out.writeUInt16BE(withOpt ? 1 : 0, 10);
  question.copy(out, 12);
  if (withOpt) {
    const o = 12 + question.length;
    out.writeUInt16BE(TYPE.OPT, o + 1);
    out.writeUInt16BE(OUR_PAYLOAD, o + 3);
  }
  return out;
}

/** Question bytes for a presentation name (used when we chase a CNAME ourselves). */
export function questionFor(name: string, type: number): Buffer {
  const w = nameToWire(name);
  const out = Buffer.alloc(w.length + 4);
  w.copy(out, 0);
  out.writeUInt16BE(type, w.length);
  out.writeUInt16BE(CLASS_IN, w.length + 2);
  return out;
}
