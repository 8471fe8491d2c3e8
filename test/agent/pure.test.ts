import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addrAt, formatNet, netContains, parseNet, subnetAt, subnetCount } from '../../agent/subnet-math';
import { desiredState, peersOf } from '../../agent/peers';
import { diff, planSize } from '../../agent/diff';
import { agentConfig } from '../../agent/config';
import { parseListen } from '../../agent/http';
import { vtepMacFor } from '../../agent/host';
import type { NodeRecord } from '../../store/records';

test('subnet math: carving, containment, addresses (IPv4 and IPv6)', () => {
  const c4 = parseNet('10.244.0.0/16');
  assert.equal(subnetCount(c4, 24), 256);
  assert.equal(formatNet(subnetAt(c4, 24, 0)), '10.244.0.0/24');
  assert.equal(formatNet(subnetAt(c4, 24, 255)), '10.244.255.0/24');
  assert.equal(addrAt(parseNet('10.244.7.0/24'), 1), '10.244.7.1');
  assert.ok(netContains(c4, parseNet('10.244.9.0/24')));
  assert.ok(!netContains(c4, parseNet('10.245.0.0/24')));
  const c6 = parseNet('fd00:10::/48');
  assert.equal(formatNet(subnetAt(c6, 64, 3)), 'fd00:10:0:3::/64');
  assert.throws(() => parseNet('10.244.1.0/16'), /host bits set/);
  assert.throws(() => subnetCount(c4, 12), /does not fit/);
});

const rec = (name: string, underlay: string, mac: string | undefined, subnets: string[], network = 'mesh'): NodeRecord =>
  ({ name, underlay, vtepMac: mac, podSubnets: { [network]: subnets } });

test('peers: self, other networks, bad records and conflicts are left out deterministically', () => {
  const clusters = [parseNet('10.244.0.0/16')];
  const { peers, skipped } = peersOf([
    rec('me', '192.0.2.1', '02:00:00:00:00:01', ['10.244.1.0/24']),
    rec('b', '192.0.2.2', '02:00:00:00:00:02', ['10.244.2.0/24']),
    rec('a', '192.0.2.3', '02:00:00:00:00:03', ['10.244.2.0/24']), // same subnet as b: a wins by name
    rec('c', '192.0.2.4', undefined, ['10.244.4.0/24']),
    rec('d', '192.0.2.5', '02:00:00:00:00:05', ['10.99.0.0/24']),
    rec('e', '192.0.2.6', '02:00:00:00:00:06', ['10.244.6.0/24'], 'other'),
    rec('f', '192.0.2.7', '02:00:00:00:00:07', ['10.244.1.0/24']), // claims our subnet: never routed away
  ], 'me', 'mesh', clusters);
  assert.deepEqual(peers.map((p) => p.node), ['a']);
  assert.deepEqual(skipped.map((s) => s.node).sort(), ['b', 'c', 'd', 'f']);
  assert.deepEqual(desiredState(peers), {
    routes: [{ dst: '10.244.2.0/24', gw: '10.244.2.0' }],
    neighs: [{ ip: '10.244.2.0', mac: '02:00:00:00:00:03' }],
    fdb: [{ mac: '02:00:00:00:00:03', dst: '192.0.2.3' }],
  });
});

