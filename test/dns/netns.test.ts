/**
 * The DNS server as pods meet it: `meshwork dns serve` runs in a host
 * namespace, reads a file store the test writes, forwards to dnsmasq in an
 * upstream namespace, and is queried from a pod namespace with dig, dig +tcp
 * and the glibc resolver (getent, through the resolv.conf our pod config
 * produces). Ends with a flood of garbage and the server still answering.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { Lab, Netns, eventually, isRoot, NEEDS_ROOT, repoRoot } from '../helpers/lab';
import { openStore } from '../../store/open';
import { keys } from '../../store/keys';
import type { Store } from '../../store/types';
import { dnsConfigFor, resolvConfText } from '../../dns/pod-config';
import { ep, svc } from './fixtures';

const SERVER = '10.77.0.1';
const POD = '10.77.0.2';
const UPSTREAM = '10.77.1.2';
const Z = 'cluster.local';

interface Dig { status: string; flags: string; answer: string[]; authority: string[]; opt?: string; raw: string }

function parseDig(out: string): Dig {
  const section = (title: string): string[] => {
    const i = out.indexOf(`;; ${title} SECTION:`);
    if (i < 0) return [];
    const rest = out.slice(i).split('\n').slice(1);
    const end = rest.findIndex((l) => !l.trim());
    // "name ttl class type data" without the TTL, which changes as caches age.
    return rest.slice(0, end < 0 ? undefined : end).filter((l) => !l.startsWith(';')).map((l) => l.split(/\s+/).filter((_, k) => k !== 1).join(' '));
  };
  return {
    status: /status: (\w+)/.exec(out)?.[1] ?? 'NONE',
    flags: /flags: ([^;]*);/.exec(out)?.[1] ?? '',
    answer: section('ANSWER'),
    authority: section('AUTHORITY').slice(0, 1),
    opt: /; EDNS: (.*)/.exec(out)?.[1],
    raw: out,
  };
}

describe('dns server in namespaces', { skip: !isRoot && NEEDS_ROOT }, () => {
  let lab: Lab;
  let host: Netns;
  let pod: Netns;
  let up: Netns;
  let store: Store;
  let server: ChildProcess;
  let dnsmasq: ChildProcess;
  let etcNetns: string;

  const dig = async (...args: string[]): Promise<Dig> => {
    const r = await pod.run('dig', [`@${SERVER}`, '+tries=1', '+timeout=2', ...args]);
    return parseDig(r.stdout);
  };
  const getent = async (db: string, name: string): Promise<string[]> => {
    const r = await pod.run('getent', [db, name]);
    return r.stdout.split('\n').filter(Boolean).map((l) => l.split(/\s+/)[0]);
  };
  const put = (key: string, v: unknown) => store.put(key, JSON.stringify(v));

  before(async () => {
    lab = new Lab('mwdn');
    host = lab.netns('host');
    pod = lab.netns('pod');
    up = lab.netns('up');
    lab.veth(host, 'eth0', `${SERVER}/24`, pod, 'eth0', `${POD}/24`);
    lab.veth(host, 'eth1', '10.77.1.1/24', up, 'eth0', `${UPSTREAM}/24`);
    // `ip netns exec` bind-mounts this over /etc/resolv.conf for the pod.
    etcNetns = path.join('/etc/netns', pod.name);
    fs.mkdirSync(etcNetns, { recursive: true });
    lab.onCleanup(() => fs.rmSync(etcNetns, { recursive: true, force: true }));
    fs.writeFileSync(path.join(etcNetns, 'resolv.conf'), resolvConfText(dnsConfigFor('team-a', Z, SERVER)));

    const storeDir = path.join(lab.tmp, 'store');
    store = await openStore(`file:${storeDir}`);
    lab.onCleanup(() => store.close());
    await put(keys.policy('Service', 'team-a', 'web'), svc('web', 'team-a', { selector: { app: 'web' }, clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 }] }));
    await put(keys.policy('Service', 'team-b', 'api'), svc('api', 'team-b', { clusterIP: '10.96.0.20', clusterIPs: ['10.96.0.20', 'fd00:96::20'] }));
    await put(keys.policy('Service', 'team-a', 'db'), svc('db', 'team-a', { selector: { app: 'db' }, clusterIP: 'None', ports: [{ name: 'pg', port: 5432, protocol: 'TCP', targetPort: 5432 }] }));
    await put(keys.policy('Service', 'team-a', 'many'), svc('many', 'team-a', { selector: { app: 'many' }, clusterIP: 'None' }));
    await put(keys.policy('Service', 'team-a', 'ext'), svc('ext', 'team-a', { type: 'ExternalName', externalName: 'known.example.test', ports: [] }));
    await put(keys.endpoint('net1', 'db0', 'eth0'), ep('db0', { hostname: 'db-0', ips: ['10.1.0.5'], labels: { app: 'db' } }));
    await put(keys.endpoint('net1', 'me', 'eth0'), ep('me', { hostname: 'client', ips: [POD] }));
    await put(keys.endpoint('net1', 'f1', 'eth0'), ep('f1', { hostname: 'f1', aliases: ['frontend'], ips: ['10.1.0.11'] }));
    await put(keys.endpoint('net1', 'f2', 'eth0'), ep('f2', { hostname: 'f2', aliases: ['frontend'], ips: ['10.1.0.12'] }));
    for (let i = 0; i < 40; i++) await put(keys.endpoint('net1', `m${i}`, 'eth0'), ep(`m${i}`, { ips: [`10.3.0.${i + 1}`], labels: { app: 'many' } }));

    const txt = ["a", "b", "c"].map((c) => c.repeat(200)).join(",");
    dnsmasq = lab.spawnIn(up, 'dnsmasq', ['-k', '-C', '/dev/null', '--no-resolv', '--no-hosts', `--listen-address=${UPSTREAM}`, '--bind-interfaces', '--pid-file=', '--user=root',
      '--local=/example.test/', '--host-record=known.example.test,192.0.2.1', `--txt-record=big.example.test,${txt}`, '--local-ttl=1',
      // HTTPS (65, a 0x41 byte) and type 97 (0x61): one name, two types a case-folding cache key would merge.
      '--dns-rr=h.example.test,65,000100', '--dns-rr=h.example.test,97,abcd', '--host-record=floor.example.test,192.0.2.3']);
    server = lab.spawnIn(host, process.execPath, [path.join(repoRoot, 'dist', 'cli', 'main.js'), 'dns', 'serve', '--listen', `${SERVER}:53`, '--store', `file:${storeDir}`, '--upstream', UPSTREAM]);
    let log = '';
    server.stderr?.on('data', (d) => (log += d));
    await eventually(async () => (await dig(`dns-version.${Z}`, 'TXT')).answer.length === 1, 20_000, `server to answer (log: ${log})`);
  });

  after(async () => { await lab?.cleanup(); });

  test('dig over UDP and TCP: every record kind', async () => {
    for (const tcp of [[], ['+tcp']]) {
      assert.deepEqual((await dig(...tcp, `web.team-a.svc.${Z}`)).answer, [`web.team-a.svc.${Z}. IN A 10.96.0.10`]);
      assert.deepEqual((await dig(...tcp, `api.team-b.svc.${Z}`, 'AAAA')).answer, [`api.team-b.svc.${Z}. IN AAAA fd00:96::20`]);
      assert.deepEqual((await dig(...tcp, `_http._tcp.web.team-a.svc.${Z}`, 'SRV')).answer, [`_http._tcp.web.team-a.svc.${Z}. IN SRV 0 100 80 web.team-a.svc.${Z}.`]);
      assert.deepEqual((await dig(...tcp, `_pg._tcp.db.team-a.svc.${Z}`, 'SRV')).answer, [`_pg._tcp.db.team-a.svc.${Z}. IN SRV 0 100 5432 db-0.db.team-a.svc.${Z}.`]);
      assert.deepEqual((await dig(...tcp, `db-0.db.team-a.svc.${Z}`)).answer, [`db-0.db.team-a.svc.${Z}. IN A 10.1.0.5`]);
      assert.deepEqual((await dig(...tcp, '-x', '10.96.0.20')).answer, [`20.0.96.10.in-addr.arpa. IN PTR api.team-b.svc.${Z}.`]);
      assert.deepEqual((await dig(...tcp, '-x', 'fd00:96::20')).answer.map((l) => l.split(' ').slice(1).join(' ')), [`IN PTR api.team-b.svc.${Z}.`]);
      assert.deepEqual((await dig(...tcp, '-x', '10.1.0.5')).answer, [`5.0.1.10.in-addr.arpa. IN PTR db-0.db.team-a.svc.${Z}.`]);
      assert.deepEqual((await dig(...tcp, `dns-version.${Z}`, 'TXT')).answer, [`dns-version.${Z}. IN TXT "1.1.0"`]);
      assert.deepEqual((await dig(...tcp, `ext.team-a.svc.${Z}`)).answer, [`ext.team-a.svc.${Z}. IN CNAME known.example.test.`, 'known.example.test. IN A 192.0.2.1']);
    }
  });

  test('NXDOMAIN and NODATA (including empty non-terminals) with the zone SOA', async () => {
    for (const [args, status] of [[[`nope.team-a.svc.${Z}`], 'NXDOMAIN'], [[`svc.${Z}`], 'NOERROR'], [[`team-a.svc.${Z}`], 'NOERROR'], [[`web.team-a.svc.${Z}`, 'AAAA'], 'NOERROR']] as const) {
      const d = await dig(...args);
      assert.equal(d.status, status, args.join(' '));
      assert.deepEqual(d.answer, [], args.join(' '));
      assert.match(d.authority[0] ?? '', new RegExp(`^${Z}\\. IN SOA ns\\.dns\\.${Z}\\.`), args.join(' '));
      assert.match(d.flags, /\baa\b/);
    }
  });

  test('glibc resolves short names through the search list, container names too', async () => {
    assert.deepEqual(await getent('ahostsv4', 'web'), ['10.96.0.10', '10.96.0.10', '10.96.0.10']);
    assert.deepEqual([...new Set(await getent('ahostsv4', 'api.team-b'))], ['10.96.0.20']);
    assert.deepEqual([...new Set(await getent('ahostsv4', `web.team-a.svc.${Z}`))], ['10.96.0.10']);
    assert.deepEqual([...new Set(await getent('ahostsv6', 'api.team-b'))], ['fd00:96::20']);
    assert.deepEqual(await getent('hosts', 'nope'), []);
    assert.deepEqual(new Set(await getent('ahostsv4', 'frontend')), new Set(['10.1.0.11', '10.1.0.12']));
    const firsts = new Set<string>();
    for (let i = 0; i < 4; i++) firsts.add((await dig('frontend')).answer[0]);
    assert.equal(firsts.size, 2, 'shared alias answers rotate');
  });

  test('answers larger than 512 octets: TC over UDP, retried over TCP (dig and glibc)', async () => {
    const txt = await dig('+noedns', 'big.example.test', 'TXT');
    assert.match(txt.raw, /Truncated, retrying in TCP mode/);
    assert.equal(txt.answer.length, 1);
    assert.match(txt.answer[0], /^big\.example\.test\. IN TXT "a{200}" "b{200}" "c{200}"$/);
    const a = await dig('+noedns', `many.team-a.svc.${Z}`);
    assert.match(a.raw, /Truncated, retrying in TCP mode/);
    assert.equal(a.answer.length, 40);
    // glibc sends no EDNS, so 512 octets: it must take the TC reply to TCP by itself.
    assert.equal(new Set(await getent('ahostsv4', 'many')).size, 40);
  });

  test('EDNS and opcode edges seen by dig', async () => {
    assert.match((await dig('+bufsize=4096', `web.team-a.svc.${Z}`)).opt ?? '', /version: 0, .*udp: 1232/);
    assert.equal((await dig('+noedns', `web.team-a.svc.${Z}`)).opt, undefined);
    assert.equal((await dig('+edns=1', '+noednsneg', `web.team-a.svc.${Z}`)).status, 'BADVERS');
    assert.equal((await dig('+opcode=2', `web.team-a.svc.${Z}`)).status, 'NOTIMP');
  });

  test('edges a reviewer checks with dig: DO echoed, NOTIMP keeps OPT, escaped dots, cache keys, TTL floor', async () => {
    // RFC 3225 §3: the DO bit of the query is copied into the reply, cached or not.
    for (let i = 0; i < 2; i++) assert.match((await dig('+dnssec', `web.team-a.svc.${Z}`)).opt ?? '', /flags: do;/);
    assert.match((await dig(`web.team-a.svc.${Z}`)).opt ?? '', /flags:;/, 'no DO without +dnssec (not served from the DO entry)');
    // An EDNS query answered NOTIMP still gets OPT back (dig would otherwise say "retry with +noedns").
    const notimp = await dig('+opcode=1', `web.team-a.svc.${Z}`);
    assert.equal(notimp.status, 'NOTIMP');
    assert.match(notimp.opt ?? '', /version: 0/);
    assert.doesNotMatch(notimp.raw, /retry with '\+noedns'/);
    // One label "web.team-a" is not the two labels web and team-a: NXDOMAIN, not web's address under another owner.
    const dotted = await dig('web\\.team-a.svc.' + Z);
    assert.equal(dotted.status, 'NXDOMAIN');
    assert.deepEqual(dotted.answer, []);
    // Types that differ only by case in their bytes are different questions, for both caches.
    for (let i = 0; i < 2; i++) {
      assert.deepEqual((await dig('h.example.test', 'TYPE65')).answer, ['h.example.test. IN HTTPS 1 .']);
      assert.deepEqual((await dig('h.example.test', 'TYPE97')).answer, ['h.example.test. IN TYPE97 \\# 2 ABCD']);
    }
    // dnsmasq says TTL 1; we keep it 5 s (the floor), and tell clients so rather than 1, then 0.
    const ttls: number[] = [];
    for (let i = 0; i < 2; i++) ttls.push(Number(/^floor\.example\.test\.\s+(\d+)\s+IN\s+A/m.exec((await dig('floor.example.test')).raw)?.[1]));
    assert.equal(ttls[0], 5, 'the fresh answer carries the floor');
    assert.ok(ttls[1] >= 4 && ttls[1] <= 5, `cached TTL ${ttls[1]} ages from the floor`);
  });

  test('a headless service losing its last ready endpoint becomes NXDOMAIN', async () => {
    assert.deepEqual((await dig(`db.team-a.svc.${Z}`)).answer, [`db.team-a.svc.${Z}. IN A 10.1.0.5`]);
    await put(keys.endpoint('net1', 'db0', 'eth0'), ep('db0', { hostname: 'db-0', ips: ['10.1.0.5'], labels: { app: 'db' }, ready: false }));
    await eventually(async () => (await dig(`db.team-a.svc.${Z}`)).status === 'NXDOMAIN', 1500, 'NXDOMAIN within a second or so');
    await put(keys.endpoint('net1', 'db0', 'eth0'), ep('db0', { hostname: 'db-0', ips: ['10.1.0.6'], labels: { app: 'db' } }));
    await eventually(async () => (await dig(`db.team-a.svc.${Z}`)).answer[0] === `db.team-a.svc.${Z}. IN A 10.1.0.6`, 1500, 'back with the new address');
  });

  test('100,000 hostile datagrams and 1,000 garbage TCP connections: still answering, memory settles', async (t) => {
    const rss = () => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${server.pid}/status`, 'utf8'))![1]) * 1024;
    const base = rss();
    const r = await pod.run(process.execPath, [path.join(repoRoot, 'dist', 'test', 'dns', 'fuzz-client.js'), SERVER, '53', '100000', '1000', '20261126'], { timeoutMs: 300_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout || `{"stderr":${JSON.stringify(r.stderr)}}`), { udp: 100_000, tcp: 1000 });
    assert.equal(server.exitCode, null, 'server still running');
    assert.deepEqual((await dig(`web.team-a.svc.${Z}`)).answer, [`web.team-a.svc.${Z}. IN A 10.96.0.10`]);
    assert.deepEqual((await dig('+tcp', `web.team-a.svc.${Z}`)).answer, [`web.team-a.svc.${Z}. IN A 10.96.0.10`]);
    // Settled: within a bound of where it started, and not still climbing.
    const settled = await eventually(async () => {
      const a = rss();
      await dig(`web.team-a.svc.${Z}`);
      const b = rss();
      return b <= a + 1024 * 1024 ? b : 0;
    }, 10_000, 'RSS to stop growing');
    t.diagnostic(`server RSS ${(base / 2 ** 20).toFixed(1)} MiB before, ${(settled / 2 ** 20).toFixed(1)} MiB after the flood`);
    assert.ok(settled < base + 96 * 1024 * 1024, `RSS ${settled} vs ${base} at start`);
  });

  test('upstream down: cached names still answered, unknown ones SERVFAIL fast', async () => {
    assert.deepEqual((await dig('known.example.test')).answer, ['known.example.test. IN A 192.0.2.1']);
    dnsmasq.kill('SIGKILL');
    await eventually(() => dnsmasq.exitCode !== null || dnsmasq.signalCode !== null, 5000, 'dnsmasq to exit');
    for (let i = 0; i < 3; i++) {
      assert.deepEqual((await dig('known.example.test')).answer, ['known.example.test. IN A 192.0.2.1'], 'cached or stale');
      // +timeout=1: dig gives up after one second, so an answer at all means "well under a second".
      const d = await pod.run('dig', [`@${SERVER}`, '+tries=1', '+timeout=1', `unknown${i}.example.test`]);
      assert.equal(parseDig(d.stdout).status, 'SERVFAIL', d.stdout);
    }
  });
});

test('an upstream with no route (ENETUNREACH) is a SERVFAIL, not the end of the server', { skip: !isRoot && NEEDS_ROOT, timeout: 60_000 }, async () => {
  const lab = new Lab('mwdr');
  try {
    // Only loopback: 192.0.2.53 (TEST-NET-1) has no route here, so connect() itself fails.
    const ns = lab.netns('lone');
    const server = lab.spawnIn(ns, process.execPath, [path.join(repoRoot, 'dist', 'cli', 'main.js'), 'dns', 'serve', '--listen', '127.0.0.1:53',
      '--store', `file:${path.join(lab.tmp, 'store')}`, '--upstream', '192.0.2.53', '--upstream', '[2001:db8::53]']);
    let log = '';
    server.stderr?.on('data', (d) => (log += d));
    const dig = async (name: string) => parseDig((await ns.run('dig', ['@127.0.0.1', '+tries=1', '+timeout=2', name])).stdout);
    await eventually(async () => (await dig(`dns-version.${Z}`)).status === 'NOERROR', 20_000, `server to answer (log: ${log})`);
    for (const name of ['example.com', 'other.example.org']) assert.equal((await dig(name)).status, 'SERVFAIL', name);
    assert.equal(server.exitCode, null, `server still running (log: ${log})`);
    assert.equal((await dig(`dns-version.${Z}`)).status, 'NOERROR');
  } finally {
    await lab.cleanup();
  }
});
