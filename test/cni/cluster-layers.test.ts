/**
 * The cluster layers around the driver, on real namespaces with the real
 * plugin: endpoint records in the file store and in a real etcd, sidecar
 * injection (rules present, traffic redirected, removed on DEL), cluster DNS
 * in the result, and a failing layer unwinding the whole ADD.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Lab, isRoot, NEEDS_ROOT, eventually, type Netns } from '../helpers/lab';
import { ETCD_BIN, haveEtcd, NEEDS_ETCD } from '../helpers/etcd';
import { repoRoot } from '../helpers/lab';
import { bridgeConf, callPlugin, snapshot, runIn } from './harness';
import { openStore } from '../../store/open';
import { keys } from '../../store/keys';
import type { EndpointRecord } from '../../store/records';

async function records(spec: string, network: string): Promise<EndpointRecord[]> {
  const s = await openStore(spec);
  try {
    return (await s.list(keys.endpoints(network))).items.map((kv) => JSON.parse(kv.value) as EndpointRecord);
  } finally {
    await s.close();
  }
}

const env = (command: string, lab: Lab, id: string, pod?: Netns, args?: string) =>
  ({ command, containerId: `${lab.id}-${id}`, netns: pod?.path, ifname: 'eth0', ...(args ? { args } : {}) });

test('endpoint records in the file store: ADD writes, CHECK wants, DEL removes, GC keeps only valid and other nodes\'', { skip: !isRoot && NEEDS_ROOT, timeout: 120_000 }, async () => {
  const lab = new Lab('mwer');
  try {
    const host = lab.netns('host');
    const conf = bridgeConf(lab, {
      name: `${lab.id}-r`, n: 1, dual: true, version: '1.1.0',
      extra: { node: 'node-a', runtimeConfig: { labels: { app: 'web', version: 'v1' }, hostname: 'web-1', aliases: ['web'] }, args: { cni: { labels: [{ key: 'version', value: 'v2' }] } } },
    });
    const spec = conf.store as string;
    const [p1, p2] = [lab.netns('p1'), lab.netns('p2')];
    const add = await callPlugin(host, env('ADD', lab, 'a', p1, 'IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-1'), conf);
    assert.equal(add.code, 0, add.stdout + add.stderr);
    const [rec] = await records(spec, conf.name);
    assert.deepEqual(rec, {
      network: conf.name, containerId: `${lab.id}-a`, ifname: 'eth0', namespace: 'shop', pod: 'web-1', node: 'node-a',
      ips: add.json.ips.map((i: { address: string }) => i.address.split('/')[0]),
      labels: { app: 'web', version: 'v2' }, ready: true, hostname: 'web-1', aliases: ['web'],
    });
    assert.equal(rec.ips.length, 2);

    // Defaults: namespace "default", the container ID as pod name.
    const add2 = await callPlugin(host, env('ADD', lab, 'b', p2), { ...conf, runtimeConfig: {}, args: {} });
    assert.equal(add2.code, 0, add2.stdout);
    const r2 = (await records(spec, conf.name)).find((r) => r.containerId === `${lab.id}-b`)!;
    assert.equal(r2.namespace, 'default');
    assert.equal(r2.pod, `${lab.id}-b`);
    assert.deepEqual(r2.labels, {});

    // CHECK wants the record with the result's addresses.
    const check = () => callPlugin(host, env('CHECK', lab, 'a', p1), { ...conf, prevResult: add.json });
    assert.equal((await check()).code, 0);
    const s = await openStore(spec);
    const key = keys.endpoint(conf.name, `${lab.id}-a`, 'eth0');
    try {
      await s.delete(key);
      const bad = await check();
      assert.equal(bad.json?.code, 101, bad.stdout);
      assert.match(bad.json.msg, /endpoint record .* is missing/);
      await s.put(key, JSON.stringify(rec));
      // Another node's record and a stale one of ours: GC removes only ours.
      await s.put(keys.endpoint(conf.name, 'elsewhere', 'eth0'), JSON.stringify({ ...rec, containerId: 'elsewhere', node: 'node-b' }));
    } finally {
      await s.close();
    }
    const gc = await callPlugin(host, { command: 'GC', path: '/nonexistent' }, { ...conf, 'cni.dev/valid-attachments': [{ containerID: `${lab.id}-a`, ifname: 'eth0' }] });
    assert.equal(gc.code, 0, gc.stdout);
    assert.deepEqual((await records(spec, conf.name)).map((r) => r.containerId).sort(), [`${lab.id}-a`, 'elsewhere'].sort());

    for (let i = 0; i < 2; i++) {
      const del = await callPlugin(host, env('DEL', lab, 'a', p1), conf);
      assert.equal(del.code, 0, del.stdout);
    }
    assert.deepEqual((await records(spec, conf.name)).map((r) => r.containerId), ['elsewhere']);
  } finally {
    await lab.cleanup();
  }
});

test('a failing store write unwinds the whole ADD; a later ADD with a good store works', { skip: !isRoot && NEEDS_ROOT, timeout: 120_000 }, async () => {
  const lab = new Lab('mwef');
  try {
    const host = lab.netns('host');
    const pod = lab.netns('p');
    // The store directory is a file: opening it fails after the driver wired the pod.
    const notDir = path.join(lab.tmp, 'not-a-dir');
    fs.writeFileSync(notDir, 'x');
    const good = bridgeConf(lab, { name: `${lab.id}-f`, n: 2, dual: true, extra: { mesh: true } });
    const conf = { ...good, store: `file:${notDir}` };
    const before = snapshot(lab, host, [pod]);
    const r = await callPlugin(host, env('ADD', lab, 'x', pod), conf);
    assert.equal(r.code, 1);
    assert.match(r.json.msg, /store/);
    assert.doesNotMatch(r.json.details ?? '', /cleanup after the failure also failed/);
    assert.equal(snapshot(lab, host, [pod]), before, 'no link, address, allocation, record or nft rule is left');
    assert.notEqual(pod.sh('nft', ['list', 'table', 'inet', 'meshwork_sidecar'], { allowFail: true }).code, 0, 'interception removed');

    const ok = await callPlugin(host, env('ADD', lab, 'x', pod), good);
    assert.equal(ok.code, 0, ok.stdout);
    assert.equal((await records(good.store, good.name)).length, 1);
    assert.equal((await callPlugin(host, env('DEL', lab, 'x', pod), good)).code, 0);
    assert.equal((await records(good.store, good.name)).length, 0);
  } finally {
    await lab.cleanup();
  }
});

/** Endpoint records as read inside `ns` (an etcd that lives in a test namespace is reachable only from there). */
async function recordsIn(ns: Netns, spec: string, network: string): Promise<EndpointRecord[]> {
  const script = `
const { openStore } = require(${JSON.stringify(path.join(repoRoot, 'dist', 'store', 'open.js'))});
openStore(process.argv[1]).then(async (s) => {
  const { items } = await s.list(process.argv[2]);
  console.log(JSON.stringify(items.map((kv) => JSON.parse(kv.value))));
  await s.close();
}).catch((e) => { console.error(e.message); process.exit(1); });`;
  const r = await runIn(ns, process.execPath, ['-e', script, spec, keys.endpoints(network)]);
  if (r.code !== 0) throw new Error(`reading ${spec}: ${r.stderr}`);
  return JSON.parse(r.stdout) as EndpointRecord[];
}

