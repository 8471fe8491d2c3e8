/**
 * The HTTP/1.1 fast path: its head parsing and chunked framing as tables, then
 * end to end through an in-process sidecar against a backend that answers with
 * hand-made framing (split writes, trailers, close-delimited bodies, a cut).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as http from 'node:http';
import * as net from 'node:net';
import { ChunkedScanner, HeadMemo, parseRequestHead, parseRequestHeadMemo, parseResponseHead, parseResponseHeadMemo, type RequestHead, type ResponseHead } from '../../sidecar/h1parse';
import { createSidecar } from '../../sidecar/sidecar';
import { memorySource } from '../../sidecar/sources';
import { endpointsOf, policy, rawExchange, service } from './fixtures';

const b = (s: string) => Buffer.from(s, 'latin1');

test('request heads: plain HTTP/1.1 is taken, anything odd falls back to node:http', () => {
  const h = parseRequestHead(b('GET /a?b=1 HTTP/1.1\r\nHost: reviews:9080\r\nX-A: 1\r\nx-a: 2\r\nCookie: a=1\r\ncookie: b=2\r\nConnection: keep-alive, x-hop\r\nX-Hop: no\r\nKeep-Alive: timeout=5\r\n\r\nrest'), 16384) as RequestHead;
  assert.equal(h.method, 'GET');
  assert.equal(h.url, '/a?b=1');
  assert.equal(h.headers['x-a'], '1, 2');
  assert.equal(h.headers.cookie, 'a=1; b=2');
  assert.equal(h.forward, 'Host: reviews:9080\r\nX-A: 1\r\nx-a: 2\r\nCookie: a=1\r\ncookie: b=2\r\n', 'hop-by-hop and Connection-named fields dropped');
  assert.equal(h.length, b('GET /a?b=1 HTTP/1.1\r\nHost: reviews:9080\r\nX-A: 1\r\nx-a: 2\r\nCookie: a=1\r\ncookie: b=2\r\nConnection: keep-alive, x-hop\r\nX-Hop: no\r\nKeep-Alive: timeout=5\r\n\r\n').length);
  assert.equal(h.close, false);
  const post = parseRequestHead(b('POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 12\r\nconnection: close\r\n\r\n'), 16384) as RequestHead;
  assert.equal(post.contentLength, 12);
  assert.equal(post.close, true);
  assert.equal(parseRequestHead(b('GET / HTTP/1.1\r\nHost: x\r\n'), 16384), 'incomplete');
  assert.equal(parseRequestHead(b(`GET / HTTP/1.1\r\nHost: x\r\nx: ${'a'.repeat(100)}`), 64), 'fallback', 'an oversized head goes to node:http (431)');
  const fallbacks = [
    'GET / HTTP/1.0\r\nHost: x\r\n\r\n',
    'GET / HTTP/1.1\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n',
    'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n',
    'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n',
    'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n',
    'POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n',
    'GET / HTTP/1.1\r\nHost : x\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: x\nX: y\r\n\r\n',
    'GARBAGE\r\n\r\n',
    'CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: x\r\nX: a\x7f\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: x\r\n: y\r\n\r\n',
    'GET /a\xa0b HTTP/1.1\r\nHost: x\r\n\r\n',
    'GET  / HTTP/1.1\r\nHost: x\r\n\r\n',
    'GET / HTTP/1.1 \r\nHost: x\r\n\r\n',
    'G\xe9T / HTTP/1.1\r\nHost: x\r\n\r\n',
  ];
  for (const f of fallbacks) assert.equal(parseRequestHead(b(f), 16384), 'fallback', JSON.stringify(f));
  // Blanks around a value are not part of it; such lines are forwarded rewritten as "Name: value".
  const odd = parseRequestHead(b('GET / HTTP/1.1\r\nHost:x\r\nX-B: \t two words \t\r\nX-E:\r\nX-O: \xe9t\xe9\r\n\r\n'), 16384) as RequestHead;
  assert.deepEqual(odd.headers, { host: 'x', 'x-b': 'two words', 'x-e': '', 'x-o': '\xe9t\xe9' });
  assert.equal(odd.forward, 'Host: x\r\nX-B: two words\r\nX-E: \r\nX-O: \xe9t\xe9\r\n');
  assert.equal((parseRequestHead(b('GET * HTTP/1.1\r\nHost: x\r\n\r\n'), 16384) as RequestHead).url, '*');
});

test('response heads: framing per RFC 9112 §6.3 and socket reuse', () => {
  const cases: Array<[string, string, string, boolean, number?]> = [
    ['GET', 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n', 'length', true, 5],
    ['HEAD', 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n', 'none', true],
    ['GET', 'HTTP/1.1 204 No Content\r\n\r\n', 'none', true],
    ['GET', 'HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n', 'none', true],
    ['GET', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n', 'chunked', true],
    ['GET', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n', 'close', false],
    ['GET', 'HTTP/1.1 200 OK\r\n\r\n', 'close', false],
    ['GET', 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n', 'length', false, 2],
    ['GET', 'HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n', 'length', false, 2],
    ['GET', 'HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n', 'length', true, 2],
  ];
  for (const [method, text, framing, reusable, len] of cases) {
    const h = parseResponseHead(b(text), method, 65536)!;
    assert.equal(h.framing, framing, text);
    assert.equal(h.reusable, reusable, text);
    if (len !== undefined) assert.equal(h.contentLength, len);
  }
  const h = parseResponseHead(b('HTTP/1.1 503 Service Unavailable\r\nConnection: close, x-secret\r\nX-Secret: 1\r\nKeep-Alive: 5\r\nX-Ok: 1\r\nTransfer-Encoding: chunked\r\nContent-Length: 7\r\n\r\n'), 'GET', 65536)!;
  assert.equal(h.status, 503);
  assert.equal(h.reason, 'Service Unavailable');
  assert.equal(h.forward, 'X-Ok: 1\r\n', 'hop-by-hop, Connection-named and a Content-Length beside chunked are dropped');
  assert.equal(parseResponseHead(b('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n'), 'GET', 65536), undefined);
  const dup = parseResponseHead(b('HTTP/1.1 200\r\nContent-Length: 2\r\nX-A:  1 \r\ncontent-length: 2\r\n\r\n'), 'GET', 65536)!;
  assert.deepEqual([dup.status, dup.reason, dup.contentLength, dup.forward], [200, '', 2, 'Content-Length: 2\r\nX-A: 1\r\n'], 'an equal repeated Content-Length goes once');
  assert.equal(parseResponseHead(b('HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nContent-Length: 0\r\n\r\n'), 'GET', 65536)!.keepAliveMs, 5000, 'the server\'s idle timeout hint is kept');
  for (const bad of ['HTTP/1.1 2000 OK\r\n\r\n', 'HTTP/2 200 OK\r\n\r\n', 'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n', 'HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n', 'HTTP/1.1 099 X\r\n\r\n', 'HTTP/1.1 200 O\x00K\r\n\r\n', 'HTTP/1.2 200 OK\r\n\r\n', 'HTTP/1.1 200 OK\r\nX\r\n\r\n']) {
    assert.throws(() => parseResponseHead(b(bad), 'GET', 65536), JSON.stringify(bad));
  }
});

test('head memo: an identical head is the same parse; one different byte, a shorter buffer or another method is parsed anew', () => {
  const b = (t: string) => Buffer.from(t, 'latin1');
  const reqs = new HeadMemo<RequestHead>();
  const first = parseRequestHeadMemo(b('GET /a HTTP/1.1\r\nHost: reviews:9080\r\n\r\n'), 16384, reqs) as RequestHead;
  assert.equal(first.url, '/a');
  // The same head followed by the next pipelined bytes: remembered.
  assert.equal(parseRequestHeadMemo(b('GET /a HTTP/1.1\r\nHost: reviews:9080\r\n\r\nGET /b'), 16384, reqs), first);
  const other = parseRequestHeadMemo(b('GET /b HTTP/1.1\r\nHost: reviews:9080\r\n\r\n'), 16384, reqs) as RequestHead;
  assert.equal(other.url, '/b');
  assert.equal(parseRequestHeadMemo(b('GET /b HTTP/1.1\r\nHost: reviews:90'), 16384, reqs), 'incomplete');
  const longer = parseRequestHeadMemo(b('GET /b HTTP/1.1\r\nHost: reviews:9080\r\nX-A: 1\r\n\r\n'), 16384, reqs) as RequestHead;
  assert.notEqual(longer, other, 'a head that differs after the remembered one ends is parsed anew');
  assert.equal(longer.headers['x-a'], '1');
  const res = new HeadMemo<ResponseHead>();
  const ok = b('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
  const get = parseResponseHeadMemo(ok, 'GET', 65536, res)!;
  assert.equal(parseResponseHeadMemo(ok, 'GET', 65536, res), get);
  assert.equal(get.framing, 'length');
  assert.equal(parseResponseHeadMemo(ok, 'HEAD', 65536, res)!.framing, 'none', 'HEAD frames the same bytes differently');
  assert.equal(parseResponseHeadMemo(b('HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok!'), 'GET', 65536, res)!.contentLength, 3);
});

test('chunked framing: the end is found wherever the body is split; bad framing throws', () => {
  const body = b('5;ext=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nTrailer-A: 1\r\nTrailer-B: 2\r\n\r\n');
  const next = b('HTTP/1.1 200 OK\r\n');
  const whole = Buffer.concat([body, next]);
  assert.equal(new ChunkedScanner().scan(whole, 0), body.length);
  for (let cut = 1; cut < body.length; cut++) {
    const s = new ChunkedScanner();
    assert.equal(s.scan(whole.subarray(0, cut), 0), -1, `cut ${cut}`);
    assert.equal(s.scan(whole.subarray(cut), 0), body.length - cut, `cut ${cut}`);
  }
  assert.equal(new ChunkedScanner().scan(b('0\r\n\r\n'), 0), 5);
  for (const bad of ['x\r\n', '5\r\nhelloXX', '\r\n', '5\nhello\r\n', 'fffffffffffff\r\n']) assert.throws(() => new ChunkedScanner().scan(b(bad), 0), JSON.stringify(bad));
});

// ---- end to end

interface RawBackend { port: number; connections: number; close(): Promise<void> }

/** A backend answering by path: node:http parses requests, the raw socket writes hand-made responses. */
async function rawBackend(address: string): Promise<RawBackend> {
  const big = crypto.randomBytes(1 << 20);
  const st = { connections: 0 };
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    const echo = `${req.method} ${req.url} ${body.length} ${crypto.createHash('sha1').update(body).digest('hex').slice(0, 12)}`;
    const s = req.socket;
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/chunked') {
      // Chunks and trailers in separate segments.
      res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-sum' });
      for (const p of ['abcd', echo]) { res.write(p); await new Promise((r) => setTimeout(r, 5)); }
      res.addTrailers({ 'x-sum': '42' });
      res.end();
    } else if (path === '/close') {
      s.end(`HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil-close ${echo}`);
    } else if (path === '/cut') {
      s.write('HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly-some');
      setTimeout(() => s.destroy(), 20);
    } else if (path === '/big') {
      res.writeHead(200, { 'content-length': big.length, 'x-sha': crypto.createHash('sha1').update(big).digest('hex') });
      res.end(big);
    } else if (path === '/204') {
      res.writeHead(204); res.end();
    } else if (path === '/304') {
      res.writeHead(304, { etag: '"x"' }); res.end();
    } else {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(echo) });
      res.end(req.method === 'HEAD' ? undefined : echo);
    }
  });
  server.on('connection', () => { st.connections++; });
  await new Promise<void>((r) => server.listen(0, address, r));
  return {
    port: (server.address() as net.AddressInfo).port,
    get connections() { return st.connections; },
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

async function withSidecar(fn: (port: number, be: RawBackend) => Promise<void>, makeBackend = rawBackend, keepAliveTimeoutMs?: number): Promise<void> {
  const be = await makeBackend('127.0.0.2');
  const source = memorySource({
    services: [service('reviews', 9080, be.port, { app: 'reviews' })],
    policies: [policy({ service: 'reviews' })],
    endpoints: endpointsOf([{ name: 'b0', version: 'v1', address: '127.0.0.2' }], 'reviews'),
  });
  const sc = createSidecar({ source, host: '127.0.0.1', outboundPort: 0, workload: 'productpage', namespace: 'default', sniffTimeoutMs: 200, keepAliveTimeoutMs });
  await sc.start();
  try { await fn(sc.ports.outbound, be); } finally { await sc.stop(); await be.close(); }
}

const count = (text: string, s: string) => text.split(s).length - 1;

/** Writes `parts` one TCP segment at a time (waiting between) and collects the answer until `until`. */
function segmented(port: number, parts: (string | Buffer)[], until: (t: string) => boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    s.setNoDelay(true);
    let got = '';
    s.on('data', (d) => { got += d.toString('latin1'); if (until(got)) { s.destroy(); resolve(got); } });
    s.on('close', () => resolve(got));
    s.on('error', reject);
    let i = 0;
    const step = () => { if (i < parts.length) { s.write(parts[i++]); setTimeout(step, 10); } };
    s.once('connect', step);
  });
}

