/**
 * meshwork-cni through libcni's cnitool, both ways the runtime can reach it:
 * the shim with no daemon (standalone Node plugin) and the shim with the
 * resident daemon running in the host namespace.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Lab, NEEDS_ROOT, type Netns, eventually, isRoot, repoRoot } from '../helpers/lab';
import { Cnitool, SHIM_PATH, cnitoolBinary, cnitoolContainerId } from '../helpers/cnitool';

const PLUGIN_MAIN = path.join(repoRoot, 'dist', 'cni', 'main.js');
const SKIP = (!isRoot && NEEDS_ROOT) || (!fs.existsSync(SHIM_PATH) && 'meshwork-cni-shim not built (npm run build)') || (!fs.existsSync(PLUGIN_MAIN) && 'plugin not built');

interface Net { tool: Cnitool; network: string; dataDir: string; host: Netns }

function setup(lab: Lab, subnet4: string, subnet6: string): Net {
  const host = lab.netns('host');
  const tool = new Cnitool(lab, host);
  tool.linkPlugin('meshwork-cni', SHIM_PATH);
  const network = `${lab.id}-mw`;
  const dataDir = path.join(lab.tmp, 'ipam');
  tool.writeConfig({
    cniVersion: '1.0.0',
    name: network,
    plugins: [{
      type: 'meshwork-cni', driver: 'bridge', bridge: lab.link('br'), isGateway: true,
      stateDir: path.join(lab.tmp, 'state'), store: `file:${path.join(lab.tmp, 'store')}`,
      ipam: { type: 'meshwork', dataDir, ranges: [[{ subnet: subnet4 }], [{ subnet: subnet6 }]], routes: [{ dst: '0.0.0.0/0' }] },
    }],
  });
  return { tool, network, dataDir, host };
}

function allocations(n: Net): unknown[] {
  const file = path.join(n.dataDir, n.network, 'state.json');
  return fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, 'utf8')).allocations : [];
}

const hostVeths = (n: Net): string[] => n.host.ip('-o', 'link', 'show', 'type', 'veth').split('\n').filter(Boolean);

/** Starts the daemon inside the host namespace (where a node agent would run it). */
async function startDaemon(lab: Lab, host: Netns): Promise<string> {
  const socket = path.join(lab.tmp, 'cni.sock');
  const child = lab.spawnIn(host, process.execPath, [path.join(repoRoot, 'dist', 'cni', 'daemon.js'), '--socket', socket]);
  let err = '';
  child.stderr?.on('data', (d) => (err += d));
  await eventually(() => fs.existsSync(socket) || child.exitCode !== null, 20_000, 'daemon socket');
  assert.ok(fs.existsSync(socket), `daemon did not start: ${err}`);
  return socket;
}

test('cnitool + shim without daemon: add, check, del for several dual-stack containers', { skip: SKIP }, async () => {
  cnitoolBinary();
  const lab = new Lab('mwm');
  try {
    const n = setup(lab, '10.203.0.0/24', 'fd03:203::/64');
    const pods = [lab.netns('p1'), lab.netns('p2'), lab.netns('p3')];
    const env = { MESHWORK_CNI_SOCKET: path.join(lab.tmp, 'no-daemon.sock') };
    const v4: string[] = [];
    const v6: string[] = [];
    for (const pod of pods) {
      const r = await n.tool.add(n.network, pod, { env });
      assert.equal(r.json.cniVersion, '1.0.0');
      const ips = (r.json.ips as Array<{ address: string }>).map((i) => i.address.split('/')[0]);
      assert.equal(ips.length, 2, 'one IPv4 and one IPv6 address');
      v4.push(ips[0]);
      v6.push(ips[1]);
    }
    assert.equal(new Set(v4).size, 3);
    assert.equal(new Set(v6).size, 3);
    pods[0].sh('ping', ['-c', '1', '-W', '5', v4[1]]);
    await eventually(() => pods[2].sh('ping', ['-6', '-c', '1', '-W', '2', v6[0]], { allowFail: true }).code === 0, 15_000, 'IPv6 ping between pods');

    for (const pod of pods) await n.tool.check(n.network, pod, { env });
    assert.equal(allocations(n).length, 3);
    assert.equal(n.tool.cachedResults().length, 3);
    assert.ok(n.tool.cachedResults().includes(`${n.network}-${cnitoolContainerId(pods[1].path)}-eth0`));

    for (const pod of pods) await n.tool.del(n.network, pod, { env });
    await n.tool.del(n.network, pods[0], { env });
    assert.deepEqual(allocations(n), []);
    assert.deepEqual(hostVeths(n), []);
    assert.deepEqual(n.tool.cachedResults(), []);
  } finally {
    await lab.cleanup();
  }
});

test('cnitool + shim + daemon: 50 concurrent ADDs get 50 distinct addresses; DEL of all leaves nothing', { skip: SKIP }, async () => {
  cnitoolBinary();
  const lab = new Lab('mwd');
  try {
    const n = setup(lab, '10.204.0.0/24', 'fd03:204::/64');
    const socket = await startDaemon(lab, n.host);
    // The standalone fallback is made impossible: every call must be served by the daemon.
    const env = { MESHWORK_CNI_SOCKET: socket, MESHWORK_CNI_MAIN: '/nonexistent/main.js' };
    const pods = Array.from({ length: 50 }, (_, i) => lab.netns(`q${i}`));
    const adds = await Promise.all(pods.map((pod) => n.tool.call('add', n.network, pod, { env })));
    for (const r of adds) assert.equal(r.code, 0, r.stderr + r.stdout);
    const v4 = new Set(adds.map((r) => r.json.ips[0].address));
    const v6 = new Set(adds.map((r) => r.json.ips[1].address));
    assert.equal(v4.size, 50);
    assert.equal(v6.size, 50);
    assert.equal(allocations(n).length, 50);
    assert.equal(hostVeths(n).length, 50);

    await n.tool.check(n.network, pods[7], { env });
    pods[3].sh('ping', ['-c', '1', '-W', '5', adds[42].json.ips[0].address.split('/')[0]]);

    const dels = await Promise.all(pods.map((pod) => n.tool.call('del', n.network, pod, { env })));
    for (const r of dels) assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.deepEqual(allocations(n), []);
    assert.deepEqual(hostVeths(n), []);
    assert.deepEqual(n.tool.cachedResults(), []);
  } finally {
    await lab.cleanup();
  }
});