test('endpoint records in a real etcd; etcd down fails the ADD and leaves nothing', { skip: (!isRoot && NEEDS_ROOT) || (!haveEtcd && NEEDS_ETCD), timeout: 120_000 }, async () => {
  const lab = new Lab('mwee');
  try {
    const host = lab.netns('host');
    const pod = lab.netns('p');
    // etcd inside the host namespace, where the plugin runs: its loopback is private, so fixed ports are fine.
    const etcd = lab.spawnIn(host, ETCD_BIN, [
      '--name', 'm0', '--data-dir', path.join(lab.tmp, 'etcd'),
      '--listen-client-urls', 'http://127.0.0.1:2379', '--advertise-client-urls', 'http://127.0.0.1:2379',
      '--listen-peer-urls', 'http://127.0.0.1:2380', '--initial-advertise-peer-urls', 'http://127.0.0.1:2380',
      '--initial-cluster', 'm0=http://127.0.0.1:2380', '--log-level', 'error',
    ]);
    const spec = 'etcd:http://127.0.0.1:2379';
    const conf: Record<string, any> = { ...bridgeConf(lab, { name: `${lab.id}-e`, n: 3 }), store: spec, node: 'node-e' };
    await eventually(async () => (await recordsIn(host, spec, conf.name).then(() => true, () => false)), 30_000, 'etcd serving');

    const add = await callPlugin(host, env('ADD', lab, 'e', pod, 'K8S_POD_NAMESPACE=ops;K8S_POD_NAME=db-0'), conf);
    assert.equal(add.code, 0, add.stdout + add.stderr);
    const [rec] = await recordsIn(host, spec, conf.name);
    assert.equal(rec.pod, 'db-0');
    assert.equal(rec.namespace, 'ops');
    assert.equal(rec.node, 'node-e');
    assert.deepEqual(rec.ips, [add.json.ips[0].address.split('/')[0]]);
    assert.equal((await callPlugin(host, env('DEL', lab, 'e', pod), conf)).code, 0);
    assert.deepEqual(await recordsIn(host, spec, conf.name), []);

    const before = snapshot(lab, host, [pod]);
    const exited = new Promise((r) => etcd.once('exit', r));
    etcd.kill('SIGKILL');
    await exited;
    const r = await callPlugin(host, env('ADD', lab, 'e', pod), conf);
    assert.equal(r.code, 1);
    assert.match(r.json.msg, /cluster store .*no member reachable/);
    assert.doesNotMatch(r.json.details ?? '', /cleanup after the failure also failed/);
    assert.equal(snapshot(lab, host, [pod]), before);
  } finally {
    await lab.cleanup();
  }
});

const LISTENER = `
const net = require('net');
const s = net.createServer((c) => { console.log('redirected ' + c.localPort); c.end(); });
s.listen(Number(process.argv[1]), '0.0.0.0', () => console.log('listening'));`;

