/** The pure parts: record validation, endpoint selection, the desired table and its nft text. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildVipTable, parseVipEndpoint, parseVipService, VipRecordError, type VipEndpoint, type VipService, type VipServicePort } from '../../agent/service-vips-model';
import { deleteScript, objectsOf, renderPatch, renderScript, safeComment, svcChain, DEFAULT_MASQ_MARK } from '../../agent/service-vips-render';
import { staleUdpFlows } from '../../agent/service-vips-conntrack';
import { Lab, isRoot, NEEDS_ROOT } from '../helpers/lab';
import { seeded } from '../helpers/seeded';

const K = '/meshwork/policies/Service/prod/web';
const doc = (spec: Record<string, unknown>, meta: Record<string, unknown> = { name: 'web', namespace: 'prod', labels: {} }) =>
  JSON.stringify({ kind: 'Service', metadata: meta, spec: { type: 'ClusterIP', selector: { app: 'web' }, ports: [{ port: 80, protocol: 'TCP', targetPort: 8080 }], ...spec } });

test('services: which ones get a VIP', () => {
  const cases: Array<[string, string, boolean]> = [
    ['allocated', doc({ clusterIP: '10.96.0.10' }), true],
    ['dual stack', doc({ clusterIP: '10.96.0.10', clusterIPs: ['10.96.0.10', 'fd00:96::10'] }), true],
    ['headless', doc({ clusterIP: 'None' }), false],
    ['not yet allocated', doc({}), false],
    ['ExternalName', doc({ type: 'ExternalName', externalName: 'example.com', ports: [] }), false],
  ];
  for (const [what, text, vip] of cases) assert.equal(parseVipService(K, text) !== undefined, vip, what);
  const dual = parseVipService(K, doc({ clusterIP: '10.96.0.10', clusterIPs: ['10.96.0.10', 'FD00:96:0::10'] }))!;
  assert.deepEqual(dual.vips, [{ family: 4, ip: '10.96.0.10' }, { family: 6, ip: 'fd00:96::10' }], 'addresses canonical');
  assert.deepEqual(parseVipService(K, doc({ clusterIP: '10.96.0.10', ports: [{ port: 53, protocol: 'UDP' }] }))!.ports,
    [{ name: undefined, protocol: 'udp', port: 53, targetPort: 53 }], 'targetPort defaults to port');
});

test('services: bad records are refused with the key and the field named', () => {
  const cases: Array<[string, RegExp]> = [
    ['{', /not JSON/],
    [doc({ clusterIP: '10.96.0.300' }), /spec\.clusterIP "10\.96\.0\.300" is not an IP address/],
    [doc({ clusterIP: '10.96.0.1; flush ruleset' }), /is not an IP address/],
    [doc({ clusterIP: '10.96.0.10', ports: [{ port: 70000, protocol: 'TCP' }] }), /spec\.ports\[0\]\.port must be an integer 1-65535/],
    [doc({ clusterIP: '10.96.0.10', ports: [{ port: 80, protocol: 'SCTP' }] }), /spec\.ports\[0\]\.protocol must be TCP or UDP/],
    [doc({ clusterIP: '10.96.0.10', ports: [{ port: 80, targetPort: '80; drop' }] }), /targetPort must be an integer/],
    [doc({ clusterIP: '10.96.0.10', selector: { app: 1 } }), /spec\.selector must map strings to strings/],
    [doc({ clusterIP: '10.96.0.10' }, { name: '' }), /metadata\.name and metadata\.namespace/],
  ];
  for (const [text, msg] of cases) {
    assert.throws(() => parseVipService(K, text), (e: unknown) => e instanceof VipRecordError && e.code === 'EVIPRECORD' && e.message.startsWith(`${K}: `) && msg.test(e.message), String(msg));
  }
  assert.throws(() => parseVipEndpoint('/ep', JSON.stringify({ namespace: 'prod', ready: 'yes', ips: [] })), /\/ep: ready must be a boolean/);
  assert.throws(() => parseVipEndpoint('/ep', JSON.stringify({ namespace: 'prod', ready: true, ips: ['x'] })), /\/ep: ips\[0\] "x" is not an IP address/);
  assert.deepEqual(parseVipEndpoint('/ep', JSON.stringify({ namespace: 'prod', ready: true, ips: ['10.1.0.2/24'] })).ips, [{ family: 4, ip: '10.1.0.2' }]);
});

const svc = (name: string, ip: string, selector: Record<string, string>, ports: VipServicePort[] = [{ protocol: 'tcp', port: 80, targetPort: 8080 }], ns = 'prod'): VipService =>
  ({ namespace: ns, name, selector, vips: ip.includes(':') ? [{ family: 6, ip }] : [{ family: 4, ip }], ports });
const ep = (ips: string[], labels: Record<string, string>, ready = true, namespace = 'prod'): VipEndpoint =>
  ({ namespace, labels, ready, ips: ips.map((ip) => ({ family: ip.includes(':') ? 6 : 4, ip })) });

test('table: ready endpoints of the namespace whose labels match, per family, sorted and deduplicated', () => {
  const { table, conflicts } = buildVipTable([svc('web', '10.96.0.10', { app: 'web' })], [
    ep(['10.1.0.3', 'fd00::3'], { app: 'web', v: '2' }),
    ep(['10.1.0.2'], { app: 'web' }),
    ep(['10.1.0.2'], { app: 'web' }), // same address recorded twice
    ep(['10.1.0.4'], { app: 'web' }, false),
    ep(['10.1.0.5'], { app: 'db' }),
    ep(['10.1.0.6'], { app: 'web' }, true, 'other'),
  ]);
  assert.deepEqual(conflicts, []);
  assert.deepEqual(table.entries.map((e) => [e.id, e.vip, e.protocol, e.port, e.backends]), [
    ['prod/web:80/tcp', '10.96.0.10', 'tcp', 80, [{ ip: '10.1.0.2', port: 8080 }, { ip: '10.1.0.3', port: 8080 }]],
  ]);
  const none = buildVipTable([svc('all', '10.96.0.11', {})], [ep(['10.1.0.2'], {})]).table;
  assert.deepEqual(none.entries[0].backends, [], 'an empty selector selects nothing');
});

test('table: two services on one VIP:port keep the first by name and report the other', () => {
  const { table, conflicts } = buildVipTable([svc('b', '10.96.0.10', { app: 'b' }), svc('a', '10.96.0.10', { app: 'a' })], [ep(['10.1.0.2'], { app: 'b' })]);
  assert.equal(table.entries.length, 1);
  assert.equal(table.entries[0].service, 'prod/a');
  assert.deepEqual(conflicts, [{ id: '10.96.0.10:80/tcp', owner: 'prod/a', loser: 'prod/b' }]);
});

test('render: deterministic, hashed chain names, user names only in sanitised comments', () => {
  const hostile = svc('x";flush ruleset;"', '10.96.0.10', { app: 'web' });
  const tcpUdp = svc('dns', 'fd00:96::a', { app: 'dns' }, [{ protocol: 'udp', port: 53, targetPort: 5353 }, { protocol: 'tcp', port: 53, targetPort: 5353 }]);
  const { table } = buildVipTable([hostile, tcpUdp], [ep(['10.1.0.2', 'fd00::2'], { app: 'web' }), ep(['fd00::3'], { app: 'dns' }), ep(['fd00::4'], { app: 'dns' })]);
  const o = { table: 'meshwork-svc', masqueradeMark: DEFAULT_MASQ_MARK, sameLinkMasquerade: true };
  const a = renderScript(table, o);
  assert.equal(renderScript(buildVipTable([tcpUdp, hostile], [ep(['fd00::4'], { app: 'dns' }), ep(['fd00::3'], { app: 'dns' }), ep(['10.1.0.2', 'fd00::2'], { app: 'web' })]).table, o), a, 'input order does not matter');
  assert.doesNotMatch(a, /flush ruleset/, 'no user text reaches nft as syntax');
  for (const m of a.matchAll(/"([^"]*)"/g)) assert.match(m[1], /^[A-Za-z0-9._:/+-]*$/, `quoted text ${m[1]}`);
  assert.equal(safeComment('a"b\\c d\n'), 'a_b_c_d_');
  assert.match(a, new RegExp(`10\\.96\\.0\\.10 \\. tcp \\. 80 : goto ${svcChain(table.entries.find((e) => e.vip === '10.96.0.10')!)}`));
  assert.match(a, /dnat ip to 10\.1\.0\.2:8080/);
  assert.match(a, /numgen random mod 2 vmap \{ 0 : goto ep-[0-9a-f]{12}, 1 : goto ep-[0-9a-f]{12} \}/);
  assert.match(a, /meta l4proto udp dnat ip6 to \[fd00::3\]:5353/);
  assert.match(a, /fib daddr \. iif oif exists/);
  // Every served address . protocol . port, so any other port of a VIP is refused.
  assert.match(a, /set service-ports6 \{\s+type ipv6_addr \. inet_proto \. inet_service\s+elements = \{ fd00:96::a \. tcp \. 53,\s+fd00:96::a \. udp \. 53 \}/);
  assert.match(a, /ip daddr @vips4 ip daddr \. meta l4proto \. th dport != @service-ports4 goto reject-unserved-port/);
  assert.doesNotMatch(renderScript(table, { ...o, sameLinkMasquerade: false }), /fib daddr/);
  assert.throws(() => renderScript(table, { ...o, table: 'bad name' }), /table name/);
  assert.throws(() => renderScript(table, { ...o, masqueradeMark: 3 }), /single bit/);
  assert.equal(deleteScript('meshwork-svc'), 'table inet meshwork-svc {}\ndelete table inet meshwork-svc\n');
});

test('render: nft loads the program (in a throwaway namespace)', { skip: !isRoot && NEEDS_ROOT }, async () => {
  const lab = new Lab('mwv');
  try {
    const ns = lab.netns('chk');
    const services = [
      svc('web', '10.96.0.10', { app: 'web' }), svc('none', '10.96.0.11', { app: 'nobody' }),
      svc('v6', 'fd00:96::a', { app: 'web' }, [{ protocol: 'udp', port: 53, targetPort: 53 }]),
      svc('v6-none', 'fd00:96::b', { app: 'nobody' }, [{ protocol: 'udp', port: 53, targetPort: 53 }]),
    ];
    const { table } = buildVipTable(services, [ep(['10.1.0.2', 'fd00::2'], { app: 'web' }), ep(['10.1.0.3'], { app: 'web' })]);
    for (const sameLinkMasquerade of [true, false]) {
      const script = renderScript(table, { table: 'meshwork-svc', masqueradeMark: DEFAULT_MASQ_MARK, sameLinkMasquerade });
      ns.sh('nft', ['-f', '-'], { input: script });
      ns.sh('nft', ['-f', '-'], { input: script }); // replacing an existing table works too
    }
    const empty = renderScript({ entries: [] }, { table: 'meshwork-svc', masqueradeMark: DEFAULT_MASQ_MARK, sameLinkMasquerade: true });
    ns.sh('nft', ['-f', '-'], { input: empty });
    ns.sh('nft', ['-f', '-'], { input: deleteScript('meshwork-svc') });
    ns.sh('nft', ['-f', '-'], { input: deleteScript('meshwork-svc') }); // and deleting twice
    assert.equal(ns.sh('nft', ['list', 'tables']).stdout.trim(), '');
  } finally {
    await lab.cleanup();
  }
});

/** `nft list table` text with blocks and set elements sorted: two equal tables compare equal whatever their history. */
function normalise(listing: string): string {
  const body = listing.trim().replace(/\}$/, '').replace(/elements = \{([^}]*)\}/g, (_, els: string) => `elements = { ${els.split(',').map((x) => x.trim()).filter(Boolean).sort().join(', ')} }`);
  const blocks = body.split(/\n(?=\t(?:chain|map|set) )/).map((b) => b.replace(/\s+/g, ' ').trim());
  return blocks.sort().join('\n');
}

