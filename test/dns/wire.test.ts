import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeMessage, encodeReply, nameToWire, parseQuery, questionFor, RCODE, TYPE, DnsFormatError } from '../../dns/wire';
import * as rr from '../../dns/records';
import { upstreamsFromResolvConf, parseUpstream } from '../../dns/upstreams';
import { dnsConfigFor, resolvConfText } from '../../dns/pod-config';
import { parseListen } from '../../cli/dns';
import { buildTestQuery, show } from './client';

test('parseQuery reads name, type, EDNS and rejects malformed input', () => {
  const q = parseQuery(buildTestQuery('Web.Team-A.svc.Cluster.Local', TYPE.AAAA, { id: 7, edns: { payload: 4096 } }));
  assert.equal(q.id, 7);
  assert.equal(q.name, 'web.team-a.svc.cluster.local');
  assert.equal(q.type, TYPE.AAAA);
  assert.deepEqual(q.edns, { payload: 4096, version: 0, do: false });
  assert.equal(parseQuery(buildTestQuery('x', TYPE.A, { edns: false })).edns, undefined);
  const good = buildTestQuery('example.test', TYPE.A);
  const cases: Array<[string, Buffer]> = [
    ['short header', good.subarray(0, 11)],
    ['truncated question', good.subarray(0, 16)],
    ['two questions', Buffer.concat([good.subarray(0, 4), Buffer.from([0, 2]), good.subarray(6)])],
    ['label past end', Buffer.concat([good.subarray(0, 12), Buffer.from([40, 97])])],
    ['OPT record cut short', good.subarray(0, good.length - 3)],
  ];
  for (const [what, buf] of cases) assert.throws(() => parseQuery(buf), DnsFormatError, what);
});

test('encodeReply compresses owner names and round-trips through decodeMessage', () => {
  const question = questionFor('a.example.test', TYPE.SRV);
  const enc = encodeReply({
    id: 9, rd: true, aa: true, rcode: RCODE.NOERROR, question, opt: true,
    answers: [rr.srv('a.example.test', 5, 0, 100, 80, 'b.example.test'), rr.srv('a.example.test', 5, 0, 100, 81, 'c.example.test')],
    authority: [], additional: [rr.a('b.example.test', 5, '192.0.2.1'), rr.aaaa('b.example.test', 5, '2001:db8::1')],
  });
  const m = decodeMessage(enc.buf);
  assert.equal(m.id, 9);
  assert.equal(m.opt?.payload, 1232);
  assert.deepEqual(show(m.answers), ['a.example.test SRV 0 100 80 b.example.test', 'a.example.test SRV 0 100 81 c.example.test']);
  assert.deepEqual(show(m.additional), ['b.example.test A 192.0.2.1', 'b.example.test AAAA 2001:0db8:0000:0000:0000:0000:0000:0001']);
  assert.equal(enc.ttlOffsets.length, 4);
  // Compression: "a.example.test" is written once, in the question.
  assert.equal(enc.buf.indexOf(nameToWire('a.example.test')), enc.buf.lastIndexOf(nameToWire('a.example.test')));
});

test('TXT strings longer than 255 octets are split, not corrupted (dns2 edge)', () => {
  const long = 'x'.repeat(600);
  const rec = rr.txt('t.example', 5, long);
  assert.deepEqual([rec.rdata[0], rec.rdata[256], rec.rdata[512]], [255, 255, 90]);
  assert.equal(rec.rdata.length, 600 + 3);
  assert.equal(show([rec])[0].split(' ')[2].replace(/\|/g, ''), long);
});

test('reverse names for IPv4 and IPv6', () => {
  assert.equal(rr.reverseName('10.96.0.10'), '10.0.96.10.in-addr.arpa');
  assert.equal(rr.reverseName('fd00:96::10'), '0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.0.d.f.ip6.arpa');
  assert.equal(rr.reverseName('::ffff:1.2.3.4'), rr.reverseName('0:0:0:0:0:ffff:102:304'));
  assert.equal(rr.reverseName('nope'), undefined);
});

test('upstreams: flags and resolv.conf (loopback entries left out)', () => {
  assert.deepEqual(parseUpstream('192.0.2.1'), { address: '192.0.2.1', port: 53 });
  assert.deepEqual(parseUpstream('192.0.2.1:5353'), { address: '192.0.2.1', port: 5353 });
  assert.deepEqual(parseUpstream('[2001:db8::1]:54'), { address: '2001:db8::1', port: 54 });
  assert.deepEqual(parseUpstream('2001:db8::1'), { address: '2001:db8::1', port: 53 });
  assert.throws(() => parseUpstream('dns.example'), /not an IP address/);
  assert.throws(() => parseUpstream('192.0.2.1:99999'), /bad port/);
  const conf = 'search x\nnameserver 127.0.0.53\nnameserver 192.0.2.53\n# nameserver 192.0.2.9\nnameserver ::1\nnameserver fe80::1%eth0\n';
  assert.deepEqual(upstreamsFromResolvConf(conf), [{ address: '192.0.2.53', port: 53 }, { address: 'fe80::1', port: 53 }]);
});

test('pod DNS config carries our server and the Kubernetes search list', () => {
  const d = dnsConfigFor('Team-A', 'Cluster.Local.', '10.77.0.1');
  assert.deepEqual(d, { nameservers: ['10.77.0.1'], search: ['team-a.svc.cluster.local', 'svc.cluster.local', 'cluster.local'], options: ['ndots:5'] });
  assert.equal(resolvConfText(d), 'nameserver 10.77.0.1\nsearch team-a.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n');
  assert.throws(() => dnsConfigFor('bad_ns', 'cluster.local', '10.0.0.1'), /not a DNS label/);
  assert.throws(() => dnsConfigFor('a', 'cluster.local', 'x'), /not an IP address/);
});

test('dns serve --listen parsing', () => {
  const table: Array<[string, { address: string; port: number } | RegExp]> = [
    ['10.0.0.1', { address: '10.0.0.1', port: 53 }],
    ['10.0.0.1:5353', { address: '10.0.0.1', port: 5353 }],
    ['[fd00::1]:53', { address: 'fd00::1', port: 53 }],
    ['fd00::1', { address: 'fd00::1', port: 53 }],
    ['host.example:53', /expected ADDRESS/],
  ];
  for (const [input, want] of table) {
    if (want instanceof RegExp) assert.throws(() => parseListen(input), want, input);
    else assert.deepEqual(parseListen(input), want, input);
  }
});