const H = 'Host: reviews:9080\r\n';

test('fast path end to end: pipelining, split heads, bodies both ways, framing and pooling', async (t) => {
  await withSidecar(async (port, be) => {
    await t.test('pipelined requests are answered in order on one connection', async () => {
      const got = await rawExchange(port, `GET /p/1 HTTP/1.1\r\n${H}\r\nGET /p/2 HTTP/1.1\r\n${H}\r\nPOST /p/3 HTTP/1.1\r\n${H}Content-Length: 3\r\n\r\nabcGET /p/4 HTTP/1.1\r\n${H}\r\n`, (x) => x.includes('GET /p/4 0'));
      assert.equal(count(got, 'HTTP/1.1 200 OK'), 4, got);
      const order = [...got.matchAll(/(GET|POST) \/p\/(\d)/g)].map((m) => m[2]).join('');
      assert.equal(order, '1234');
      assert.match(got, /POST \/p\/3 3 a9993e364706/, 'the pipelined body went upstream');
    });

    await t.test('a head and a body split across TCP segments', async () => {
      // The first segment must hold the method: the listener sniffs it to tell HTTP from raw TCP.
      const got = await segmented(port, ['POST /split HT', 'TP/1.1\r\nHo', 'st: reviews:9080\r\nContent-Le', 'ngth: 6\r\n', '\r', '\nabc', 'def'], (x) => x.includes('POST /split 6'));
      assert.match(got, /^HTTP\/1\.1 200 OK/);
      assert.match(got, /POST \/split 6 1f8ac10f23c5/);
    });

    await t.test('a chunked request body and a large one are forwarded whole (node:http path)', async () => {
      const chunked = await rawExchange(port, `POST /c HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n`, (x) => x.includes('POST /c 6'));
      assert.match(chunked, /POST \/c 6 1f8ac10f23c5/);
      const large = crypto.randomBytes(300_000);
      const sha = crypto.createHash('sha1').update(large).digest('hex').slice(0, 12);
      const got = await rawExchange(port, Buffer.concat([b(`PUT /large HTTP/1.1\r\n${H}Content-Length: ${large.length}\r\n\r\n`), large]), (x) => x.includes(sha));
      assert.match(got, new RegExp(`PUT /large 300000 ${sha}`));
    });

    await t.test('a large response body arrives whole', async () => {
      const res = await new Promise<{ sha: string; expected: string; len: number }>((resolve, reject) => {
        http.get({ port, host: '127.0.0.1', path: '/big', headers: { host: 'reviews:9080' }, agent: false }, (r) => {
          const h = crypto.createHash('sha1');
          let len = 0;
          r.on('data', (c: Buffer) => { h.update(c); len += c.length; });
          r.on('end', () => resolve({ sha: h.digest('hex'), expected: String(r.headers['x-sha']), len }));
          r.on('error', reject);
        }).on('error', reject);
      });
      assert.equal(res.len, 1 << 20);
      assert.equal(res.sha, res.expected);
    });

    await t.test('a chunked response with trailers, written in pieces, passes through', async () => {
      const got = await rawExchange(port, `GET /chunked HTTP/1.1\r\n${H}\r\nGET /after HTTP/1.1\r\n${H}\r\n`, (x) => x.includes('GET /after 0'));
      assert.match(got, /transfer-encoding: chunked\r\n/i);
      assert.match(got, /4\r\nabcd\r\n/);
      assert.match(got, /0\r\nx-sum: 42\r\n\r\nHTTP\/1\.1 200 OK/, 'trailers kept, next response follows on the same connection');
      assert.doesNotMatch(got, /trailer: x-sum/i, 'Trailer is hop-by-hop');
    });

    await t.test('a close-delimited response is relayed and the client connection closed after it', async () => {
      const got = await rawExchange(port, `GET /close HTTP/1.1\r\n${H}\r\n`);
      assert.match(got, /^HTTP\/1\.1 200 OK\r\n/);
      assert.match(got, /connection: close\r\n/i);
      assert.match(got, /\r\n\r\nuntil-close GET \/close 0/);
      const again = await rawExchange(port, `GET /again HTTP/1.1\r\n${H}Connection: close\r\n\r\n`);
      assert.match(again, /GET \/again 0/);
    });

    await t.test('an upstream that closes mid-response cuts the client, and the next request is served', async () => {
      const got = await rawExchange(port, `GET /cut HTTP/1.1\r\n${H}\r\n`);
      assert.match(got, /^HTTP\/1\.1 200 OK\r\n[\s\S]*content-length: 1000\r\n[\s\S]*only-some$/i);
      assert.ok(got.length < 1000, 'never more than the upstream sent');
      const again = await rawExchange(port, `GET /ok HTTP/1.1\r\n${H}Connection: close\r\n\r\n`);
      assert.match(again, /GET \/ok 0/);
    });

    await t.test('HEAD, 204 and 304 carry no body; the next pipelined response is intact', async () => {
      const got = await rawExchange(port, `HEAD /h HTTP/1.1\r\n${H}\r\nGET /204 HTTP/1.1\r\n${H}\r\nGET /304 HTTP/1.1\r\n${H}\r\nGET /last HTTP/1.1\r\n${H}\r\n`, (x) => x.includes('GET /last 0'));
      const heads = got.split('HTTP/1.1 ').slice(1).map((r) => r.slice(0, 3));
      assert.deepEqual(heads, ['200', '204', '304', '200'], got);
      assert.match(got, /content-length: 22\r\n[^]*?\r\n\r\nHTTP\/1\.1 204/i, 'HEAD keeps its Content-Length and sends no body');
      assert.match(got, /\r\n\r\nHTTP\/1\.1 304[^]*?\r\n\r\nHTTP\/1\.1 200/);
    });

    await t.test('upstream sockets are pooled across requests', async () => {
      const before = be.connections;
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      for (let i = 0; i < 30; i++) {
        const r = await new Promise<number>((resolve, reject) => http.get({ port, host: '127.0.0.1', path: `/n/${i}`, headers: { host: 'reviews:9080' }, agent }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode!)); }).on('error', reject));
        assert.equal(r, 200);
      }
      agent.destroy();
      assert.ok(be.connections - before <= 2, `30 sequential requests opened ${be.connections - before} upstream connections`);
    });
  });
});

