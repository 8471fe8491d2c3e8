/** Table-driven tests of the pure parts: config, environment, results, rules, planning. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeConfig, parseNetConf, parsePortMappings } from '../../cni/config';
import { parseCallEnv, parseCniArgs, errorJson, toCniError } from '../../cni/skel';
import { renderResult, parseResult } from '../../cni/result';
import { chooseVersion } from '../../cni/version';
import { replaceScript, tableName, deleteScript } from '../../cni/nft/rules';
import { loadBridgeConfig, defaultBridgeName, __test } from '../../cni/drivers/bridge';
import { loadDriver } from '../../cni/drivers/driver';
import { handle } from '../../cni/plugin';
import { CniError } from '../../cni/types';
import { MeshworkError } from '../../lib/errors';

const base = { cniVersion: '1.0.0', name: 'net1', type: 'meshwork-cni', ipam: { type: 'meshwork' } };
const code = (fn: () => unknown): number => {
  try { fn(); } catch (e) { return toCniError(e).code; }
  return 0;
};

test('config: decode and validate well-known fields', () => {
  const cases: Array<[string, string, number]> = [
    ['valid', JSON.stringify(base), 0],
    ['not JSON', '{', 6],
    ['not an object', '"x"', 6],
    ['cniVersion not a string', JSON.stringify({ ...base, cniVersion: 1 }), 7],
    ['cniVersion unsupported', JSON.stringify({ ...base, cniVersion: '0.3.1' }), 1],
    ['name missing', JSON.stringify({ ...base, name: undefined }), 7],
    ['name invalid', JSON.stringify({ ...base, name: '-x' }), 7],
    ['type missing', JSON.stringify({ ...base, type: '' }), 7],
    ['driver not a string', JSON.stringify({ ...base, driver: 3 }), 7],
    ['dns not an object', JSON.stringify({ ...base, dns: [] }), 7],
    ['dns nameserver not an IP', JSON.stringify({ ...base, dns: { nameservers: ['x'] } }), 7],
    ['runtimeConfig.mac invalid', JSON.stringify({ ...base, runtimeConfig: { mac: 'zz' } }), 7],
    ['valid-attachments malformed', JSON.stringify({ ...base, 'cni.dev/valid-attachments': [{ containerID: 1 }] }), 7],
  ];
  for (const [name, text, want] of cases) {
    assert.equal(code(() => parseNetConf(decodeConfig(Buffer.from(text)))), want, name);
  }
  const { conf, version } = parseNetConf({ ...base, cniVersions: ['0.4.0', '1.1.0', '9.0.0'], 'cni.dev/attachments': [{ containerID: 'a', ifname: 'eth0' }] });
  assert.equal(version, '1.1.0', 'highest supported of cniVersions');
  assert.equal(conf.driver, 'bridge');
  assert.deepEqual(conf.validAttachments, [{ containerID: 'a', ifname: 'eth0' }]);
});

test('config: port mappings', () => {
  assert.deepEqual(parsePortMappings([{ hostPort: 80, containerPort: 8080, protocol: 'UDP' }, { hostPort: 80, containerPort: 8080 }]),
    [{ hostPort: 80, containerPort: 8080, protocol: 'udp' }, { hostPort: 80, containerPort: 8080, protocol: 'tcp' }]);
  for (const bad of [{ hostPort: 0, containerPort: 1 }, { hostPort: 1, containerPort: 70000 }, { hostPort: 1, containerPort: 1, protocol: 'sctp' }, { hostPort: 1, containerPort: 1, hostIP: 'x' }]) {
    assert.equal(code(() => parsePortMappings([bad])), 7, JSON.stringify(bad));
  }
  assert.equal(code(() => parsePortMappings([{ hostPort: 1, containerPort: 1 }, { hostPort: 1, containerPort: 2 }])), 7, 'duplicate host port');
});

test('environment: required variables per command', () => {
  const env = { CNI_CONTAINERID: 'abc', CNI_NETNS: '/var/run/netns/x', CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin' };
  assert.equal(parseCallEnv(env, 'ADD').containerId, 'abc');
  assert.equal(parseCallEnv({ ...env, CNI_NETNS: undefined }, 'DEL').netns, undefined, 'DEL needs no netns');
  const cases: Array<[string, Record<string, string | undefined>, 'ADD' | 'DEL' | 'CHECK' | 'GC', number]> = [
    ['ADD without container ID', { ...env, CNI_CONTAINERID: undefined }, 'ADD', 4],
    ['container ID with a slash', { ...env, CNI_CONTAINERID: 'a/b' }, 'ADD', 4],
    ['CHECK without netns', { ...env, CNI_NETNS: '' }, 'CHECK', 4],
    ['relative netns', { ...env, CNI_NETNS: 'x' }, 'ADD', 4],
    ['ifname with a slash', { ...env, CNI_IFNAME: 'a/b' }, 'ADD', 4],
    ['ifname of 16 chars', { ...env, CNI_IFNAME: 'abcdefghijklmnop' }, 'DEL', 4],
    ['GC without CNI_PATH', { ...env, CNI_PATH: undefined }, 'GC', 4],
    ['bad CNI_ARGS', { ...env, CNI_ARGS: 'IP' }, 'ADD', 4],
  ];
  for (const [name, e, cmd, want] of cases) assert.equal(code(() => parseCallEnv(e, cmd)), want, name);
  assert.deepEqual(parseCniArgs('IgnoreUnknown=1;IP=10.0.0.5;'), { IgnoreUnknown: '1', IP: '10.0.0.5' });
});

test('errors: spec error JSON with codes; non-CNI errors become code 100', () => {
  assert.deepEqual(errorJson(new CniError(7, 'bad', 'more'), '0.4.0'), { cniVersion: '0.4.0', code: 7, msg: 'bad', details: 'more' });
  assert.equal(errorJson(new MeshworkError('11', 'busy')).code, 11, 'IPAM codes pass through');
  assert.equal(errorJson(new MeshworkError('ENETNS', 'gone')).code, 4);
  assert.equal(errorJson(new MeshworkError('ESTORE_UNAVAILABLE', 'etcd: no member answers')).code, 11, 'a store outage is "try again later"');
  assert.equal(errorJson(new Error('boom')).code, 100);
  const undo = Object.assign(new CniError(5, 'io'), { undoFailures: [{ what: 'delete veth', error: 'EBUSY' }] });
  assert.match(errorJson(undo).details!, /delete veth: EBUSY/);
});

test('results: exact shape per version', () => {
  const r = {
    interfaces: [{ name: 'br0', mac: '02:00:00:00:00:01', mtu: 1500 }, { name: 'eth0', mac: '02:00:00:00:00:02', sandbox: '/var/run/netns/x', mtu: 1500 }],
    ips: [{ address: '10.1.0.5/24', gateway: '10.1.0.1', interface: 1 }, { address: 'fd00::5/64', interface: 1 }],
    routes: [{ dst: '0.0.0.0/0', gw: '10.1.0.1', priority: 5 }],
  };
  assert.deepEqual(renderResult(r, '0.4.0'), {
    cniVersion: '0.4.0',
    interfaces: [{ name: 'br0', mac: '02:00:00:00:00:01' }, { name: 'eth0', mac: '02:00:00:00:00:02', sandbox: '/var/run/netns/x' }],
    ips: [{ version: '4', address: '10.1.0.5/24', gateway: '10.1.0.1', interface: 1 }, { version: '6', address: 'fd00::5/64', interface: 1 }],
    routes: [{ dst: '0.0.0.0/0', gw: '10.1.0.1' }],
    dns: {},
  });
  const v10 = renderResult(r, '1.0.0') as any;
  assert.equal(v10.ips[0].version, undefined);
  assert.equal(v10.interfaces[0].mtu, undefined);
  const v11 = renderResult(r, '1.1.0') as any;
  assert.equal(v11.interfaces[1].mtu, 1500);
  assert.equal(v11.routes[0].priority, 5);
  assert.deepEqual(parseResult(renderResult(r, '0.4.0')).ips, [
    { address: '10.1.0.5/24', gateway: '10.1.0.1', interface: 1 }, { address: 'fd00::5/64', gateway: undefined, interface: 1 }]);
  assert.equal(code(() => parseResult({ ips: [{ address: 1 }] })), 7);
  assert.equal(code(() => chooseVersion('0.3.0')), 1);
});

test('nft rules: table names and generated scripts', () => {
  assert.equal(tableName('net1'), 'meshwork-net1');
  assert.match(tableName('a.b'), /^meshwork-a_b-[0-9a-f]{8}$/);
  assert.notEqual(tableName('a.b'), tableName('a_b'), 'sanitizing cannot make two networks share a table');
  const s = replaceScript({
    network: 'n', bridge: 'br0', addresses: ['10.1.0.5/24', '10.1.0.6/24', 'fd00::5/64'], ipMasq: true, isolate: true,
    portMaps: [{ hostPort: 80, containerPort: 8080, protocol: 'tcp', containerIp: '10.1.0.5' }, { hostPort: 53, containerPort: 53, protocol: 'udp', hostIP: '192.0.2.1', containerIp: 'fd00::5' }],
  });
  assert.match(s, /^add table inet meshwork-n\ndelete table inet meshwork-n\ntable inet meshwork-n \{/);
  assert.match(s, /ip saddr 10\.1\.0\.0\/24 ip daddr != 10\.1\.0\.0\/24 ip daddr != 224\.0\.0\.0\/4 masquerade/);
  assert.equal(s.match(/ip saddr 10\.1\.0\.0\/24 ip daddr !=/g)?.length, 1, 'one masquerade rule per subnet');
  assert.match(s, /meta nfproto ipv4 tcp dport 80 dnat ip to 10\.1\.0\.5:8080/);
  assert.doesNotMatch(s, /udp dport 53/, 'an IPv4 host IP never maps to an IPv6 container address');
  assert.match(s, /iifname "br0" oifgroup 28023 oifname != "br0" drop/);
  const plain = replaceScript({ network: 'n', bridge: 'br0', addresses: ['10.1.0.5/24'], ipMasq: false, isolate: false, portMaps: [] });
  assert.doesNotMatch(plain, /chain/);
  assert.equal(deleteScript('n'), 'add table inet meshwork-n\ndelete table inet meshwork-n\n');
});

test('bridge config: defaults and validation', () => {
  const { conf } = parseNetConf({ ...base });
  const cfg = loadBridgeConfig(conf);
  assert.equal(cfg.bridge, defaultBridgeName('net1'));
  assert.ok(cfg.bridge.length <= 15);
  assert.equal(cfg.isGateway, false);
  assert.equal(cfg.isolation, true);
  assert.equal(loadBridgeConfig(parseNetConf({ ...base, isDefaultGateway: true }).conf).isGateway, true, 'isDefaultGateway implies isGateway');
  const bad: Array<[Record<string, unknown>, number]> = [
    [{ bridge: 'a-name-longer-than-15' }, 7], [{ bridge: 'a/b' }, 7], [{ hairpinMode: 1 }, 7], [{ mtu: 10 }, 7],
    [{ promiscMode: 'on' }, 7], [{ stateDir: 'rel' }, 7], [{ vlan: 5 }, 2], [{ macspoofchk: true }, 2],
  ];
  for (const [extra, want] of bad) assert.equal(code(() => loadBridgeConfig(parseNetConf({ ...base, ...extra }).conf)), want, JSON.stringify(extra));
});

test('bridge planning: gateways and routes from an IPAM result', () => {
  const cfg = loadBridgeConfig(parseNetConf({ ...base, isDefaultGateway: true }).conf);
  const p = __test.plan({ ips: [{ address: '10.1.0.5/24' }, { address: 'fd00::5/64', gateway: 'fd00::1' }], routes: [{ dst: '10.9.0.3/16' }, { dst: '0.0.0.0/0' }] }, cfg);
  assert.equal(p.ips[0].gateway, '10.1.0.1', 'gateway defaults to the first address');
  assert.deepEqual(p.routes, [{ dst: '0.0.0.0/0', gw: '10.1.0.1' }, { dst: '::/0', gw: 'fd00::1' }, { dst: '10.9.0.0/16' }]);
  assert.equal(code(() => __test.plan({ ips: [{ address: '10.1.0.1/24', gateway: '10.1.0.1' }], routes: [] }, cfg)), 7);
  assert.equal(code(() => __test.plan({ ips: [{ address: '10.1.0.5/24', gateway: 'fd00::1' }], routes: [] }, cfg)), 7);
});

test('drivers: registry', () => {
  assert.equal(loadDriver('bridge').name, 'bridge');
  assert.equal(code(() => loadDriver('nope')), 2);
});

test('handle: VERSION and edge errors without touching the kernel', async () => {
  const v = await handle({ env: { CNI_COMMAND: 'VERSION' }, stdin: Buffer.from('{"cniVersion":"1.0.0"}') });
  assert.equal(v.exitCode, 0);
  assert.deepEqual(JSON.parse(v.stdout), { cniVersion: '1.1.0', supportedVersions: ['0.4.0', '1.0.0', '1.1.0'] });
  const e = await handle({ env: {}, stdin: Buffer.from('{}') });
  assert.equal(e.exitCode, 1);
  assert.equal(JSON.parse(e.stdout).code, 4);
  const old = await handle({ env: { CNI_COMMAND: 'ADD' }, stdin: Buffer.from(JSON.stringify({ ...base, cniVersion: '0.4.0', name: 7 })) });
  assert.equal(JSON.parse(old.stdout).cniVersion, '0.4.0', 'errors speak the caller\'s version');
});
