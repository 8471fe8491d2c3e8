/**
 * HTTP/1.1 message heads and chunked framing for the fast path (sidecar/fast.ts).
 * Deliberately narrow: a request head is accepted only when it is plain
 * HTTP/1.1 with a Host, no Upgrade/Expect/Transfer-Encoding and a sane
 * Content-Length; anything else is 'fallback' and the connection is handed to
 * `node:http`, which answers odd or bad traffic exactly as before.
 */

/** Hop-by-hop headers (RFC 9110 §7.6.1) never cross the proxy. */
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'proxy-authorization', 'proxy-authenticate']);
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// CTLs other than HTAB are not allowed in a field value.
const BAD_VALUE = /[\x00-\x08\x0a-\x1f\x7f]/;
const REQUEST_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([^\s\x00-\x1f\x7f]+) HTTP\/1\.1$/;
const STATUS_LINE = /^HTTP\/1\.([01]) ([1-9]\d\d)(?: ([^\x00-\x08\x0a-\x1f\x7f]*))?$/;
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
}

export type RequestParse = RequestHead | 'incomplete' | 'fallback';

interface Field { lower: string; line: string }

function headEnd(buf: Buffer): number {
  const i = buf.indexOf('\r\n\r\n', 0, 'latin1');
  return i < 0 ? -1 : i + 4;
}

/** Splits a head into its start line and fields; undefined when a line is malformed. */
function fieldsOf(text: string): { start: string; fields: Field[]; named: Set<string> | undefined; connection: string } | undefined {
  const lines = text.split('\r\n');
  const fields: Field[] = [];
  let named: Set<string> | undefined;
  let connection = '';
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    const c = line.indexOf(':');
    if (c <= 0) return undefined;
    const name = line.slice(0, c);
    if (!TOKEN.test(name)) return undefined;
    const value = line.slice(c + 1).trim();
    if (BAD_VALUE.test(value) || line.includes('\r') || line.includes('\n')) return undefined;
    const lower = name.toLowerCase();
    if (lower === 'connection') {
      connection = connection ? `${connection},${value}` : value;
      for (const t of value.toLowerCase().split(',')) { const n = t.trim(); if (n && n !== 'close' && n !== 'keep-alive') (named ??= new Set()).add(n); }
    }
    fields.push({ lower, line: `${name}: ${value}\r\n` });
  }
  if (lines[0].includes('\n')) return undefined;
  return { start: lines[0], fields, named, connection };
}

/** Parses the request head at the start of `buf`. */
export function parseRequestHead(buf: Buffer, maxHeaderSize: number): RequestParse {
  const end = headEnd(buf);
  if (end < 0) return buf.length > maxHeaderSize ? 'fallback' : 'incomplete';
  if (end > maxHeaderSize) return 'fallback';
  const split = fieldsOf(buf.toString('latin1', 0, end - 4));
  if (!split) return 'fallback';
  const m = REQUEST_LINE.exec(split.start);
  if (!m || m[1] === 'CONNECT' || m[1] === 'PRI') return 'fallback';
  const headers: Record<string, string> = {};
  let forward = '';
  let contentLength = 0;
  for (const f of split.fields) {
    const { lower } = f;
    if (lower === 'transfer-encoding' || lower === 'upgrade' || lower === 'expect') return 'fallback';
    const value = f.line.slice(f.line.indexOf(':') + 2, -2);
    const known = headers[lower];
    if (known !== undefined) {
      if (lower === 'host' || lower === 'content-length') return 'fallback';
      headers[lower] = `${known}${lower === 'cookie' ? '; ' : ', '}${value}`;
    } else headers[lower] = value;
    if (lower === 'content-length') {
      if (!DIGITS.test(value)) return 'fallback';
      contentLength = Number(value);
    }
    if (!HOP.has(lower) && !split.named?.has(lower)) forward += f.line;
  }
  if (headers.host === undefined) return 'fallback';
  const close = /(?:^|,)\s*close\s*(?:,|$)/i.test(split.connection);
  return { method: m[1], url: m[2], headers, forward, contentLength, close, length: end };
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
  const split = fieldsOf(buf.toString('latin1', 0, end - 4));
  if (!split) throw new BadResponseError('malformed response head');
  const m = STATUS_LINE.exec(split.start);
  if (!m) throw new BadResponseError(`malformed status line ${JSON.stringify(split.start.slice(0, 40))}`);
  const status = Number(m[2]);
  let forward = '';
  let length = -1;
  let chunked = false;
  let te = false;
  let keepAliveMs = 0;
  for (const f of split.fields) {
    const { lower } = f;
    if (lower === 'keep-alive') {
      const t = /(?:^|[\s,;])timeout=(\d+)/i.exec(f.line);
      if (t) keepAliveMs = Number(t[1]) * 1000;
    } else if (lower === 'content-length') {
      const v = f.line.slice(f.line.indexOf(':') + 2, -2);
      if (!DIGITS.test(v) || (length >= 0 && Number(v) !== length)) throw new BadResponseError('bad content-length in response');
      if (length >= 0) continue;
      length = Number(v);
    } else if (lower === 'transfer-encoding') {
      te = true;
      chunked = /(?:^|,)\s*chunked\s*$/i.test(f.line.slice(f.line.indexOf(':') + 1, -2));
    }
    if (!HOP.has(lower) && !split.named?.has(lower)) forward += f.line;
  }
  const connClose = /(?:^|,)\s*close\s*(?:,|$)/i.test(split.connection);
  const http10 = m[1] === '0' && !/(?:^|,)\s*keep-alive\s*(?:,|$)/i.test(split.connection);
  let framing: Framing;
  if (method === 'HEAD' || status < 200 || status === 204 || status === 304) framing = 'none';
  else if (te) framing = chunked ? 'chunked' : 'close';
  else if (length >= 0) framing = 'length';
  else framing = 'close';
  // A Content-Length beside Transfer-Encoding is dropped (RFC 9112 §6.3 item 3).
  if (te && length >= 0) forward = forward.replace(/^content-length:[^\r]*\r\n/gim, '');
  return { status, reason: m[3] ?? '', forward, framing, contentLength: length < 0 ? 0 : length, reusable: !connClose && !http10 && framing !== 'close', keepAliveMs, length: end };
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