const CONNECT = `
const net = require('net');
const c = net.connect({ host: process.argv[1], port: Number(process.argv[2]) }, () => { console.log('connected'); c.end(); });
c.on('error', (e) => { console.error(e.message); process.exit(2); });
setTimeout(() => process.exit(3), 3000).unref();`;

test('sidecar injection: rules after ADD, outbound TCP reaches the sidecar port, CHECK wants them, DEL removes them; cluster DNS in the result', { skip: !isRoot && NEEDS_ROOT, timeout: 120_000 }, async () => {
  const lab = new Lab('mwsi');
  try {
    const host = lab.netns('host');
    const pod = lab.netns('p');
    const conf = bridgeConf(lab, {
      name: `${lab.id}-m`, n: 4, version: '0.4.0',
      extra: { clusterDNS: { server: '10.96.0.10', zone: 'cluster.local' }, dns: { nameservers: ['10.1.1.1'], options: ['timeout:2'] } },
    });
    conf.runtimeConfig = { mesh: { outboundPort: 15001, inboundPort: 15006, excludeOutboundPorts: [5432] } };
    const add = await callPlugin(host, env('ADD', lab, 'm', pod, 'K8S_POD_NAMESPACE=shop'), conf);
    assert.equal(add.code, 0, add.stdout + add.stderr);
    assert.deepEqual(add.json.dns, {
      nameservers: ['10.96.0.10', '10.1.1.1'],
      search: ['shop.svc.cluster.local', 'svc.cluster.local', 'cluster.local'],
      options: ['ndots:5', 'timeout:2'],
    });
    assert.equal(add.json.cniVersion, '0.4.0');
    const table = pod.sh('nft', ['list', 'table', 'inet', 'meshwork_sidecar'], { allowFail: true });
    assert.equal(table.code, 0, 'interception table present');
    assert.match(table.stdout, /redirect to :15001/);
    assert.match(table.stdout, /tcp dport 5432 return/);
    const [rec] = await records(conf.store, conf.name);
    assert.equal(rec.mesh, true);

    // Outbound TCP to anywhere (the gateway's port 80, where nothing listens) arrives at the sidecar's port.
    const gw = add.json.ips[0].gateway as string;
    const listener = lab.spawnIn(pod, process.execPath, ['-e', LISTENER, '15001']);
    let seen = '';
    listener.stdout?.on('data', (d) => (seen += d));
    await eventually(() => seen.includes('listening'), 10_000, 'listener');
    const c = await runIn(pod, process.execPath, ['-e', CONNECT, gw, '80']);
    assert.equal(c.code, 0, c.stderr);
    await eventually(() => seen.includes('redirected 15001'), 5000, 'redirected connection');

    assert.equal((await callPlugin(host, env('CHECK', lab, 'm', pod), { ...conf, prevResult: add.json })).code, 0);
    pod.sh('nft', ['delete', 'table', 'inet', 'meshwork_sidecar']);
    const bad = await callPlugin(host, env('CHECK', lab, 'm', pod), { ...conf, prevResult: add.json });
    assert.equal(bad.json?.code, 101);
    assert.match(bad.json.msg, /interception/);

    assert.equal((await callPlugin(host, env('DEL', lab, 'm', pod), conf)).code, 0);
    assert.notEqual(pod.sh('nft', ['list', 'table', 'inet', 'meshwork_sidecar'], { allowFail: true }).code, 0);
    assert.deepEqual(await records(conf.store, conf.name), []);
  } finally {
    await lab.cleanup();
  }
});

test('a failing injection unwinds the ADD: no link, allocation, record or rule is left', { skip: !isRoot && NEEDS_ROOT, timeout: 120_000 }, async () => {
  const lab = new Lab('mwsf');
  try {
    const host = lab.netns('host');
    const pod = lab.netns('p');
    // An nft that refuses only the sidecar's table: the bridge's own rules still load.
    const bin = path.join(lab.tmp, 'bin');
    fs.mkdirSync(bin);
    const realNft = ['/usr/sbin/nft', '/sbin/nft', '/usr/bin/nft'].find((p) => fs.existsSync(p))!;
    fs.writeFileSync(path.join(bin, 'nft'), `#!/bin/sh\nin=$(cat)\ncase "$in" in *meshwork_sidecar*) echo "injected failure" >&2; exit 1;; esac\nprintf '%s\\n' "$in" | exec ${realNft} "$@"\n`, { mode: 0o755 });
    const conf = bridgeConf(lab, { name: `${lab.id}-s`, n: 5, dual: true, extra: { mesh: true } });
    const before = snapshot(lab, host, [pod]);
    const r = await callPlugin(host, { ...env('ADD', lab, 's', pod), PATH: `${bin}:${process.env.PATH}` }, conf);
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.json.msg, /sidecar injection: .*injected failure/);
    assert.doesNotMatch(r.json.details ?? '', /cleanup after the failure also failed/);
    assert.equal(snapshot(lab, host, [pod]), before);
    assert.deepEqual(await records(conf.store, conf.name), []);
  } finally {
    await lab.cleanup();
  }
});