test('render: a partial sync leaves the kernel exactly as a full sync would', { skip: !isRoot && NEEDS_ROOT }, async () => {
  const lab = new Lab('mwv');
  try {
    const inc = lab.netns('inc');
    const fresh = lab.netns('fresh');
    const o = { table: 'meshwork-svc', masqueradeMark: DEFAULT_MASQ_MARK, sameLinkMasquerade: true };
    const random = seeded(42);
    const pool = Array.from({ length: 8 }, (_, i) => [`10.1.0.${i + 2}`, `fd00::${i + 2}`]);
    const randomTable = () => {
      const services = Array.from({ length: 1 + Math.floor(random() * 6) }, (_, i) =>
        svc(`s${i}`, random() < 0.3 ? `fd00:96::${i + 1}` : `10.96.0.${i + 1}`, { app: `a${i % 3}` },
          random() < 0.5 ? [{ protocol: 'tcp', port: 80, targetPort: 8080 }] : [{ protocol: 'udp', port: 53, targetPort: 5353 }, { protocol: 'tcp', port: 53, targetPort: 5353 }]));
      const eps = pool.filter(() => random() < 0.5).map((ips) => ep(ips, { app: `a${Math.floor(random() * 3)}` }, random() < 0.85));
      return buildVipTable(services, eps).table;
    };
    let prev = randomTable();
    inc.sh('nft', ['-f', '-'], { input: renderScript(prev, o) });
    let patches = 0;
    for (let step = 0; step < 12; step++) {
      const next = randomTable();
      const patch = renderPatch(objectsOf(prev, o), objectsOf(next, o), o);
      if (patch) { inc.sh('nft', ['-f', '-'], { input: patch }); patches++; }
      fresh.sh('nft', ['-f', '-'], { input: renderScript(next, o) });
      const a = normalise(inc.sh('nft', ['list', 'table', 'inet', 'meshwork-svc']).stdout);
      const b = normalise(fresh.sh('nft', ['list', 'table', 'inet', 'meshwork-svc']).stdout);
      assert.equal(a, b, `step ${step}: patch\n${patch}`);
      prev = next;
    }
    assert.ok(patches >= 10, `transitions exercised: ${patches}`);
    assert.equal(renderPatch(objectsOf(prev, o), objectsOf(prev, o), o), '', 'no difference, no script');
  } finally {
    await lab.cleanup();
  }
});

test('conntrack: the UDP backends that left a VIP port, and nothing else', () => {
  const udp: VipServicePort[] = [{ protocol: 'udp', port: 53, targetPort: 5353 }, { protocol: 'tcp', port: 53, targetPort: 5353 }];
  const before = buildVipTable([svc('dns', '10.96.0.10', { app: 'dns' }, udp), svc('gone', '10.96.0.11', { app: 'g' }, udp)],
    [ep(['10.1.0.2'], { app: 'dns' }), ep(['10.1.0.3'], { app: 'dns' }), ep(['10.1.0.9'], { app: 'g' })]).table;
  const after = buildVipTable([svc('dns', '10.96.0.10', { app: 'dns' }, udp)], [ep(['10.1.0.3'], { app: 'dns' }), ep(['10.1.0.4'], { app: 'dns' })]).table;
  assert.deepEqual(staleUdpFlows(before, after), [
    { family: 4, vip: '10.96.0.10', port: 53, backend: '10.1.0.2' },
    { family: 4, vip: '10.96.0.11', port: 53, backend: '10.1.0.9' },
  ]);
  assert.deepEqual(staleUdpFlows(after, after), []);
});
