import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { Lab, isRoot, NEEDS_ROOT } from '../helpers/lab';
import { openNetlink, withNetlink, netnsFd, dump, mapError, ExistsError, NotFoundError, BusyError, DumpInterruptedError, type Netlink } from '../../cni/netlink/socket';
import { rt } from 'netlink';
import {
  linkAddBridge, linkAddVeth, linkByName, linkList, linkSetMaster, linkSetUp, linkSetDown, linkSetMtu, linkSetMac,
  linkSetName, linkSetNetns, linkDel, linkDelByName, linkSetBridgePort, bridgePortFlags, linkSetPromisc,
} from '../../cni/netlink/link';
import { addrAdd, addrDel, addrList } from '../../cni/netlink/addr';
import { routeReplace, routeDel, routeList } from '../../cni/netlink/route';
import { parseCidr, formatIp, formatCidr, networkOf, parseIp } from '../../cni/netlink/ip';
import { nla, parseAttrs, linkInfo, parseLinkInfo } from '../../cni/netlink/attrs';

test('ip: parse and format round-trip, RFC 5952 compression', () => {
  const cases: Array<[string, string]> = [
    ['10.1.2.3', '10.1.2.3'], ['fd00::1', 'fd00::1'], ['fd00:0:0:1::', 'fd00:0:0:1::'], ['::', '::'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], ['::ffff:10.0.0.1', '::ffff:a00:1'], ['1:0:2:3:4:5:6:7', '1:0:2:3:4:5:6:7'],
  ];
  for (const [i, o] of cases) assert.equal(formatIp(parseIp(i)), o, i);
  assert.equal(formatCidr(networkOf(parseCidr('10.1.2.3/20'))), '10.1.0.0/20');
  assert.equal(formatCidr(networkOf(parseCidr('fd00:1:2:3::5/48'))), 'fd00:1:2::/48');
  for (const bad of ['10.1.2/24', '10.1.2.3/33', 'fd00::/129', 'x/1', '10.0.0.1', '']) assert.throws(() => parseCidr(bad), /invalid CIDR/);
});

test('socket: errno mapping and NLM_F_DUMP_INTR retry', async () => {
  assert.ok(mapError('x', new Error('Request rejected: EEXIST')) instanceof ExistsError);
  assert.ok(mapError('x', new Error('Request rejected: ENODEV')) instanceof NotFoundError);
  assert.ok(mapError('x', Object.assign(new Error('busy'), { code: 'EBUSY' })) instanceof BusyError);
  assert.match(mapError('add link br0', new Error('Request rejected: EPERM')).message, /^add link br0: EPERM$/);
  // A fake socket whose first two dumps are flagged as interrupted.
  let calls = 0;
  const msg = (flags: number) => ({ type: rt.MessageType.NEWLINK, flags, seq: 1, port: 0, data: Buffer.alloc(16) });
  const fake = { raw: { request: async () => { calls++; return [[msg(calls <= 2 ? 0x10 : 0)], {}]; } } } as unknown as Netlink;
  const out = await dump(fake, 'list links', rt.MessageType.GETLINK, []);
  assert.equal(calls, 3);
  assert.equal(out.length, 1);
  const always = { raw: { request: async () => [[msg(0x10)], {}] } } as unknown as Netlink;
  await assert.rejects(dump(always, 'list links', rt.MessageType.GETLINK, []), DumpInterruptedError);
});

test('attrs: nested encoding parses back', () => {
  const info = linkInfo('vxlan', [nla(1, Buffer.from([1, 0, 0, 0]))]);
  const parsed = parseLinkInfo(info);
  assert.equal(parsed.kind, 'vxlan');
  assert.deepEqual(parsed.data?.map((a) => a.type), [1]);
  assert.equal(parseAttrs(nla(3, Buffer.from('abc'))).length, 1);
});

