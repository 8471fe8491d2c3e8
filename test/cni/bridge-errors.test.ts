/**
 * Every class of bad input gets the spec's error JSON with the right code,
 * and a failed call leaves nothing: no link, address, nft rule, record or
 * allocation (compared before and after), including failures that happen
 * after the bridge, the allocation and the veth were already made.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Lab, isRoot, NEEDS_ROOT } from '../helpers/lab';
import { bridgeConf, callPlugin, snapshot, subnets } from './harness';

interface Case { name: string; code: number; env?: Record<string, string | undefined>; conf?: (c: any) => unknown; msg?: RegExp }

test('bad input: right CNI code, nothing left behind', { skip: !isRoot && NEEDS_ROOT, timeout: 180_000 }, async () => {
  const lab = new Lab('mwbe');
  try {
    const host = lab.netns('host');
    const pod = lab.netns('pod');
    const base = () => bridgeConf(lab, { name: `${lab.id}-e`, n: 1, dual: true, extra: { hairpinMode: true } });
    const notNs = path.join(lab.tmp, 'not-a-netns');
    fs.writeFileSync(notNs, '');
    const env = { command: 'ADD', containerId: `${lab.id}-c`, netns: pod.path, ifname: 'eth0', path: '/usr/lib/cni' };
    const cases: Case[] = [
      { name: 'malformed JSON', code: 6, conf: () => '{"cniVersion": "1.0.0", "name": ', msg: /decode/ },
      { name: 'JSON that is not an object', code: 6, conf: () => '[1, 2]' },
      { name: 'isGateway of the wrong type', code: 7, conf: (c) => ({ ...c, isGateway: 'yes' }), msg: /isGateway/ },
      { name: 'mtu of the wrong type', code: 7, conf: (c) => ({ ...c, mtu: '1500' }), msg: /mtu/ },
      { name: 'ipam of the wrong type', code: 7, conf: (c) => ({ ...c, ipam: [] }), msg: /ipam/ },
      { name: 'port mapping of the wrong type', code: 7, conf: (c) => ({ ...c, runtimeConfig: { portMappings: [{ hostPort: '80', containerPort: 80 }] } }), msg: /hostPort/ },
      { name: 'invalid network name', code: 7, conf: (c) => ({ ...c, name: 'bad name' }), msg: /name/ },
      { name: 'missing CNI_COMMAND', code: 4, env: { command: undefined }, msg: /CNI_COMMAND/ },
      { name: 'unknown CNI_COMMAND', code: 4, env: { command: 'ATTACH' }, msg: /CNI_COMMAND/ },
      { name: 'missing CNI_CONTAINERID', code: 4, env: { containerId: undefined }, msg: /CNI_CONTAINERID/ },
      { name: 'missing CNI_NETNS', code: 4, env: { netns: undefined }, msg: /CNI_NETNS/ },
      { name: 'missing CNI_IFNAME', code: 4, env: { ifname: undefined }, msg: /CNI_IFNAME/ },
      { name: 'CNI_IFNAME too long', code: 4, env: { ifname: 'a-very-long-ifname0' }, msg: /CNI_IFNAME/ },
      { name: 'netns path that does not exist', code: 4, env: { netns: `/var/run/netns/${lab.id}-nope` }, msg: /does not exist/ },
      { name: 'netns path that is not a namespace', code: 4, env: { netns: notNs }, msg: /not a network namespace/ },
      { name: 'invalid CIDR', code: 7, conf: (c) => ({ ...c, ipam: { ...c.ipam, ranges: [[{ subnet: '10.300.0.0/24' }]] } }), msg: /subnet/ },
      { name: 'ipam.dataDir of the wrong type', code: 7, conf: (c) => ({ ...c, ipam: { ...c.ipam, dataDir: 7 } }), msg: /dataDir/ },
      { name: 'ipam.type that is not installed', code: 7, conf: (c) => ({ ...c, ipam: { ...c.ipam, type: `${lab.id}-nope` } }), msg: /nope/ },
      { name: 'unsupported cniVersion', code: 1, conf: (c) => ({ ...c, cniVersion: '0.2.0' }), msg: /0\.2\.0/ },
      { name: 'future cniVersion', code: 1, conf: (c) => ({ ...c, cniVersion: '2.0.0' }) },
      { name: 'unknown driver', code: 2, conf: (c) => ({ ...c, driver: 'teleport' }), msg: /driver/ },
      { name: 'unsupported bridge field value', code: 2, conf: (c) => ({ ...c, vlan: 100 }), msg: /vlan/ },
      { name: 'GC with a pre-1.1.0 config', code: 1, env: { command: 'GC' }, conf: (c) => ({ ...c, 'cni.dev/valid-attachments': [] }) },
      { name: 'CHECK without prevResult', code: 7, env: { command: 'CHECK' }, msg: /prevResult/ },
    ];

    const empty = snapshot(lab, host, [pod]);
    for (const c of cases) {
      const e: Record<string, string | undefined> = { ...env, ...c.env };
      const conf = c.conf ? c.conf(base()) : base();
      const r = await callPlugin(host, e as Record<string, string>, conf);
      assert.equal(r.code, 1, `${c.name}: exit code (${r.stdout})`);
      assert.ok(r.json, `${c.name}: stdout is error JSON: ${r.stdout}`);
      assert.equal(r.json.code, c.code, `${c.name}: ${r.stdout}`);
      assert.equal(typeof r.json.msg, 'string');
      assert.equal(typeof r.json.cniVersion, 'string');
      assert.doesNotMatch(r.json.msg, /\n\s+at /, `${c.name}: no stack trace`);
      if (c.msg) assert.match(r.json.msg, c.msg, c.name);
      // An IPAM that could not read its config took nothing: its error is not repeated as a failed cleanup.
      assert.doesNotMatch(r.json.msg, /cleanup after the failure/, `${c.name}: ${r.json.msg}`);
      assert.equal(snapshot(lab, host, [pod]), empty, `${c.name}: left something behind`);
    }

    // Failures after the bridge, the allocation and the veth exist: the
    // container already has an eth0, so the veth cannot be born there.
    const busy = lab.netns('busy');
    lab.veth(busy, 'eth0', undefined, lab.netns('sink'), 'x0', undefined);
    const beforeBusy = snapshot(lab, host, [pod]);
    const rb = await callPlugin(host, { ...env, netns: busy.path }, base());
    assert.equal(rb.json?.code, 4, rb.stdout);
    assert.match(rb.json.msg, /eth0 already exists/);
    assert.equal(snapshot(lab, host, [pod]), beforeBusy, 'failed ADD unwound bridge, allocation and veth');

    // The configured bridge name belongs to a device that is not a bridge: code 7, the device untouched.
    lab.veth(host, lab.link('nb'), undefined, lab.netns('nbpeer'), 'x0', undefined);
    const beforeNb = snapshot(lab, host, [pod]);
    const rn = await callPlugin(host, env, { ...base(), bridge: lab.link('nb') });
    assert.equal(rn.json?.code, 7, rn.stdout);
    assert.match(rn.json.msg, /not a bridge/);
    assert.equal(snapshot(lab, host, [pod]), beforeNb, 'nothing left, the veth untouched');
    host.ip('link', 'del', lab.link('nb'));

    // An exhausted range (one usable address): code 11, and the second call leaves nothing.
    const s = subnets(lab, 3);
    const tiny = { ...base(), name: `${lab.id}-t`, bridge: lab.link('t'), ipam: { ...base().ipam, ranges: [[{ subnet: s.v4, rangeStart: `${s.base4}.10`, rangeEnd: `${s.base4}.10` }]] } };
    const pod2 = lab.netns('pod2');
    const first = await callPlugin(host, env, tiny);
    assert.equal(first.code, 0, first.stdout);
    const afterFirst = snapshot(lab, host, [pod, pod2]);
    const second = await callPlugin(host, { ...env, containerId: `${lab.id}-d`, netns: pod2.path }, tiny);
    assert.equal(second.json?.code, 11, second.stdout);
    assert.match(second.json.msg, /no free address/);
    assert.equal(snapshot(lab, host, [pod, pod2]), afterFirst, 'exhaustion left nothing');

    // A host port already published by another container of the network: code 7, nothing left.
    const pm = { ...base(), runtimeConfig: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }] } };
    const p1 = await callPlugin(host, { ...env, containerId: `${lab.id}-p1`, netns: pod2.path }, pm);
    assert.equal(p1.code, 0, p1.stdout);
    const afterP1 = snapshot(lab, host, [pod, pod2]);
    const pod3 = lab.netns('pod3');
    const p2 = await callPlugin(host, { ...env, containerId: `${lab.id}-p2`, netns: pod3.path }, pm);
    assert.equal(p2.json?.code, 7, p2.stdout);
    assert.match(p2.json.msg, /8080 is already published/);
    assert.equal(snapshot(lab, host, [pod, pod2]), afterP1, 'port clash left nothing');

    for (const [id, ns, conf] of [[`${lab.id}-c`, pod, tiny], [`${lab.id}-p1`, pod2, pm]] as const) {
      const r = await callPlugin(host, { ...env, command: 'DEL', containerId: id, netns: ns.path }, conf);
      assert.equal(r.code, 0, r.stdout);
    }
    assert.equal(snapshot(lab, host, [pod]), empty);
  } finally {
    await lab.cleanup();
  }
});
