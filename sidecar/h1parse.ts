/**
 * HTTP/1.1 message heads and chunked framing for the fast path (sidecar/fast.ts).
 * Deliberately narrow: a request head is accepted only when it is plain
 * HTTP/1.1 with a Host, no Upgrade/Expect/Transfer-Encoding and a sane
 * Content-Length; anything else is 'fallback' and the connection is handed to
 * `node:http`, which answers odd or bad traffic exactly as before.
 */

/** Hop-by-hop headers (RFC 9110 §7.6.1) never cross the proxy. */
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'proxy-authorization', 'proxy-authenticate']);
// RFC 9110 tchar, by char code.
const TCHAR = new Uint8Array(128);
for (const ch of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") TCHAR[ch.charCodeAt(0)] = 1;
const DIGITS = /^\d{1,15}$/;

export interface RequestHead {
  method: string;
  url: string;
  /** Lower-case names; repeated fields joined as node:http does (", ", cookies "; "). */
  headers: Record<string, string>;
  /** The end-to-end fields as received ("Name: value\r\n" each), ready to forward. */
  forward: string;
  /** Body length (0 when none). */
  contentLength: number;
  /** The client asked to close after this exchange. */
  close: boolean;
  /** Bytes of the head including the blank line. */
  length: number;
  /** The head as it goes upstream, rendered once per parse (a repeated head reuses it). */
  upstream?: string;
}

export type RequestParse = RequestHead | 'incomplete' | 'fallback';

interface Field { lower: string; name: string; value: string }

interface Scanned {
  start: string;
  fields: Field[];
  /** Field names listed in Connection (other than close/keep-alive): hop-by-hop for this message. */
  named: Set<string> | undefined;
  connection: string;
  /** Every field line already reads "Name: value" (one space, no trailing blanks): forwardable as is. */
  canonical: boolean;
  /** Offset of the first field line in the head text. */
  fieldsAt: number;
}

function headEnd(buf: Buffer): number {
  const i = buf.indexOf('\r\n\r\n', 0, 'latin1');
  return i < 0 ? -1 : i + 4;
}

/**
 * Splits a head (without its blank line) into start line and fields in one
 * pass over the characters; undefined when a line is malformed: a bare CR or
 * LF, a name that is not a token, a CTL other than HTAB in a value.
 */
function scanHead(text: string): Scanned | undefined {
  const n = text.length;
  let i = 0;
  for (; i < n; i++) {
    const ch = text.charCodeAt(i);
    if (ch === 13) break;
    if (ch === 10) return undefined;
  }
  const start = text.slice(0, i);
  const fieldsAt = i + 2;
  const fields: Field[] = [];
  let named: Set<string> | undefined;
  let connection = '';
  let canonical = true;
  while (i < n) {
    if (text.charCodeAt(i + 1) !== 10) return undefined;
    i += 2;
    const ns = i;
    for (let ch = text.charCodeAt(i); ch < 128 && TCHAR[ch] === 1; ch = text.charCodeAt(++i));
    if (i === ns || text.charCodeAt(i) !== 58) return undefined;
    const name = text.slice(ns, i);
    const colon = i++;
    let vs = -1;
    let ve = -1;
    for (; i < n; i++) {
      const ch = text.charCodeAt(i);
      if (ch === 32 || ch === 9) continue;
      if (ch < 32 || ch === 127) { if (ch === 13) break; return undefined; }
      if (vs < 0) vs = i;
      ve = i + 1;
    }
    const value = vs < 0 ? '' : text.slice(vs, ve);
    if (vs !== colon + 2 || ve !== i || text.charCodeAt(colon + 1) !== 32) canonical = false;
    const lower = name.toLowerCase();
    if (lower === 'connection') {
      connection = connection ? `${connection},${value}` : value;
      for (const t of value.toLowerCase().split(',')) { const c = t.trim(); if (c && c !== 'close' && c !== 'keep-alive') (named ??= new Set()).add(c); }
    }
    fields.push({ lower, name, value });
  }
  return { start, fields, named, connection, canonical, fieldsAt };
}

/** The fields to forward, "Name: value\r\n" each: a slice of the head itself when nothing is dropped or reformatted. */
function forwardOf(text: string, h: Scanned, keep: (f: Field) => boolean): string {
  let all = h.canonical;
  if (all) for (const f of h.fields) if (!keep(f)) { all = false; break; }
  if (all) return h.fields.length ? `${text.slice(h.fieldsAt)}\r\n` : '';
  let out = '';
  for (const f of h.fields) if (keep(f)) out += `${f.name}: ${f.value}\r\n`;
  return out;
}

/** "METHOD target HTTP/1.1": method and target, or undefined. */
function requestLine(line: string): [string, string] | undefined {
  const n = line.length;
  let i = 0;
  for (let ch = line.charCodeAt(0); ch < 128 && TCHAR[ch] === 1; ch = line.charCodeAt(++i));
  if (i === 0 || line.charCodeAt(i) !== 32 || n - 9 <= i + 1) return undefined;
  const ts = i + 1;
  const te = n - 9;
  if (line.slice(te) !== ' HTTP/1.1') return undefined;
  for (let j = ts; j < te; j++) {
    const ch = line.charCodeAt(j);
    // Whitespace (NBSP included, as in a regex's \s) and CTLs are not in a request target.
    if (ch <= 32 || ch === 127 || ch === 160) return undefined;
  }
  return [line.slice(0, i), line.slice(ts, te)];
}

/** "HTTP/1.x NNN reason": minor version, status, reason, or undefined. */
function statusLine(line: string): [number, number, string] | undefined {
  if (line.length < 12 || !line.startsWith('HTTP/1.') || line.charCodeAt(8) !== 32) return undefined;
  const minor = line.charCodeAt(7) - 48;
  const d0 = line.charCodeAt(9) - 48;
  const d1 = line.charCodeAt(10) - 48;
  const d2 = line.charCodeAt(11) - 48;
  if ((minor !== 0 && minor !== 1) || d0 < 1 || d0 > 9 || d1 < 0 || d1 > 9 || d2 < 0 || d2 > 9) return undefined;
  if (line.length === 12) return [minor, d0 * 100 + d1 * 10 + d2, ''];
  if (line.charCodeAt(12) !== 32) return undefined;
  for (let j = 13; j < line.length; j++) {
    const ch = line.charCodeAt(j);
    if ((ch < 32 && ch !== 9) || ch === 127) return undefined;
  }
  return [minor, d0 * 100 + d1 * 10 + d2, line.slice(13)];
}

const CLOSE = /(?:^|,)\s*close\s*(?:,|$)/i;

/** Parses the request head at the start of `buf`. */
export function parseRequestHead(buf: Buffer, maxHeaderSize: number): RequestParse {
  const end = headEnd(buf);
  if (end < 0) return buf.length > maxHeaderSize ? 'fallback' : 'incomplete';
  if (end > maxHeaderSize) return 'fallback';
  const text = buf.toString('latin1', 0, end - 4);
  const h = scanHead(text);
  if (!h) return 'fallback';
  const line = requestLine(h.start);
  if (!line || line[0] === 'CONNECT' || line[0] === 'PRI') return 'fallback';
  const headers: Record<string, string> = {};
  let contentLength = 0;
  for (const f of h.fields) {
    const { lower, value } = f;
    if (lower === 'transfer-encoding' || lower === 'upgrade' || lower === 'expect') return 'fallback';
    const known = headers[lower];
    if (known !== undefined) {
      if (lower === 'host' || lower === 'content-length') return 'fallback';
      headers[lower] = `${known}${lower === 'cookie' ? '; ' : ', '}${value}`;
    } else headers[lower] = value;
    if (lower === 'content-length') {
      if (!DIGITS.test(value)) return 'fallback';
      contentLength = Number(value);
    }
  }
  if (headers.host === undefined) return 'fallback';
  const named = h.named;
  const forward = forwardOf(text, h, (f) => !HOP.has(f.lower) && !named?.has(f.lower));
  const close = h.connection !== '' && CLOSE.test(h.connection);
  return { method: line[0], url: line[1], headers, forward, contentLength, close, length: end };
}

export type Framing = 'none' | 'length' | 'chunked' | 'close';

export interface ResponseHead {
  status: number;
  reason: string;
  /** End-to-end fields as received, Content-Length included, hop-by-hop removed. */
  forward: string;
  framing: Framing;
  /** Body length when framing is 'length'. */
  contentLength: number;
  /** The upstream connection may carry another request afterwards. */
  reusable: boolean;
  /** The server's `Keep-Alive: timeout=N` hint in ms (0: none). */
  keepAliveMs: number;
  length: number;
  /** The head as it goes to the client in the common case (no added fields), rendered once per parse. */
  downstream?: string;
}

export class BadResponseError extends Error {}

/**
 * Parses the response head at the start of `buf`; undefined when incomplete.
 * Framing follows RFC 9112 §6.3: no body for HEAD, 1xx, 204 and 304; then
 * chunked, Content-Length, or until the connection closes.
 */
export function parseResponseHead(buf: Buffer, method: string, maxHeaderSize: number): ResponseHead | undefined {
  const end = headEnd(buf);
  if (end < 0) {
    if (buf.length > maxHeaderSize) throw new BadResponseError('response head too large');
    return undefined;
  }
  const text = buf.toString('latin1', 0, end - 4);
  const h = scanHead(text);
  if (!h) throw new BadResponseError('malformed response head');
  const sl = statusLine(h.start);
  if (!sl) throw new BadResponseError(`malformed status line ${JSON.stringify(h.start.slice(0, 40))}`);
  const [minor, status, reason] = sl;
  let length = -1;
  let chunked = false;
  let te = false;
  let keepAliveMs = 0;
  let firstLength: Field | undefined;
  for (const f of h.fields) {
    const { lower, value } = f;
    if (lower === 'keep-alive') {
      const t = /(?:^|[\s,;])timeout=(\d+)/i.exec(value);
      if (t) keepAliveMs = Number(t[1]) * 1000;
    } else if (lower === 'content-length') {
      if (!DIGITS.test(value) || (length >= 0 && Number(value) !== length)) throw new BadResponseError('bad content-length in response');
      if (length < 0) { length = Number(value); firstLength = f; }
    } else if (lower === 'transfer-encoding') {
      te = true;
      chunked = /(?:^|,)\s*chunked\s*$/i.test(value);
    }
  }
  const named = h.named;
  // A repeated Content-Length goes once; beside Transfer-Encoding it is dropped (RFC 9112 §6.3 item 3).
  const forward = forwardOf(text, h, (f) => !HOP.has(f.lower) && !named?.has(f.lower) && (f.lower !== 'content-length' || (!te && f === firstLength)));
  const connClose = h.connection !== '' && CLOSE.test(h.connection);
  const http10 = minor === 0 && !/(?:^|,)\s*keep-alive\s*(?:,|$)/i.test(h.connection);
  let framing: Framing;
  if (method === 'HEAD' || status < 200 || status === 204 || status === 304) framing = 'none';
  else if (te) framing = chunked ? 'chunked' : 'close';
  else if (length >= 0) framing = 'length';
  else framing = 'close';
  return { status, reason, forward, framing, contentLength: length < 0 ? 0 : length, reusable: !connClose && !http10 && framing !== 'close', keepAliveMs, length: end };
}

const enum C { Size, Ext, SizeLf, Data, DataCr, DataLf, TrailerStart, Trailer, TrailerLf, FinalLf, Done }

/**
 * Finds where a chunked body ends without decoding it: the bytes are passed
 * through as they are (extensions and trailers included).
 */
export class ChunkedScanner {
  private state = C.Size;
  private size = 0;
  private digits = 0;

  /** Scans `b` from `i`; returns the offset just past the body's end, or -1 when it goes on. Throws on bad framing. */
  scan(b: Buffer, i: number): number {
    const n = b.length;
    while (i < n) {
      const ch = b[i];
      switch (this.state) {
        case C.Size: {
          const v = ch >= 48 && ch <= 57 ? ch - 48 : ch >= 97 && ch <= 102 ? ch - 87 : ch >= 65 && ch <= 70 ? ch - 55 : -1;
          if (v >= 0) {
            if (++this.digits > 12) throw new BadResponseError('chunk size too large');
            this.size = this.size * 16 + v;
          } else if (this.digits === 0) throw new BadResponseError('bad chunk size');
          else if (ch === 13) this.state = C.SizeLf;
          else if (ch === 59 || ch === 32 || ch === 9) this.state = C.Ext;
          else throw new BadResponseError('bad chunk size');
          i++;
          break;
        }
        case C.Ext:
          if (ch === 13) this.state = C.SizeLf; else if (ch === 10) throw new BadResponseError('bad chunk extension');
          i++;
          break;
        case C.SizeLf:
          if (ch !== 10) throw new BadResponseError('bad chunk line');
          this.state = this.size === 0 ? C.TrailerStart : C.Data;
          i++;
          break;
        case C.Data: {
          const take = Math.min(this.size, n - i);
          this.size -= take;
          i += take;
          if (this.size === 0) this.state = C.DataCr;
          break;
        }
        case C.DataCr:
          if (ch !== 13) throw new BadResponseError('chunk not followed by CRLF');
          this.state = C.DataLf; i++;
          break;
        case C.DataLf:
          if (ch !== 10) throw new BadResponseError('chunk not followed by CRLF');
          this.state = C.Size; this.size = 0; this.digits = 0; i++;
          break;
        case C.TrailerStart:
          this.state = ch === 13 ? C.FinalLf : C.Trailer; i++;
          break;
        case C.Trailer:
          if (ch === 13) this.state = C.TrailerLf;
          i++;
          break;
        case C.TrailerLf:
          if (ch !== 10) throw new BadResponseError('bad trailer line');
          this.state = C.TrailerStart; i++;
          break;
        case C.FinalLf:
          if (ch !== 10) throw new BadResponseError('bad chunked body end');
          this.state = C.Done;
          return i + 1;
        default:
          return i;
      }
    }
    return -1;
  }
}

/**
 * The last head parsed on a connection (or pool) and its bytes. Clients and
 * servers repeat byte-identical heads (a keep-alive client's requests, a
 * backend's responses), and identical bytes parse the same: a head is checked
 * with one memcmp instead of being decoded, scanned and split again. Parsed
 * heads are never mutated downstream, so one object serves every repeat.
 */
export class HeadMemo<T> {
  private bytes: Buffer | undefined;
  private key = '';
  private value: T | undefined;

  /** The remembered parse when `buf` starts with exactly the remembered head (it ends at its blank line, so the heads are equal). */
  get(buf: Buffer, key = ''): T | undefined {
    const b = this.bytes;
    if (b === undefined || key !== this.key || buf.length < b.length || buf.compare(b, 0, b.length, 0, b.length) !== 0) return undefined;
    return this.value;
  }

  set(buf: Buffer, length: number, value: T, key = ''): void {
    this.bytes = Buffer.from(buf.subarray(0, length));
    this.key = key;
    this.value = value;
  }
}

/** parseRequestHead through a connection's memo. */
export function parseRequestHeadMemo(buf: Buffer, maxHeaderSize: number, memo: HeadMemo<RequestHead>): RequestParse {
  const known = memo.get(buf);
  if (known) return known;
  const h = parseRequestHead(buf, maxHeaderSize);
  if (typeof h === 'object') memo.set(buf, h.length, h);
  return h;
}

/** parseResponseHead through a pool's memo (keyed by method too: HEAD changes the framing). */
export function parseResponseHeadMemo(buf: Buffer, method: string, maxHeaderSize: number, memo: HeadMemo<ResponseHead>): ResponseHead | undefined {
  const known = memo.get(buf, method);
  if (known) return known;
  const h = parseResponseHead(buf, method, maxHeaderSize);
  if (h) memo.set(buf, h.length, h, method);
  return h;
}