test('netlink verbs on real namespaces', { skip: !isRoot && NEEDS_ROOT }, async () => {
  const lab = new Lab('mwnl');
  try {
    const host = lab.netns('host');
    const pod = lab.netns('pod');
    const br = lab.link('br');
    const vh = lab.link('vh');
    await withNetlink(host.path, async (nl) => {
      await linkAddBridge(nl, { name: br, mtu: 1400 });
      await assert.rejects(linkAddBridge(nl, { name: br }), ExistsError);
      const bridge = await linkByName(nl, br);
      assert.equal(bridge?.kind, 'bridge');
      assert.equal(bridge?.mtu, 1400);
      assert.equal(await linkByName(nl, 'nope0'), undefined);
      await assert.rejects(linkDel(nl, 999999), NotFoundError);

      const fd = netnsFd(pod.path);
      try {
        await linkAddVeth(nl, { name: vh, peerName: 'eth0', peerNetnsFd: fd, mtu: 1400, peerMac: '02:aa:bb:cc:dd:01' });
      } finally { fs.closeSync(fd); }
      const v = await linkByName(nl, vh);
      assert.equal(v?.kind, 'veth');
      await linkSetMaster(nl, v!.index, bridge!.index);
      await linkSetBridgePort(nl, v!.index, { hairpin: true, learning: true });
      const port = await linkByName(nl, vh);
      assert.equal(port?.master, bridge!.index);
      assert.equal(port?.slaveKind, 'bridge');
      assert.equal(bridgePortFlags(port!).hairpin, true);
      await linkSetUp(nl, v!.index);
      await linkSetUp(nl, bridge!.index);
      await linkSetPromisc(nl, bridge!.index, true);
      assert.equal((await linkByName(nl, br))?.promisc, true);
      await addrAdd(nl, bridge!.index, '10.77.0.1/24');
      await addrAdd(nl, bridge!.index, 'fd77::1/64', { noDad: true });
      await assert.rejects(addrAdd(nl, bridge!.index, '10.77.0.1/24'), ExistsError);
      const addrs = await addrList(nl, { index: bridge!.index });
      assert.ok(addrs.some((a) => a.cidr === '10.77.0.1/24'));
      assert.ok(addrs.some((a) => a.cidr === 'fd77::1/64'));
      assert.ok((await linkList(nl)).some((l) => l.name === br));
    });
    // The peer was born in the pod namespace with its name and MAC.
    assert.match(pod.ip('link', 'show', 'eth0'), /02:aa:bb:cc:dd:01/);

    const nl = openNetlink(pod.path);
    try {
      const eth0 = (await linkByName(nl, 'eth0'))!;
      await linkSetMtu(nl, eth0.index, 1300);
      await linkSetMac(nl, eth0.index, '02:aa:bb:cc:dd:02');
      await linkSetName(nl, eth0.index, 'net1');
      const net1 = (await linkByName(nl, 'net1'))!;
      assert.equal(net1.mtu, 1300);
      assert.equal(net1.mac, '02:aa:bb:cc:dd:02');
      await linkSetUp(nl, net1.index);
      await addrAdd(nl, net1.index, '10.77.0.2/24');
      await addrAdd(nl, net1.index, 'fd77::2/64', { noDad: true });
      await routeReplace(nl, { dst: '0.0.0.0/0', gw: '10.77.0.1', oif: net1.index });
      await routeReplace(nl, { dst: '0.0.0.0/0', gw: '10.77.0.1', oif: net1.index }); // idempotent
      await routeReplace(nl, { dst: '10.99.0.0/16', gw: '10.200.0.1', oif: net1.index, onlink: true });
      await routeReplace(nl, { dst: '::/0', gw: 'fd77::1', oif: net1.index });
      const routes = await routeList(nl, { oif: net1.index });
      assert.ok(routes.some((r) => r.dst === '0.0.0.0/0' && r.gw === '10.77.0.1'), JSON.stringify(routes));
      assert.ok(routes.some((r) => r.dst === '10.99.0.0/16' && r.onlink));
      assert.ok(routes.some((r) => r.dst === '::/0' && r.gw === 'fd77::1'));
      assert.ok(routes.some((r) => r.dst === '10.77.0.0/24' && r.scope === 253));
      // Real datapath: the pod reaches the bridge over both families.
      pod.sh('ping', ['-c1', '-W2', '10.77.0.1']);
      pod.sh('ping', ['-6', '-c1', '-W2', 'fd77::1']);
      assert.equal(await routeDel(nl, { dst: '10.99.0.0/16', gw: '10.200.0.1', oif: net1.index }), true);
      assert.equal(await routeDel(nl, { dst: '10.99.0.0/16', gw: '10.200.0.1', oif: net1.index }), false);
      assert.equal(await addrDel(nl, net1.index, '10.77.0.2/24'), true);
      assert.equal(await addrDel(nl, net1.index, '10.77.0.2/24'), false);
      await linkSetDown(nl, net1.index);
      assert.equal((await linkByName(nl, 'net1'))?.up, false);
      // Move it into the host namespace by fd, then delete it from there.
      const fd = netnsFd(host.path);
      try { await linkSetNetns(nl, net1.index, fd); } finally { fs.closeSync(fd); }
      assert.equal(await linkByName(nl, 'net1'), undefined);
    } finally { nl.close(); }
    await withNetlink(host.path, async (h) => {
      assert.equal(await linkDelByName(h, 'net1'), true);
      assert.equal(await linkDelByName(h, 'net1'), false);
      assert.equal(await linkByName(h, vh), undefined, 'deleting one end removes the pair');
    });
  } finally {
    await lab.cleanup();
  }
});