/** Answers the first request of each connection; a second one finds the connection closing (a server's idle close racing the request). */
async function closingBackend(address: string): Promise<RawBackend> {
  const st = { connections: 0 };
  const server = net.createServer((s) => {
    st.connections++;
    let seen = '';
    let answered = false;
    s.on('data', (d) => {
      if (answered) { s.destroy(); return; }
      seen += d.toString('latin1');
      if (!seen.includes('\r\n\r\n')) return;
      answered = true;
      s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    });
    s.on('error', () => s.destroy());
  });
  await new Promise<void>((r) => server.listen(0, address, r));
  return {
    port: (server.address() as net.AddressInfo).port,
    get connections() { return st.connections; },
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

test('a pooled socket the server closed is replaced for an idempotent request, not for a POST', async () => {
  await withSidecar(async (port, be) => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const one = (method: string) => new Promise<number>((resolve, reject) => {
      http.request({ port, host: '127.0.0.1', method, path: '/', headers: { host: 'reviews:9080', 'content-length': '0' }, agent }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode!)); }).on('error', reject).end();
    });
    try {
      assert.equal(await one('GET'), 200);
      assert.equal(await one('GET'), 200, 'the stale socket was replaced');
      assert.equal(be.connections, 2);
      assert.equal(await one('POST'), 502, 'a POST is not sent twice');
    } finally { agent.destroy(); }
  }, closingBackend);
});

