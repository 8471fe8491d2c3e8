import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createForwarder } from '../../dns/forward';
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
