import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as dgram from 'node:dgram';
import { createForwarder, exchangeUdp } from '../../dns/forward';
import { createCache, cacheTtl } from '../../dns/cache';
import { createDnsMetrics } from '../../dns/metrics';
import { questionFor, RCODE, TYPE } from '../../dns/wire';
import * as rr from '../../dns/records';
import { emptyAnswer, type Answer, type Context, type Question } from '../../dns/chain';
import { eventually } from '../helpers/lab';
import { startFakeUpstream } from './fake-upstream';

const ctx: Context = { depth: 0, resolve: async () => emptyAnswer(RCODE.SERVFAIL) };
const question = (name: string, type = TYPE.A): Question => ({ name, type, qclass: 1, wire: questionFor(name, type) });
const never = async (): Promise<Answer> => { throw new Error('not reached'); };

test('a dead upstream is skipped until it answers again', async () => {
  const a = await startFakeUpstream('127.0.0.1');
  const b = await startFakeUpstream('127.0.0.1');
  const aPort = a.port;
  await a.close(); // nothing listens there now: "connection refused"
  const fwd = createForwarder({ upstreams: [{ address: '127.0.0.1', port: aPort }, { address: '127.0.0.1', port: b.port }], metrics: createDnsMetrics(), maxFails: 2, probeIntervalMs: 50 });
  let revived: Awaited<ReturnType<typeof startFakeUpstream>> | undefined;
  try {
    for (let i = 0; i < 3; i++) {
      const ans = await fwd.serve(question('long.example.test'), ctx, never);
      assert.equal(ans.answers.length, 1);
    }
    assert.equal(fwd.healthy({ address: "127.0.0.1", port: aPort }), false);
    assert.equal(b.queries, 3);
    revived = await startFakeUpstream('127.0.0.1', aPort);
    await eventually(() => revived!.queries > 0, 5000, 'a probe to reach the revived upstream');
    const before = revived.queries;
    await eventually(async () => { await fwd.serve(question('long.example.test'), ctx, never); return revived!.queries > before; }, 5000, 'traffic back on the first upstream');
  } finally {
    fwd.stop();
    await b.close();
    await revived?.close();
  }
});

test('with every upstream down the forwarder fails at once, and the cache serves stale', async () => {
  const up = await startFakeUpstream('127.0.0.1');
  const metrics = createDnsMetrics();
  const fwd = createForwarder({ upstreams: [{ address: '127.0.0.1', port: up.port }], metrics, maxFails: 1, probeIntervalMs: 60_000 });
  let now = 1_000_000;
  const cache = createCache({ metrics, minTtl: 1, staleFor: 60, staleTtl: 30, now: () => now });
  const next = (q: Question) => fwd.serve(q, ctx, never);
  try {
    const fresh = await cache.serve(question('known.example.test'), ctx, next);
    assert.equal(fresh.answers[0].ttl, 1);
    await up.close();
    now += 5_000; // expired, within the stale window
    const stale = await cache.serve(question('known.example.test'), ctx, next);
    assert.equal(stale.stale, true);
    assert.equal(stale.answers[0].ttl, 30);
    await assert.rejects(cache.serve(question('other.example.test'), ctx, next), /upstream/);
    now += 120_000; // past the stale window: nothing to serve
    await assert.rejects(cache.serve(question('known.example.test'), ctx, next), /upstream/);
  } finally {
    fwd.stop();
    await up.close();
  }
});

test('cache TTL: floor, ceiling, negative by SOA minimum, nothing without SOA', () => {
  const o = { minTtl: 5, maxTtl: 100, maxNegativeTtl: 50, staleFor: 0, staleTtl: 30, maxEntries: 10 };
  const soa = (ttl: number, minimum: number) => rr.soa('example.test', ttl, { primary: 'ns', admin: 'h', serial: 1, refresh: 1, retry: 1, expiration: 1, minimum });
  const ans = (rcode: number, answers: number[], authority: ReturnType<typeof soa>[] = []): Answer =>
    ({ rcode, aa: false, answers: answers.map((t) => rr.a('x.example.test', t, '192.0.2.1')), authority, additional: [], reuse: 0 });
  const table: Array<[string, Answer, number | undefined]> = [
    ['lowest TTL of the answer', ans(RCODE.NOERROR, [60, 30]), 30],
    ['floor', ans(RCODE.NOERROR, [1]), 5],
    ['ceiling', ans(RCODE.NOERROR, [86400]), 100],
    ['NXDOMAIN by SOA minimum', ans(RCODE.NXDOMAIN, [], [soa(300, 20)]), 20],
    ['NODATA by SOA TTL when lower', ans(RCODE.NOERROR, [], [soa(10, 20)]), 10],
    ['negative ceiling', ans(RCODE.NXDOMAIN, [], [soa(3600, 3600)]), 50],
    ['no SOA, no negative caching', ans(RCODE.NXDOMAIN, []), undefined],
    ['SERVFAIL never', ans(RCODE.SERVFAIL, []), undefined],
  ];
  for (const [what, a, want] of table) assert.equal(cacheTtl(a, o), want, what);
});

test('an upstream reply is matched to its question in ASCII case only (0xC9 is not 0xE9)', async () => {
  // A responder that echoes the ID and flips byte 0xE9 to 0xC9 in the question (latin1 é/É): a
  // different name for DNS, which latin1 lower-casing would have taken for the same one.
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
  const port = (sock.address() as { port: number }).port;
  let flip = true;
  sock.on('message', (m, ri) => {
    const out = Buffer.from(m);
    out[2] |= 0x80; // QR: a response
    for (let i = 12; i < out.length; i++) {
      if (flip && out[i] === 0xe9) out[i] = 0xc9;
      if (!flip && out[i] >= 0x41 && out[i] <= 0x5a) out[i] |= 0x20; // an upstream may change ASCII case (0x20 randomisation)
    }
    sock.send(out, ri.port, ri.address);
  });
  try {
    const wire = Buffer.concat([Buffer.from([4, 0x63, 0x61, 0x66, 0xe9]), questionFor('example.test', TYPE.A)]);
    await assert.rejects(exchangeUdp({ address: '127.0.0.1', port }, wire, 300), /timeout/);
    flip = false;
    const ok = await exchangeUdp({ address: '127.0.0.1', port }, Buffer.concat([Buffer.from([4, 0x43, 0x41, 0x46, 0xe9]), questionFor('example.test', TYPE.A)]), 2000);
    assert.equal(ok.msg.questions.length, 1, 'the same name in another ASCII case is accepted');
  } finally {
    sock.close();
  }
});
