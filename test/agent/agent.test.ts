import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { Lab, eventually, isRoot, NEEDS_ROOT, sh } from '../helpers/lab';
import { createMemoryStore } from '../../store/memory';
import { keys } from '../../store/keys';
import { openNetlink } from '../../cni/netlink/socket';
import { createAgent } from '../../agent/agent';
import { agentConfig } from '../../agent/config';
import { createAgentMetrics } from '../../agent/metrics';
import { jsonLogger, silentLogger } from '../../agent/logger';
import { readNodeState } from '../../agent/node-state';
import type { NodeRecord } from '../../store/records';

const peer = (i: number, underlay = `192.168.91.${100 + i}`): NodeRecord => ({
  name: `sim${i}`, underlay, vtepMac: `02:00:00:00:00:${i.toString(16).padStart(2, '0')}`, podSubnets: { mesh: [`10.97.${i}.0/24`] },
});

test('agent in a namespace: converges on joins, changes and expiry; repairs drift; leaves cleanly', { skip: !isRoot && NEEDS_ROOT, timeout: 60_000 }, async () => {
  const lab = new Lab();
  const store = createMemoryStore();
  let agent: ReturnType<typeof createAgent> | undefined;
  try {
    const h = lab.netns('h');
    const other = lab.netns('o');
    lab.veth(h, 'eth0', '192.168.91.1/24', other, 'eth0', '192.168.91.2/24');
    const nl = openNetlink(h.path);
    lab.onCleanup(() => nl.close());
    const metrics = createAgentMetrics();
    const cfg = agentConfig({
      node: 'me', underlay: '192.168.91.1', network: 'mesh', clusterCidrs: ['10.97.0.0/16'], stateDir: path.join(lab.tmp, 'state'), leaseTtlSeconds: 1,
    });
    agent = createAgent(cfg, { store, netlink: nl, netnsPath: h.path, logger: process.env.MW_DEBUG ? jsonLogger('agent') : silentLogger, metrics });
    await agent.start();
    await agent.ready;

    // Our own side: VTEP, bridge, state file for the CNI driver, node record.
    const st = readNodeState(cfg.stateDir, 'mesh')!;
    assert.equal(st.mtu, 1450);
    assert.match(h.ip('-d', 'link', 'show', 'mw.vx1'), /vxlan id 1 local 192\.168\.91\.1 dev eth0 .*dstport 8472 nolearning .*noudpcsum/);
    assert.match(h.ip('addr', 'show', 'mw.br0'), new RegExp(`inet ${st.gateways[0].replace(/\./g, '\\.')}/24`));
    const mine = JSON.parse((await store.get(keys.node('me')))!.value) as NodeRecord;
    assert.deepEqual(mine.podSubnets, { mesh: st.subnets });
    assert.equal(sh('ip', ['netns', 'exec', h.name, 'cat', '/proc/sys/net/ipv4/ip_forward']).stdout.trim(), '1');

    // Three peers join.
    const leases = await Promise.all([1, 2, 3].map(() => store.grantLease(1)));
    for (const i of [1, 2, 3]) await store.put(keys.node(`sim${i}`), JSON.stringify(peer(i)), { lease: leases[i - 1].id });
    // A malformed record must not stop the others.
    await store.put(keys.node('junk'), '{"name":"junk","underlay":"nope"}');
    await eventually(() => [1, 2, 3].every((i) => h.ip('route', 'show', 'dev', 'mw.vx1').includes(`10.97.${i}.0/24 via 10.97.${i}.0 onlink`)), 10_000, 'routes to 3 peers');
    const fdb = h.sh('bridge', ['fdb', 'show', 'dev', 'mw.vx1']).stdout;
    for (const i of [1, 2, 3]) assert.match(fdb, new RegExp(`${peer(i).vtepMac} dst 192\\.168\\.91\\.${100 + i} self permanent`));
    assert.match(h.ip('neigh', 'show', 'dev', 'mw.vx1'), /10\.97\.2\.0 lladdr 02:00:00:00:00:02 PERMANENT/);
    assert.equal(agent.status().peers, 3);

    // A peer moves to another underlay address: only its FDB entry changes.
    const routesBefore = h.ip('route', 'show', 'dev', 'mw.vx1');
    const changes = async () => (await metrics.changes.get()).values.reduce((n, v) => n + v.value, 0);
    const c0 = await changes();
    await store.put(keys.node('sim2'), JSON.stringify(peer(2, '192.168.91.222')), { lease: leases[1].id });
    await eventually(() => /02:00:00:00:00:02 dst 192\.168\.91\.222 self permanent/.test(h.sh('bridge', ['fdb', 'show', 'dev', 'mw.vx1']).stdout), 10_000, 'fdb moved');
    assert.equal(await changes(), c0 + 1, 'exactly one kernel change for one moved peer');
    assert.equal(h.ip('route', 'show', 'dev', 'mw.vx1'), routesBefore);

    // Drift: someone deletes a route and a neighbour; a resync restores exactly those.
    h.ip('route', 'del', '10.97.3.0/24', 'dev', 'mw.vx1');
    h.ip('neigh', 'del', '10.97.1.0', 'dev', 'mw.vx1');
    await agent.reconcileNow();
    assert.match(h.ip('route', 'show', 'dev', 'mw.vx1'), /10\.97\.3\.0\/24 via 10\.97\.3\.0 onlink/);
    assert.match(h.ip('neigh', 'show', 'dev', 'mw.vx1'), /10\.97\.1\.0 lladdr 02:00:00:00:00:01 PERMANENT/);

    // A peer dies: its lease expires and every trace of it goes.
    store.abandonLease(leases[0].id);
    // (store.sweep(): the memory store's own sweep timer does not re-arm after renewals.)
    await eventually(() => { store.sweep(); return !h.ip('route', 'show', 'dev', 'mw.vx1').includes('10.97.1.0'); }, 10_000, 'dead peer route removed');
    assert.doesNotMatch(h.sh('bridge', ['fdb', 'show', 'dev', 'mw.vx1']).stdout, /02:00:00:00:00:01/);
    assert.doesNotMatch(h.ip('neigh', 'show', 'dev', 'mw.vx1'), /10\.97\.1\.0/);

    // The exposition is valid Prometheus text and carries our metrics.
    const text = await metrics.registry.metrics();
    for (const name of ['meshwork_agent_nodes', 'meshwork_agent_peers_programmed', 'meshwork_agent_reconciles_total', 'meshwork_agent_reconcile_duration_seconds_bucket', 'meshwork_agent_errors_total']) {
      assert.match(text, new RegExp(`^${name}`, 'm'));
    }
    const lint = sh('promtool', ['check', 'metrics'], { input: text, allowFail: true });
    assert.ok(lint.code === 0 || lint.stderr.includes('not found'), `promtool: ${lint.stdout}${lint.stderr}`);

    // Decommission: record and subnet gone at once, VTEP removed.
    await agent.stop({ leave: true });
    assert.equal(await store.get(keys.node('me')), undefined);
    assert.equal((await store.list(keys.subnets('mesh'))).items.length, 0);
    assert.doesNotMatch(h.ip('-o', 'link'), /mw\.vx1/);
    assert.equal(readNodeState(cfg.stateDir, 'mesh'), undefined);
  } finally {
    await agent?.stop();
    await store.close();
    await lab.cleanup();
  }
});
