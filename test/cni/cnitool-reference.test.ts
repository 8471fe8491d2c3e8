/**
 * Proves the cnitool harness against Debian's reference plugins (bridge +
 * host-local): the same runtime path meshwork-cni is driven through.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Lab, NEEDS_ROOT, isRoot } from '../helpers/lab';
import { Cnitool, REFERENCE_PLUGINS, cnitoolBinary, cnitoolContainerId } from '../helpers/cnitool';

const SKIP = (!isRoot && NEEDS_ROOT) || (!fs.existsSync(path.join(REFERENCE_PLUGINS, 'bridge')) && 'needs containernetworking-plugins');

test('cnitool drives reference bridge + host-local: add, check, del for several containers', { skip: SKIP }, async () => {
  cnitoolBinary();
  const lab = new Lab('mwc');
  try {
    const host = lab.netns('host');
    const pods = [lab.netns('p1'), lab.netns('p2'), lab.netns('p3')];
    const tool = new Cnitool(lab, host);
    const network = `${lab.id}-ref`;
    const bridge = lab.link('br');
    tool.writeConfig({
      cniVersion: '1.0.0',
      name: network,
      plugins: [{
        type: 'bridge', bridge, isGateway: true,
        ipam: { type: 'host-local', dataDir: path.join(lab.tmp, 'ipam'), ranges: [[{ subnet: '10.201.0.0/24' }]], routes: [{ dst: '0.0.0.0/0' }] },
      }],
    });

    const addrs: string[] = [];
    for (const pod of pods) {
      const r = await tool.add(network, pod);
      assert.equal(r.json.cniVersion, '1.0.0');
      const ip = r.json.ips[0].address as string;
      addrs.push(ip.split('/')[0]);
      assert.match(pod.ip('-o', 'addr', 'show', 'dev', 'eth0'), new RegExp(ip.replace(/\./g, '\\.')));
    }
    assert.equal(new Set(addrs).size, 3);
    // Real datapath: pod to pod over the bridge, and pod to the gateway.
    pods[0].sh('ping', ['-c', '1', '-W', '5', addrs[1]]);
    pods[2].sh('ping', ['-c', '1', '-W', '5', '10.201.0.1']);

    for (const pod of pods) await tool.check(network, pod);
    assert.equal(tool.cachedResults().length, 3, 'cnitool cached one result per container');
    assert.ok(tool.cachedResults().includes(`${network}-${cnitoolContainerId(pods[0].path)}-eth0`));

    for (const pod of pods) await tool.del(network, pod);
    await tool.del(network, pods[0]);
    assert.deepEqual(tool.cachedResults(), [], 'DEL removed the cached results');
    assert.doesNotMatch(host.ip('-o', 'link', 'show', 'master', bridge), /veth/, 'no veth left on the bridge');
    const bad = await tool.call('check', network, pods[1]);
    assert.notEqual(bad.code, 0, 'CHECK after DEL fails');
  } finally {
    await lab.cleanup();
  }
});
