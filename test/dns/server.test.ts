/**
 * The server end to end over loopback: every record kind of the cluster zone,
 * negative answers, container names, the protocol edges (EDNS, TC, TCP
 * pipelining, FORMERR/NOTIMP/BADVERS, silence for responses), forwarding with
 * the cache, stale answers and fast SERVFAIL when the upstream is gone.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import { createReplicaView } from '../../dns/cluster-view';
import { createDnsServer, type DnsServer } from '../../dns/server';
import { RCODE, TYPE, decodeMessage } from '../../dns/wire';
import { eventually } from '../helpers/lab';
import { buildTestQuery, show, tcpQueries, udpQuery, udpRaw } from './client';
import { ep, endpoints, services, svc } from './fixtures';
import { startFakeUpstream, type FakeUpstream } from './fake-upstream';

const H = '127.0.0.1';
const Z = 'cluster.local';
const many = Array.from({ length: 40 }, (_, i) => ep(`m${i}`, { ips: [`10.3.0.${i + 1}`], labels: { app: 'many' } }));
const me = ep('me', { hostname: 'me', ips: [H] });

describe('dns server over loopback', () => {
  const registry = new Registry();
  const view = createReplicaView({
    services: [...services, svc('many', 'team-a', { selector: { app: 'many' }, clusterIP: 'None' })],
    endpoints: [...endpoints, ...many, me],
  });
  let server: DnsServer;
  let up: FakeUpstream;
  let port = 0;

  before(async () => {
    up = await startFakeUpstream(H);
    server = createDnsServer({ view, zone: Z, listen: [{ address: H, port: 0 }], upstreams: [{ address: H, port: up.port }], registry, cache: { minTtl: 1 }, forward: { probeIntervalMs: 100 } });
    await server.start();
    port = server.addresses()[0].port;
  });
  after(async () => {
    await server?.stop();
    await up?.close();
  });

  const q = (name: string, type: number, o = {}) => udpQuery(H, port, name, type, o);

  test('answers every record kind of the cluster zone', async () => {
    const table: Array<[string, number, string[], string[]?]> = [
      [`dns-version.${Z}`, TYPE.TXT, [`dns-version.${Z} TXT 1.1.0`]],
      [`web.team-a.svc.${Z}`, TYPE.A, [`web.team-a.svc.${Z} A 10.96.0.10`]],
      [`web.team-a.svc.${Z}`, TYPE.AAAA, [`web.team-a.svc.${Z} AAAA fd00:0096:0000:0000:0000:0000:0000:0010`]],
      [`_http._tcp.web.team-a.svc.${Z}`, TYPE.SRV, [`_http._tcp.web.team-a.svc.${Z} SRV 0 100 80 web.team-a.svc.${Z}`],
        [`web.team-a.svc.${Z} A 10.96.0.10`, `web.team-a.svc.${Z} AAAA fd00:0096:0000:0000:0000:0000:0000:0010`]],
      [`_dns._udp.api.team-b.svc.${Z}`, TYPE.SRV, [`_dns._udp.api.team-b.svc.${Z} SRV 0 100 53 api.team-b.svc.${Z}`], [`api.team-b.svc.${Z} A 10.96.0.20`]],
      [`db.team-a.svc.${Z}`, TYPE.A, [`db.team-a.svc.${Z} A 10.1.0.5`, `db.team-a.svc.${Z} A 10.1.0.6`]],
      [`db.team-a.svc.${Z}`, TYPE.AAAA, [`db.team-a.svc.${Z} AAAA fd00:0001:0000:0000:0000:0000:0000:0005`]],
      [`db-0.db.team-a.svc.${Z}`, TYPE.A, [`db-0.db.team-a.svc.${Z} A 10.1.0.5`]],
      [`10-1-0-6.db.team-a.svc.${Z}`, TYPE.A, [`10-1-0-6.db.team-a.svc.${Z} A 10.1.0.6`]],
      [`_pg._tcp.db.team-a.svc.${Z}`, TYPE.SRV, [`_pg._tcp.db.team-a.svc.${Z} SRV 0 50 5432 db-0.db.team-a.svc.${Z}`, `_pg._tcp.db.team-a.svc.${Z} SRV 0 50 5432 10-1-0-6.db.team-a.svc.${Z}`]],
      ['10.0.96.10.in-addr.arpa', TYPE.PTR, [`10.0.96.10.in-addr.arpa PTR web.team-a.svc.${Z}`]],
      ['0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.0.d.f.ip6.arpa', TYPE.PTR, [`0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.0.d.f.ip6.arpa PTR web.team-a.svc.${Z}`]],
      ['5.0.1.10.in-addr.arpa', TYPE.PTR, [`5.0.1.10.in-addr.arpa PTR db-0.db.team-a.svc.${Z}`]],
      ['5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.0.0.d.f.ip6.arpa', TYPE.PTR, [`5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.0.0.d.f.ip6.arpa PTR db-0.db.team-a.svc.${Z}`]],
      [`ext.team-a.svc.${Z}`, TYPE.A, [`ext.team-a.svc.${Z} CNAME web.team-a.svc.${Z}`, `web.team-a.svc.${Z} A 10.96.0.10`]],
      [`ext.team-a.svc.${Z}`, TYPE.CNAME, [`ext.team-a.svc.${Z} CNAME web.team-a.svc.${Z}`]],
      [`10-9-8-7.team-a.pod.${Z}`, TYPE.A, [`10-9-8-7.team-a.pod.${Z} A 10.9.8.7`]],
      // The apex names this server (the SOA's primary) as its nameserver, with its address.
      [Z, TYPE.NS, [`${Z} NS ns.dns.${Z}`], [`ns.dns.${Z} A ${H}`]],
      [`ns.dns.${Z}`, TYPE.A, [`ns.dns.${Z} A ${H}`]],
    ];
    for (const [name, type, answers, additional] of table) {
      const { msg } = await q(name, type);
      assert.equal(msg.rcode, RCODE.NOERROR, `${name} rcode`);
      assert.ok(msg.flags & 0x0400, `${name} is authoritative`);
      assert.deepEqual(show(msg.answers), answers, `${name} ${type}`);
      if (additional) assert.deepEqual(show(msg.additional), additional, `${name} additional`);
    }
  });

  test('names compare case-insensitively and the question is echoed as asked', async () => {
    const { msg, raw } = await q('WEB.Team-A.Svc.Cluster.LOCAL', TYPE.A);
    assert.deepEqual(show(msg.answers), [`web.team-a.svc.${Z} A 10.96.0.10`]);
    assert.ok(raw.includes(Buffer.from('Team-A')), 'question case preserved');
  });

  test('NXDOMAIN and NODATA carry the zone SOA', async () => {
    const table: Array<[string, number, number]> = [
      [`nope.team-a.svc.${Z}`, TYPE.A, RCODE.NXDOMAIN],
      [`web.nowhere.svc.${Z}`, TYPE.A, RCODE.NXDOMAIN],
      [`empty.team-a.svc.${Z}`, TYPE.A, RCODE.NXDOMAIN], // headless, nothing ready
      [`db-2.db.team-a.svc.${Z}`, TYPE.A, RCODE.NXDOMAIN], // not ready
      [`_nope._tcp.web.team-a.svc.${Z}`, TYPE.SRV, RCODE.NXDOMAIN],
      [`x.y.${Z}`, TYPE.A, RCODE.NXDOMAIN],
      [`svc.${Z}`, TYPE.A, RCODE.NOERROR], // empty non-terminal
      [`team-a.svc.${Z}`, TYPE.A, RCODE.NOERROR],
      [`_tcp.web.team-a.svc.${Z}`, TYPE.A, RCODE.NOERROR],
      [`api.team-b.svc.${Z}`, TYPE.AAAA, RCODE.NOERROR], // IPv4-only service
      [`web.team-a.svc.${Z}`, TYPE.TXT, RCODE.NOERROR],
      [Z, TYPE.A, RCODE.NOERROR],
    ];
    for (const [name, type, rcode] of table) {
      const { msg } = await q(name, type);
      assert.equal(msg.rcode, rcode, `${name} rcode`);
      assert.equal(msg.answers.length, 0, `${name} has no answers`);
      assert.deepEqual(show(msg.authority).map((s) => s.split(' ').slice(0, 2).join(' ')), [`${Z} SOA`], `${name} SOA`);
    }
    const apex = await q(Z, TYPE.SOA);
    assert.deepEqual(show(apex.msg.answers), [`${Z} SOA ns.dns.${Z}`]);
  });

  test('container names resolve on the asker\'s network, shared aliases rotate', async () => {
    const first = new Set<string>();
    for (let i = 0; i < 4; i++) {
      const { msg } = await q('frontend', TYPE.A);
      assert.deepEqual(show(msg.answers).sort(), ['frontend A 10.1.0.11', 'frontend A 10.1.0.12']);
      first.add(show(msg.answers)[0]);
    }
    assert.equal(first.size, 2, 'order rotates');
    assert.deepEqual(show((await q('web-1.net1', TYPE.A)).msg.answers), ['web-1.net1 A 10.1.0.11']);
    // "other" lives on net2, which we (127.0.0.1, on net1) do not share: forwarded, unknown there.
    assert.equal((await q('other', TYPE.A)).msg.rcode, RCODE.NXDOMAIN);
  });

  test('EDNS: OPT echoed with our size, BADVERS above version 0, none without EDNS', async () => {
    assert.equal((await q(`web.team-a.svc.${Z}`, TYPE.A)).msg.opt?.payload, 1232);
    assert.equal((await q(`web.team-a.svc.${Z}`, TYPE.A, { edns: false })).msg.opt, undefined);
    const bad = await q(`web.team-a.svc.${Z}`, TYPE.A, { edns: { version: 1 } });
    assert.equal(bad.msg.rcode, RCODE.BADVERS);
    assert.equal(bad.msg.answers.length, 0);
  });

  test('FORMERR, NOTIMP, REFUSED for other classes, and silence for responses', async () => {
    const formerr = await udpRaw(H, port, Buffer.from('0102000000010000000000000541', 'hex'));
    assert.equal(formerr && decodeMessage(formerr).rcode, RCODE.FORMERR);
    const notimp = await udpRaw(H, port, buildTestQuery(`web.team-a.svc.${Z}`, TYPE.A, { opcode: 2 }));
    assert.equal(notimp && notimp[3] & 0x0f, RCODE.NOTIMP);
    assert.equal(notimp && (notimp[2] >> 3) & 0x0f, 2, 'opcode echoed');
    const chaos = buildTestQuery('version.bind', TYPE.TXT, { edns: false });
    chaos.writeUInt16BE(3, chaos.length - 2);
    assert.equal(decodeMessage((await udpRaw(H, port, chaos))!).rcode, RCODE.REFUSED);
    // Zone transfers are refused (over UDP and TCP), never answered with an SOA-only "zone".
    assert.equal((await q(Z, 252)).msg.rcode, RCODE.REFUSED);
    const overTcp = await tcpQueries(H, port, [buildTestQuery(Z, 252, { id: 7, edns: false })]);
    assert.equal(overTcp.get(7)?.rcode, RCODE.REFUSED);
    assert.equal((await q(Z, 251)).msg.rcode, RCODE.REFUSED);
    const response = buildTestQuery(`web.team-a.svc.${Z}`, TYPE.A);
    response[2] |= 0x80;
    assert.equal(await udpRaw(H, port, response, 300), undefined);
    // ...and the server is still answering.
    assert.equal((await q(`web.team-a.svc.${Z}`, TYPE.A)).msg.rcode, RCODE.NOERROR);
  });

  test('answers larger than the client payload are truncated over UDP and whole over TCP', async () => {
    const small = await q(`many.team-a.svc.${Z}`, TYPE.A, { edns: false });
    assert.ok(small.msg.flags & 0x0200, 'TC set');
    assert.equal(small.msg.answers.length, 0);
    assert.ok(small.raw.length <= 512);
    assert.equal((await q(`many.team-a.svc.${Z}`, TYPE.A)).msg.answers.length, 40, 'fits in 1232 with EDNS');
    const viaTcp = await tcpQueries(H, port, [buildTestQuery(`many.team-a.svc.${Z}`, TYPE.A, { id: 1, edns: false })]);
    assert.equal(viaTcp.get(1)!.answers.length, 40);
    // A forwarded TXT of 600 octets: TC over plain UDP, all three strings over TCP.
    assert.ok((await q('big.example.test', TYPE.TXT, { edns: false })).msg.flags & 0x0200);
    const txt = await tcpQueries(H, port, [buildTestQuery('big.example.test', TYPE.TXT, { id: 2, edns: false })]);
    assert.equal(show(txt.get(2)!.answers)[0].length, 'big.example.test TXT '.length + 602);
    // The upstream truncates its own UDP reply: we retry it over TCP.
    assert.equal((await q('tc.example.test', TYPE.TXT)).msg.answers.length, 1);
  });

  test('TCP carries several pipelined queries on one connection', async () => {
    const names = [`web.team-a.svc.${Z}`, `db.team-a.svc.${Z}`, `nope.team-a.svc.${Z}`, 'known.example.test', `dns-version.${Z}`];
    const replies = await tcpQueries(H, port, names.map((n, i) => buildTestQuery(n, n.startsWith('dns-') ? TYPE.TXT : TYPE.A, { id: 100 + i })));
    assert.deepEqual([...replies.keys()].sort(), [100, 101, 102, 103, 104]);
    assert.equal(replies.get(102)!.rcode, RCODE.NXDOMAIN);
    assert.deepEqual(show(replies.get(103)!.answers).map((s) => s.split(' ')[2]), ['192.0.2.1']);
  });

  test('forwarding caches positive and negative answers', async () => {
    const before = up.queries;
    assert.deepEqual(show((await q('long.example.test', TYPE.A)).msg.answers), ['long.example.test A 192.0.2.2']);
    assert.equal((await q('long.example.test', TYPE.A)).msg.answers.length, 1);
    assert.equal((await q('nx.example.test', TYPE.A)).msg.rcode, RCODE.NXDOMAIN);
    const neg = await q('nx.example.test', TYPE.A);
    assert.equal(neg.msg.rcode, RCODE.NXDOMAIN);
    assert.ok(neg.msg.authority.some((r) => r.type === TYPE.SOA), 'SOA relayed');
    assert.equal(up.queries - before, 2, 'one upstream query per name');
  });

  test('store changes show in answers without a restart', async () => {
    assert.equal((await q(`new.team-a.svc.${Z}`, TYPE.A)).msg.rcode, RCODE.NXDOMAIN);
    view.apply({ services: [...view.data().services, svc('new', 'team-a', { clusterIP: '10.96.0.99' })], endpoints: view.data().endpoints });
    assert.deepEqual(show((await q(`new.team-a.svc.${Z}`, TYPE.A)).msg.answers), [`new.team-a.svc.${Z} A 10.96.0.99`]);
  });

  test('upstream down: cached and stale answers are served, unknown names get SERVFAIL at once', async () => {
    assert.equal((await q('known.example.test', TYPE.A)).msg.answers.length, 1);
    await up.close();
    // TTL 1 expires; every answer in between is still the right address, the last ones stale (TTL 30).
    await eventually(async () => {
      const { msg } = await q('known.example.test', TYPE.A);
      assert.deepEqual(show(msg.answers), ['known.example.test A 192.0.2.1']);
      return msg.answers[0].ttl === 30;
    }, 5000, 'a stale answer');
    for (let i = 0; i < 3; i++) {
      // The reply must come within the 1 s we wait: SERVFAIL, not a client timeout.
      const raw = await udpRaw(H, port, buildTestQuery(`unknown${i}.example.test`, TYPE.A), 1000);
      assert.ok(raw, 'answered before the client gave up');
      assert.equal(decodeMessage(raw).rcode, RCODE.SERVFAIL);
    }
  });

  test('metrics are exposed under meshwork_dns_* with query types and rcodes', async () => {
    const text = await registry.metrics();
    assert.match(text, /meshwork_dns_queries_total\{type="A",rcode="NOERROR"\} \d+/);
    assert.match(text, /meshwork_dns_queries_total\{type="A",rcode="NXDOMAIN"\} \d+/);
    assert.match(text, /meshwork_dns_cache_hits_total\{cache="packet"\} [1-9]/);
    assert.match(text, /meshwork_dns_cache_misses_total [1-9]/);
    assert.match(text, /meshwork_dns_upstream_duration_seconds_bucket\{le="[^"]+",upstream="127\.0\.0\.1:\d+"\}/);
    assert.match(text, /meshwork_dns_upstream_failures_total\{upstream="127\.0\.0\.1:\d+",reason="\w+"\} [1-9]/);
    for (const m of text.matchAll(/^# TYPE (\S+) (\S+)/gm)) {
      assert.match(m[1], /^meshwork_dns_[a-z_]+$/);
      if (m[2] === 'counter') assert.match(m[1], /_total$/);
      if (m[2] === 'histogram') assert.match(m[1], /_seconds$/);
    }
  });
});

describe('dns server TCP limits', () => {
  test('idle connections are closed and the connection cap holds', async () => {
    const net = await import('node:net');
    const server = createDnsServer({ view: createReplicaView({ services, endpoints }), listen: [{ address: H, port: 0 }], upstreams: [], tcp: { idleMs: 150, maxConnections: 2 } });
    await server.start();
    const port = server.addresses()[0].port;
    const open = () => new Promise<{ s: import('node:net').Socket; closed: Promise<void> }>((resolve, reject) => {
      const s = net.connect({ host: H, port });
      const closed = new Promise<void>((r) => s.on('close', () => r()));
      s.on('error', () => undefined);
      s.once('connect', () => resolve({ s, closed }));
      s.once('error', reject);
    });
    const conns: Array<{ s: import('node:net').Socket; closed: Promise<void> }> = [];
    try {
      // Two held open: a third is accepted by the kernel but closed by the server straight away.
      conns.push(await open(), await open());
      const third = await open();
      conns.push(third);
      await third.closed;
      // The held ones, silent, are dropped after the idle timeout.
      await Promise.all(conns.slice(0, 2).map((c) => c.closed));
      // ...and a fresh connection still gets answers.
      const r = await tcpQueries(H, port, [buildTestQuery(`web.team-a.svc.${Z}`, TYPE.A, { id: 5 })]);
      assert.equal(r.get(5)!.answers.length, 1);
    } finally {
      for (const c of conns) c.s.destroy();
      await server.stop();
    }
  });
});

describe('dns server under overload', () => {
  test('past maxPending new uncached queries are shed, cached answers still flow', async () => {
    const dgram = await import('node:dgram');
    // An upstream that swallows every query: forwarded questions stay pending until the timeout.
    const sink = dgram.createSocket('udp4');
    await new Promise<void>((r) => sink.bind(0, H, () => r()));
    const registry = new Registry();
    const server = createDnsServer({ view: createReplicaView({ services, endpoints }), listen: [{ address: H, port: 0 }], registry,
      upstreams: [{ address: H, port: (sink.address() as import('node:net').AddressInfo).port }], maxPending: 1, forward: { timeoutMs: 800, budgetMs: 800 } });
    await server.start();
    const port = server.addresses()[0].port;
    try {
      await udpQuery(H, port, `web.team-a.svc.${Z}`, TYPE.A); // now in the packet cache
      const slow = udpRaw(H, port, buildTestQuery('slow.example.test', TYPE.A), 3000);
      await eventually(async () => (await registry.metrics()).includes('meshwork_dns_cache_misses_total 1'), 2000, 'the slow query to be pending');
      assert.equal(await udpRaw(H, port, buildTestQuery('shed.example.test', TYPE.A), 300), undefined, 'shed');
      assert.equal((await udpQuery(H, port, `web.team-a.svc.${Z}`, TYPE.A)).msg.answers.length, 1, 'cached answer still served');
      assert.equal(decodeMessage((await slow)!).rcode, RCODE.SERVFAIL);
      assert.match(await registry.metrics(), /meshwork_dns_dropped_total\{reason="overload"\} 1/);
    } finally {
      await server.stop();
      sink.close();
    }
  });
});

describe('dns server cache TTLs as clients see them', () => {
  test('positive TTLs within the ceiling, negative ones at min(SOA TTL, SOA minimum)', async () => {
    const up = await startFakeUpstream(H);
    const server = createDnsServer({ view: createReplicaView({ services, endpoints }), listen: [{ address: H, port: 0 }], upstreams: [{ address: H, port: up.port }], cache: { maxTtl: 60 } });
    await server.start();
    const port = server.addresses()[0].port;
    try {
      // Upstream TTL 3600, our ceiling 60: a client must not keep it longer than we do, fresh or cached.
      for (let i = 0; i < 2; i++) {
        const { msg } = await udpQuery(H, port, 'long.example.test', TYPE.A);
        assert.deepEqual(msg.answers.map((r) => r.ttl), [60], `answer ${i}`);
      }
      // The fake zone's SOA has TTL 60 and minimum 30: the negative TTL is 30 (RFC 2308 §5).
      for (let i = 0; i < 2; i++) {
        const { msg } = await udpQuery(H, port, 'nx.example.test', TYPE.A);
        assert.equal(msg.rcode, RCODE.NXDOMAIN);
        const soa = msg.authority.find((r) => r.type === TYPE.SOA);
        assert.ok(soa && soa.ttl <= 30 && soa.ttl >= 29, `SOA TTL ${soa?.ttl} in answer ${i}`);
      }
      assert.equal(up.queries, 2, 'both served from the cache the second time');
    } finally {
      await server.stop();
      await up.close();
    }
  });
});