test('keep-alive: an idle client connection is closed after the timeout, a busy one is not', { timeout: 30_000 }, async () => {
  await withSidecar(async (port) => {
    const open = (): Promise<{ s: net.Socket; closed: Promise<void>; ask(): Promise<string> }> => new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1');
      let got = '';
      let waiting: ((t: string) => void) | undefined;
      s.on('data', (d) => { got += d.toString('latin1'); if (waiting && /\r\n\r\nGET \/ 0 [0-9a-f]{12}$/.test(got)) { const w = waiting; waiting = undefined; const t = got; got = ''; w(t); } });
      s.on('error', reject);
      const closed = new Promise<void>((r) => s.on('close', () => r()));
      const ask = () => new Promise<string>((r) => { waiting = r; s.write(`GET / HTTP/1.1\r\n${H}\r\n`); });
      s.once('connect', () => resolve({ s, closed, ask }));
    });
    const idle = await open();
    const busy = await open();
    assert.match(await idle.ask(), /^HTTP\/1\.1 200/);
    let idleClosed = false;
    void idle.closed.then(() => { idleClosed = true; });
    // The busy one asks every 100 ms (well inside the 400 ms timeout) until the idle one is gone.
    for (let i = 0; i < 100 && !idleClosed; i++) {
      assert.match(await busy.ask(), /^HTTP\/1\.1 200/);
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(idleClosed, 'the idle connection was closed');
    assert.match(await busy.ask(), /^HTTP\/1\.1 200/, 'the busy connection still serves');
    busy.s.destroy();
  }, rawBackend, 400);
});