test('diff: nothing to do when the kernel is right; only the difference otherwise', () => {
  const want = {
    routes: [{ dst: '10.244.2.0/24', gw: '10.244.2.0' }, { dst: '10.244.3.0/24', gw: '10.244.3.0' }],
    neighs: [{ ip: '10.244.2.0', mac: '02:00:00:00:00:02' }, { ip: '10.244.3.0', mac: '02:00:00:00:00:03' }],
    fdb: [{ mac: '02:00:00:00:00:02', dst: '192.0.2.2' }, { mac: '02:00:00:00:00:03', dst: '192.0.2.3' }],
  };
  assert.equal(planSize(diff(want, want)), 0);
  const have = {
    routes: [{ dst: '10.244.2.0/24', gw: '10.244.2.0' }, { dst: '10.244.9.0/24', gw: '10.244.9.0' }],
    neighs: [{ ip: '10.244.2.0', mac: '02:00:00:00:00:99' }, { ip: '10.244.9.0', mac: '02:00:00:00:00:09' }],
    fdb: [{ mac: '02:00:00:00:00:02', dst: '192.0.2.2' }, { mac: '02:00:00:00:00:03', dst: '192.0.2.33' }, { mac: '02:00:00:00:00:09', dst: '192.0.2.9' }],
  };
  const p = diff(have, want);
  assert.deepEqual(p.routeSet, [{ dst: '10.244.3.0/24', gw: '10.244.3.0' }]);
  assert.deepEqual(p.routeDel, [{ dst: '10.244.9.0/24', gw: '10.244.9.0' }]);
  assert.deepEqual(p.neighSet, want.neighs); // one wrong MAC, one missing
  assert.deepEqual(p.neighDel, [{ ip: '10.244.9.0' }]);
  assert.deepEqual(p.fdbSet, [{ mac: '02:00:00:00:00:03', dst: '192.0.2.3' }]); // moved in place by replace
  assert.deepEqual(p.fdbDel, [{ mac: '02:00:00:00:00:09', dst: '192.0.2.9' }]);
});

test('agent config: defaults, and errors that name the flag', () => {
  const c = agentConfig({ node: 'n1', underlay: '192.0.2.1' });
  assert.deepEqual(
    [c.network, c.clusterCidrs, c.subnetLen[4], c.vni, c.port, c.vxlanName, c.bridgeName, c.leaseTtlSeconds],
    ['overlay', ['10.244.0.0/16'], 24, 1, 8472, 'mw.vx1', 'mw.br0', 15],
  );
  assert.deepEqual(agentConfig({ node: 'n', underlay: '192.0.2.1', clusterCidrs: '10.1.0.0/16,fd00::/48' }).clusterCidrs, ['10.1.0.0/16', 'fd00::/48']);
  const bad: Array<[Parameters<typeof agentConfig>[0], RegExp]> = [
    [{ underlay: '192.0.2.1' }, /^--node:/],
    [{ node: 'n', underlay: 'eth0' }, /^--underlay: .*"eth0"/],
    [{ node: 'n', underlay: '192.0.2.1', clusterCidrs: ['10.1.2.0/16'] }, /^--cluster-cidr: .*host bits/],
    [{ node: 'n', underlay: '192.0.2.1', clusterCidrs: ['10.1.0.0/16', '10.2.0.0/16'] }, /more than one IPv4/],
    [{ node: 'n', underlay: '192.0.2.1', subnetLen: 33 }, /^--subnet-len:/],
    [{ node: 'n', underlay: '192.0.2.1', clusterCidrs: ['10.1.0.0/24'], subnetLen: 16 }, /^--subnet-len: .*does not fit/],
    [{ node: 'n', underlay: '192.0.2.1', vni: 1 << 24 }, /^--vni:/],
    [{ node: 'n', underlay: '192.0.2.1', vxlanName: 'a-very-long-ifname' }, /^--vxlan-name:/],
  ];
  for (const [input, re] of bad) assert.throws(() => agentConfig(input), (e: Error) => re.test(e.message), JSON.stringify(input));
});

test('metrics listen address parsing', () => {
  assert.deepEqual(parseListen('127.0.0.1:9490'), { host: '127.0.0.1', port: 9490 });
  assert.deepEqual(parseListen('[::1]:0'), { host: '::1', port: 0 });
  assert.deepEqual(parseListen(':9490'), { host: '127.0.0.1', port: 9490 });
  assert.throws(() => parseListen('9490'), /ADDR:PORT/);
});

test('VTEP MAC: stable, locally administered unicast, distinct per node', () => {
  const a = vtepMacFor('n1', 'mesh', 1);
  assert.equal(a, vtepMacFor('n1', 'mesh', 1));
  assert.notEqual(a, vtepMacFor('n2', 'mesh', 1));
  const first = parseInt(a.slice(0, 2), 16);
  assert.equal(first & 0x03, 0x02);
});
