/**
 * The bridge network on real namespaces, driven like a runtime drives it:
 * several containers, every result version, CHECK, traffic (ping, TCP, UDP)
 * between containers, to the gateway, over IPv6, to published ports from the
 * host and from outside, isolation between two networks, and DEL (twice)
 * leaving the host as it was.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Lab, isRoot, NEEDS_ROOT, eventually, sh } from '../helpers/lab';
import { bridgeConf, callPlugin, snapshot, subnets, ECHO_SERVER, tcp, ping, runIn } from './harness';

const UDP_ECHO = (port: number) => `
const s = require('dgram').createSocket('udp4');
s.on('message', (m, r) => s.send('echo:' + m, r.port, r.address));
s.bind(${port}, () => console.log('listening'));`;
const UDP_CLIENT = `
const [host, port] = process.argv.slice(1);
const s = require('dgram').createSocket('udp4');
s.on('message', (m) => { console.log(String(m)); process.exit(String(m) === 'echo:hi' ? 0 : 1); });
s.send('hi', Number(port), host);
setTimeout(() => process.exit(3), 2000).unref();`;

test('bridge network: ADD/CHECK/DEL, traffic, ports, IPv6, isolation', { skip: !isRoot && NEEDS_ROOT, timeout: 180_000 }, async () => {
  const lab = new Lab('mwbd');
  try {
    const host = lab.netns('host');
    const outside = lab.netns('out');
    const pods = ['a', 'b', 'c'].map((p) => lab.netns(p));
    const [a, b, c] = pods;
    const d = lab.netns('d');
    const s1 = subnets(lab, 1);
    // The host's "uplink" and a machine outside, to reach published ports from.
    const up = `172.31.${parseInt(lab.id.slice(-2), 16)}`;
    lab.veth(host, 'up0', `${up}.1/24`, outside, 'ext0', `${up}.2/24`);
    const before = snapshot(lab, host);

    const net1 = (version: string, extra: Record<string, unknown> = {}, portMappings?: unknown[]) =>
      bridgeConf(lab, { name: `${lab.id}-n1`, n: 1, dual: true, version, extra: { hairpinMode: true, ...extra }, portMappings });
    const portMappings = [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }, { hostPort: 5353, containerPort: 53, protocol: 'udp' }];
    const versions = ['1.1.0', '1.0.0', '0.4.0'];
    const results: any[] = [];
    for (const [i, pod] of pods.entries()) {
      const r = await callPlugin(host, { command: 'ADD', containerId: `${lab.id}-${i}`, netns: pod.path, ifname: 'eth0', path: '/usr/lib/cni' },
        net1(versions[i], {}, i === 1 ? portMappings : undefined));
      assert.equal(r.code, 0, `ADD ${i}: ${r.stdout} ${r.stderr}`);
      results.push(r.json);
    }

    // Result shapes per spec version.
    const [r11, r10, r04] = results;
    assert.equal(r11.cniVersion, '1.1.0');
    assert.equal(r10.cniVersion, '1.0.0');
    assert.equal(r04.cniVersion, '0.4.0');
    for (const r of results) {
      assert.equal(r.interfaces.length, 3);
      assert.equal(r.interfaces[2].name, 'eth0');
      assert.match(r.interfaces[2].sandbox, /^\/var\/run\/netns\//);
      assert.match(r.interfaces[2].mac, /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
      assert.equal(r.ips.length, 2);
      assert.ok(r.ips.every((ip: any) => ip.interface === 2));
      assert.deepEqual(r.routes.map((x: any) => x.dst).sort(), ['0.0.0.0/0', '::/0']);
    }
    assert.equal(r11.interfaces[2].mtu, 1500, '1.1.0 reports the interface MTU');
    assert.equal(r10.interfaces[2].mtu, undefined, '1.0.0 has no interface MTU');
    assert.deepEqual(r04.ips.map((ip: any) => ip.version), ['4', '6'], '0.4.0 has ips[].version');
    assert.ok(r10.ips.every((ip: any) => ip.version === undefined), '1.0.0 has no ips[].version');
    assert.equal(r10.ips[0].gateway, s1.gw4);
    assert.equal(r10.ips[1].gateway, s1.gw6);

    const ip4 = results.map((r) => r.ips[0].address.split('/')[0]);
    const ip6 = results.map((r) => r.ips[1].address.split('/')[0]);
    assert.equal(new Set(ip4).size, 3, 'distinct addresses');

    // The kernel matches the results.
    assert.match(a.ip('-o', 'addr', 'show', 'eth0'), new RegExp(`inet ${ip4[0]}/24`));
    assert.match(a.ip('-6', 'route', 'show', 'default'), new RegExp(`via ${s1.gw6}`));

    // CHECK passes for every container, in its own version.
    for (const [i, pod] of pods.entries()) {
      const r = await callPlugin(host, { command: 'CHECK', containerId: `${lab.id}-${i}`, netns: pod.path, ifname: 'eth0' },
        { ...net1(versions[i], {}, i === 1 ? portMappings : undefined), prevResult: results[i] });
      assert.equal(r.code, 0, `CHECK ${i}: ${r.stdout} ${r.stderr}`);
    }
    // ...and fails with our CHECK code once the container's route is gone.
    a.ip('route', 'del', 'default');
    const bad = await callPlugin(host, { command: 'CHECK', containerId: `${lab.id}-0`, netns: a.path, ifname: 'eth0' }, { ...net1('1.1.0'), prevResult: r11 });
    assert.equal(bad.code, 1);
    assert.equal(bad.json.code, 101);
    assert.match(bad.json.msg, /route 0\.0\.0\.0\/0/);
    a.ip('route', 'add', 'default', 'via', s1.gw4);

    // Traffic: container to container (v4, v6, TCP), to the gateway.
    assert.ok(await ping(a, ip4[1]), 'a -> b IPv4');
    assert.ok(await ping(a, ip6[2]), 'a -> c IPv6');
    assert.ok(await ping(c, s1.gw4), 'c -> gateway');
    assert.ok(await ping(b, s1.gw6), 'b -> IPv6 gateway');
    const srv = lab.spawnIn(b, process.execPath, ['-e', ECHO_SERVER(80)]);
    await eventually(() => new Promise<boolean>((r) => srv.stdout!.once('data', () => r(true))), 10_000, 'echo server');
    assert.ok(await tcp(a, ip4[1], 80), 'TCP a -> b');
    assert.ok(await tcp(c, ip6[1], 80), 'TCP c -> b over IPv6');

    // Published port: from outside through the host's uplink, and from the host itself.
    assert.ok(await tcp(outside, `${up}.1`, 8080), 'outside -> host:8080 -> b:80');
    assert.ok(await tcp(host, `${up}.1`, 8080), 'host itself -> host:8080 -> b:80');
    assert.ok(await tcp(host, s1.gw4, 8080), 'host via the gateway address -> b:80');
    assert.ok(!(await tcp(outside, `${up}.1`, 8081)), 'an unpublished port stays closed');
    // Hairpin: b reaches its own published port, the reply leaving by the port it came in on.
    assert.ok(await tcp(b, `${up}.1`, 8080), 'b -> host:8080 -> b:80 (hairpin)');
    assert.ok(await tcp(a, `${up}.1`, 8080), 'a -> host:8080 -> b:80 (same bridge, DNAT + masquerade)');
    const bVeth = r10.interfaces[1].name;
    assert.equal(host.sh('cat', [`/sys/class/net/${bVeth}/brport/hairpin_mode`]).stdout.trim(), '1');
    const udp = lab.spawnIn(b, process.execPath, ['-e', UDP_ECHO(53)]);
    await eventually(() => new Promise<boolean>((r) => udp.stdout!.once('data', () => r(true))), 10_000, 'udp echo');
    const u = await runIn(outside, process.execPath, ['-e', UDP_CLIENT, `${up}.1`, '5353']);
    assert.equal(u.code, 0, `UDP outside -> host:5353 -> b:53: ${u.stderr}`);

    // A second network: reaches its own gateway, not the first network.
    const net2 = bridgeConf(lab, { name: `${lab.id}-n2`, n: 2, version: '1.0.0' });
    const rd = await callPlugin(host, { command: 'ADD', containerId: `${lab.id}-d`, netns: d.path, ifname: 'eth0' }, net2);
    assert.equal(rd.code, 0, rd.stdout);
    assert.ok(await ping(d, subnets(lab, 2).gw4), 'd -> its gateway');
    assert.ok(!(await ping(d, ip4[0])), 'd -> a is isolated');
    assert.ok(!(await tcp(d, ip4[1], 80)), 'TCP d -> b is isolated');
    assert.ok(!(await ping(a, rd.json.ips[0].address.split('/')[0])), 'a -> d is isolated');
    // The isolation rules are what blocks it: without them the host routes between the bridges.
    host.sh('nft', ['flush', 'chain', 'inet', `meshwork-${lab.id}-n1`, 'forward']);
    host.sh('nft', ['flush', 'chain', 'inet', `meshwork-${lab.id}-n2`, 'forward']);
    assert.ok(await ping(d, ip4[0]), 'without isolation rules d reaches a');

    // DEL everything (twice); c's namespace is already gone (the container died first).
    sh('ip', ['netns', 'del', c.name]);
    const rdd = await callPlugin(host, { command: 'DEL', containerId: `${lab.id}-d`, netns: d.path, ifname: 'eth0' }, net2);
    assert.equal(rdd.code, 0, rdd.stdout);
    for (const [i, pod] of pods.entries()) {
      const conf = net1(versions[i], {}, i === 1 ? portMappings : undefined);
      for (let round = 0; round < 2; round++) {
        const r = await callPlugin(host, { command: 'DEL', containerId: `${lab.id}-${i}`, netns: pod.path, ifname: 'eth0' }, conf);
        assert.equal(r.code, 0, `DEL ${i} round ${round}: ${r.stdout}`);
        assert.equal(r.stdout, '');
      }
    }
    assert.equal(snapshot(lab, host), before);
    for (const pod of [a, b]) assert.doesNotMatch(pod.ip('-o', 'link'), /eth0/);
  } finally {
    await lab.cleanup();
  }
});
