/**
 * Lifecycle at scale and after crashes: 50 concurrent ADDs get 50 distinct
 * addresses and DEL leaves nothing; GC (spec 1.1.0) removes what plugins
 * killed mid-ADD and attachments the runtime no longer lists left behind;
 * STATUS and VERSION answer.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Lab, isRoot, NEEDS_ROOT, eventually } from '../helpers/lab';
import { bridgeConf, callPlugin, snapshot, ping, PLUGIN, subnets } from './harness';

test('50 concurrent ADDs get distinct addresses; DEL of all leaves nothing', { skip: !isRoot && NEEDS_ROOT, timeout: 300_000 }, async () => {
  const lab = new Lab('mwbc');
  try {
    const host = lab.netns('host');
    const conf = bridgeConf(lab, { name: `${lab.id}-c`, n: 1, extra: { ipMasq: true } });
    const empty = snapshot(lab, host);
    // 50 containers as namespaces (created up front, sequentially: `ip netns add` is cheap).
    const ids = Array.from({ length: 50 }, (_, i) => i);
    const pods = ids.map((i) => lab.netns(`p${i}`));
    const adds = await Promise.all(ids.map((i) =>
      callPlugin(host, { command: 'ADD', containerId: `${lab.id}-${i}`, netns: pods[i].path, ifname: 'eth0' }, conf)));
    adds.forEach((r, i) => assert.equal(r.code, 0, `ADD ${i}: ${r.stdout} ${r.stderr}`));
    const addrs = adds.map((r) => r.json.ips[0].address);
    assert.equal(new Set(addrs).size, 50, 'distinct addresses');
    // Every one of them is wired: the bridge has 50 ports and the last one reaches the first.
    const ports = host.ip('-o', 'link', 'show', 'master', conf.bridge).trim().split('\n');
    assert.equal(ports.length, 50);
    assert.ok(await ping(pods[49], addrs[0].split('/')[0]));

    const dels = await Promise.all(ids.map((i) =>
      callPlugin(host, { command: 'DEL', containerId: `${lab.id}-${i}`, netns: pods[i].path, ifname: 'eth0' }, conf)));
    dels.forEach((r, i) => assert.equal(r.code, 0, `DEL ${i}: ${r.stdout} ${r.stderr}`));
    assert.equal(snapshot(lab, host), empty, 'no veth, bridge, record, allocation or nft table remains');
  } finally {
    await lab.cleanup();
  }
});

test('GC removes what killed plugins and stale attachments left; STATUS; VERSION', { skip: !isRoot && NEEDS_ROOT, timeout: 180_000 }, async () => {
  const lab = new Lab('mwbg');
  try {
    const host = lab.netns('host');
    const conf = bridgeConf(lab, { name: `${lab.id}-g`, n: 1, version: '1.1.0' });
    const empty = snapshot(lab, host);
    const pods = ['k0', 'k1', 'k2'].map((p) => lab.netns(p));
    for (const [i, pod] of pods.entries()) {
      const r = await callPlugin(host, { command: 'ADD', containerId: `${lab.id}-k${i}`, netns: pod.path, ifname: 'eth0' }, conf);
      assert.equal(r.code, 0, r.stdout);
    }
    const stateDir = path.join(conf.stateDir, conf.name);
    const records = () => fs.readdirSync(stateDir).filter((f) => f.startsWith('att-')).length;

    // Plugins killed mid-ADD: start four and SIGKILL them once one has recorded its attachment.
    const victims = ['v0', 'v1', 'v2', 'v3'].map((v) => lab.netns(v));
    const procs = victims.map((ns, i) => {
      const env = [`PATH=${process.env.PATH}`, 'CNI_COMMAND=ADD', `CNI_CONTAINERID=${lab.id}-v${i}`, `CNI_NETNS=${ns.path}`, 'CNI_IFNAME=eth0'];
      const p = spawn('ip', ['netns', 'exec', host.name, 'env', '-i', ...env, process.execPath, PLUGIN], { stdio: ['pipe', 'ignore', 'ignore'] });
      p.stdin!.on('error', () => undefined);
      p.stdin!.end(JSON.stringify(conf));
      return p;
    });
    await eventually(() => records() > 3, 30_000, 'a killed plugin to record its attachment');
    for (const p of procs) p.kill('SIGKILL');
    await Promise.all(procs.map((p) => new Promise((r) => (p.exitCode !== null || p.signalCode !== null ? r(null) : p.once('exit', r)))));

    // The runtime now lists only k0: GC removes k1, k2 and whatever the victims left.
    const gc = await callPlugin(host, { command: 'GC', path: '/usr/lib/cni' },
      { ...conf, 'cni.dev/valid-attachments': [{ containerID: `${lab.id}-k0`, ifname: 'eth0' }] });
    assert.equal(gc.code, 0, gc.stdout);
    assert.equal(gc.stdout, '');
    const ports = host.ip('-o', 'link', 'show', 'master', conf.bridge).trim().split('\n').filter(Boolean);
    assert.equal(ports.length, 1, `only k0's port remains: ${ports.join(' | ')}`);
    assert.equal(records(), 1);
    const alloc = JSON.parse(fs.readFileSync(path.join(conf.ipam.dataDir, conf.name, 'state.json'), 'utf8')).allocations;
    assert.equal(alloc.length, 1, JSON.stringify(alloc));
    assert.ok(await ping(pods[0], subnets(lab, 1).gw4), 'k0 still works');
    for (const v of victims) assert.doesNotMatch(v.ip('-o', 'link'), /eth0/, 'victim veths are gone');

    // A new ADD works after the crashes (a lock a victim held is broken).
    const after = await callPlugin(host, { command: 'ADD', containerId: `${lab.id}-n`, netns: victims[0].path, ifname: 'eth0' }, conf);
    assert.equal(after.code, 0, after.stdout);

    const status = await callPlugin(host, { command: 'STATUS' }, conf);
    assert.equal(status.code, 0, status.stdout);
    assert.equal(status.stdout, '');
    const version = await callPlugin(host, { command: 'VERSION' }, { cniVersion: '1.1.0' });
    assert.deepEqual(version.json, { cniVersion: '1.1.0', supportedVersions: ['0.4.0', '1.0.0', '1.1.0'] });

    // GC with an empty list removes everything.
    const gc2 = await callPlugin(host, { command: 'GC', path: '/usr/lib/cni' }, { ...conf, 'cni.dev/valid-attachments': [] });
    assert.equal(gc2.code, 0, gc2.stdout);
    assert.equal(snapshot(lab, host), empty);
  } finally {
    await lab.cleanup();
  }
});
