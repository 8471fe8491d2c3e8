import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Lab, eventually, isRoot, NEEDS_ROOT } from '../helpers/lab';
import { EtcdCluster, haveEtcd, NEEDS_ETCD } from '../helpers/etcd';
import { Overlay, type Pod } from './topology';

async function allPairsReach(o: Overlay, pods: Pod[]): Promise<void> {
  for (const a of pods) for (const b of pods) if (a !== b) await o.expectReach(a, b);
}

/**
 * The whole life of a cluster: three hosts reach each other pod to pod; an
 * agent restart changes nothing in the kernel; a fourth host joins and is
 * reachable; a SIGKILLed agent's host disappears from every peer once its
 * lease expires. `midTest` runs between the first convergence and the join.
 */
async function scenario(o: Overlay, midTest: () => Promise<void> = async () => {}): Promise<void> {
  const hosts = [o.addHost(), o.addHost(), o.addHost()];
  await Promise.all(hosts.map((h) => o.startAgent(h)));
  const pods = [];
  for (const h of hosts) pods.push(await o.addPod(h));
  const subnets = hosts.map((h) => o.subnetOf(h));
  assert.equal(new Set(subnets).size, 3, `every host leased its own subnet: ${subnets}`);
  await allPairsReach(o, pods);

  // Restart: SIGTERM keeps the node; the new agent must find everything right and change nothing.
  const [h1] = hosts;
  const before = o.dump(h1);
  await o.stopAgent(h1, 'SIGTERM');
  await o.startAgent(h1);
  await eventually(() => /"msg":"node registered"/.test(h1.log), 10_000, 'restarted agent registered');
  assert.equal(o.subnetOf(h1), subnets[0], 'a restarted node keeps its subnet');
  // Let it run a full reconcile: a peer's change now would show in its log.
  await o.expectReach(pods[0], pods[1]);
  assert.equal(o.dump(h1), before, 'restart changed kernel state');
  assert.doesNotMatch(h1.log, /"overlay converged"/, 'the restarted agent applied changes');

  await midTest();

  // A fourth host joins and becomes reachable from every existing host, both ways.
  const h4 = o.addHost();
  await o.startAgent(h4);
  const p4 = await o.addPod(h4);
  for (const p of pods) { await o.expectReach(p, p4); await o.expectReach(p4, p); }

  // SIGKILL: no goodbye; the lease expires and the others drop the host's subnet.
  const dead = hosts[1];
  const deadSubnet = o.subnetOf(dead);
  assert.match(o.routes(hosts[0]), new RegExp(deadSubnet.replace(/\./g, '\\.')));
  await o.stopAgent(dead, 'SIGKILL');
  for (const h of [hosts[0], hosts[2], h4]) {
    await eventually(() => !o.routes(h).includes(deadSubnet.split('/')[0]), 20_000, `${h.name} to drop ${dead.name}'s route`);
  }
  await o.expectReach(pods[0], p4);
  await o.expectReach(p4, pods[2]);
}

test('overlay on the file store: pods reach each other across hosts; join, restart, death', { skip: !isRoot && NEEDS_ROOT, timeout: 180_000 }, async () => {
  const lab = new Lab();
  try {
    const o = new Overlay(lab, `file:${lab.tmp}/store`);
    await scenario(o);
  } finally {
    await lab.cleanup();
  }
});

test('overlay on a three-member etcd cluster, one member stopped mid-test', { skip: (!isRoot && NEEDS_ROOT) || (!haveEtcd && NEEDS_ETCD), timeout: 240_000 }, async () => {
  const lab = new Lab();
  let etcd: EtcdCluster | undefined;
  try {
    etcd = await EtcdCluster.start(3);
    const o = new Overlay(lab, etcd.spec, { leaseTtl: 3, etcdPorts: etcd.members.map((m) => m.clientPort) });
    await scenario(o, async () => {
      await etcd!.stop(0);
      // The cluster keeps its quorum; agents keep renewing through the other members.
    });
  } finally {
    await lab.cleanup();
    await etcd?.cleanup();
  }
});

test('dual-stack overlay: IPv4 and IPv6 pod subnets, TCP both ways over both families', { skip: !isRoot && NEEDS_ROOT, timeout: 120_000 }, async () => {
  const lab = new Lab();
  try {
    const o = new Overlay(lab, `file:${lab.tmp}/store`, { clusterCidr: '10.96.0.0/16,fd96::/48' });
    const hosts = [o.addHost(), o.addHost()];
    await Promise.all(hosts.map((h) => o.startAgent(h)));
    const [a, b] = [await o.addPod(hosts[0]), await o.addPod(hosts[1])];
    assert.ok(a.ip6 && b.ip6, 'pods got IPv6 addresses from their node subnets');
    for (const fam of [4, 6] as const) { await o.expectReach(a, b, 15_000, fam); await o.expectReach(b, a, 15_000, fam); }
    assert.match(hosts[0].ns.ip('-6', 'route', 'show', 'dev', 'mw.vx1'), /fd96:.*via fd96:.* onlink/);

    // A bad IPAM field in an overlay config: code 7 naming it, once (IPAM that could not read its
    // config took nothing, so its release is not reported as a failed cleanup), and nothing left.
    const bad = JSON.stringify({ ...JSON.parse(o.cniConf(hosts[0])), ipam: { type: 'meshwork', dataDir: 7 } });
    const ns = lab.netns('bad');
    const linksBefore = hosts[0].ns.ip('-o', 'link', 'show');
    const err = await o.cni(hosts[0], 'ADD', { ns, containerId: `${lab.id}-bad` }, bad).then(() => assert.fail('ADD succeeded'), (e: Error) => e.message);
    const json = JSON.parse(err.slice(err.indexOf('{'), err.indexOf('}\n') + 1));
    assert.equal(json.code, 7, err);
    assert.match(json.msg, /ipam\.dataDir/);
    assert.doesNotMatch(err, /cleanup after the failure/);
    assert.equal(hosts[0].ns.ip('-o', 'link', 'show'), linksBefore, 'no link left behind');
  } finally {
    await lab.cleanup();
  }
});

test('egress: pods reach addresses outside the cluster masqueraded to their node; --no-ip-masq turns it off', { skip: !isRoot && NEEDS_ROOT, timeout: 120_000 }, async () => {
  for (const masq of [true, false]) {
    const lab = new Lab();
    try {
      const o = new Overlay(lab, `file:${lab.tmp}/store`, masq ? {} : { agentArgs: ['--no-ip-masq'] });
      const [h1, h2] = [o.addHost(), o.addHost()];
      await Promise.all([o.startAgent(h1), o.startAgent(h2)]);
      const [a, b] = [await o.addPod(h1), await o.addPod(h2)];
      const outside = o.externalServer();
      // Inside the cluster nothing is translated, masquerade or not.
      await o.expectReach(a, b);
      await o.expectReach(b, a);
      const tables = h1.ns.sh('nft', ['list', 'tables']).stdout;
      if (masq) {
        assert.match(tables, /meshwork-egress-mesh/);
        await eventually(async () => (await o.tcp(a, outside)) === `192.168.90.254 ${h1.underlay}`, 10_000, 'outside server sees the node address');
        assert.equal(await o.tcp(b, outside), `192.168.90.254 ${h2.underlay}`);
      } else {
        assert.doesNotMatch(tables, /meshwork-egress/);
        // The reply has no way back to a pod address: the connection cannot complete.
        assert.equal(await o.tcp(a, outside), undefined);
      }
    } finally {
      await lab.cleanup();
    }
  }
});
