import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createIpam, type IpamContext } from '../../cni/ipam';
import { convertResult } from '../../cni/ipam/delegate';
import { MeshworkError } from '../../lib/errors';

const REF = '/usr/lib/cni';
const haveHostLocal = fs.existsSync(path.join(REF, 'host-local'));
const SKIP = !haveHostLocal && 'needs Debian containernetworking-plugins (host-local in /usr/lib/cni)';

function ctx(conf: Record<string, unknown>, command: string, id = 'deleg1'): IpamContext {
  return {
    netconf: conf,
    rawStdin: Buffer.from(JSON.stringify(conf)),
    env: { CNI_COMMAND: command, CNI_CONTAINERID: id, CNI_NETNS: '/var/run/netns/none', CNI_IFNAME: 'eth0', CNI_PATH: `/nonexistent:${REF}` },
    containerId: id,
    ifname: 'eth0',
  };
}

test('host-local is found on CNI_PATH and driven through ADD, CHECK, DEL', { skip: SKIP }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mw-deleg-'));
  try {
    const ipam = createIpam();
    const conf = { cniVersion: '1.0.0', name: 'delegnet', type: 'meshwork-cni', ipam: { type: 'host-local', dataDir: dir, ranges: [[{ subnet: '10.90.0.0/24' }], [{ subnet: 'fd90::/64' }]], routes: [{ dst: '0.0.0.0/0' }] } };
    const res = await ipam.add(ctx(conf, 'ADD'));
    assert.deepEqual(res.ips, [{ address: '10.90.0.2/24', gateway: '10.90.0.1' }, { address: 'fd90::2/64', gateway: 'fd90::1' }]);
    assert.deepEqual(res.routes, [{ dst: '0.0.0.0/0' }]);
    assert.ok(fs.existsSync(path.join(dir, 'delegnet', '10.90.0.2')), 'host-local recorded the lease in our dataDir');
    await ipam.check(ctx({ ...conf, prevResult: { cniVersion: '1.0.0', ips: res.ips } }, 'CHECK'));
    await ipam.del(ctx(conf, 'DEL'));
    await ipam.del(ctx(conf, 'DEL'));
    assert.ok(!fs.existsSync(path.join(dir, 'delegnet', '10.90.0.2')), 'DEL released it');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("the external plugin's error JSON is mapped through with its code", { skip: SKIP }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mw-deleg-'));
  try {
    const conf = { cniVersion: '1.0.0', name: 'delegnet', type: 'meshwork-cni', ipam: { type: 'host-local', dataDir: dir, ranges: [[{ subnet: '10.91.0.0/24', rangeStart: '10.91.0.2', rangeEnd: '10.91.0.2' }]] } };
    const ipam = createIpam();
    await ipam.add(ctx(conf, 'ADD', 'a'));
    await assert.rejects(ipam.add(ctx(conf, 'ADD', 'b')), (err: unknown) => {
      assert.ok(err instanceof MeshworkError);
      assert.match(err.code, /^\d+$/);
      assert.match(err.message, /^IPAM plugin host-local: .*no IP addresses available/i);
      return true;
    });
    await assert.rejects(ipam.add(ctx({ ...conf, cniVersion: '9.9.9' }, 'ADD', 'c')), (err: unknown) => {
      assert.ok(err instanceof MeshworkError);
      assert.equal(err.code, '1', err.message);
      return true;
    });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a plugin missing from CNI_PATH is a config error naming ipam.type', async () => {
  const conf = { cniVersion: '1.0.0', name: 'n', type: 'meshwork-cni', ipam: { type: 'no-such-ipam' } };
  await assert.rejects(createIpam().add(ctx(conf, 'ADD')), (err: unknown) => {
    assert.ok(err instanceof MeshworkError);
    assert.equal(err.code, '7');
    assert.match(err.message, /^ipam\.type: IPAM plugin "no-such-ipam" not found in CNI_PATH/);
    return true;
  });
  await assert.rejects(createIpam().add(ctx({ ...conf, ipam: { type: '../bin/sh' } }, 'ADD')), /ipam\.type: "\.\.\/bin\/sh" is not a plugin name/);
});

test('results of every spec version convert to one shape', () => {
  const cases: Array<{ name: string; raw: Record<string, unknown>; want: unknown }> = [
    {
      name: '1.0.0',
      raw: { cniVersion: '1.0.0', ips: [{ address: '10.0.0.2/24', gateway: '10.0.0.1', interface: 0 }], routes: [{ dst: '0.0.0.0/0', gw: '10.0.0.1' }], dns: { nameservers: ['10.0.0.53'] } },
      want: { ips: [{ address: '10.0.0.2/24', gateway: '10.0.0.1' }], routes: [{ dst: '0.0.0.0/0', gw: '10.0.0.1' }], dns: { nameservers: ['10.0.0.53'] } },
    },
    {
      name: '0.3.1 with version fields',
      raw: { cniVersion: '0.3.1', ips: [{ version: '6', address: 'fd00::2/64' }], dns: {} },
      want: { ips: [{ address: 'fd00::2/64' }], routes: [] },
    },
    {
      name: '0.2.0 ip4/ip6 blocks',
      raw: { cniVersion: '0.2.0', ip4: { ip: '10.0.0.2/24', gateway: '10.0.0.1', routes: [{ dst: '0.0.0.0/0' }] }, ip6: { ip: 'fd00::2/64' }, dns: { domain: 'example' } },
      want: { ips: [{ address: '10.0.0.2/24', gateway: '10.0.0.1' }, { address: 'fd00::2/64' }], routes: [{ dst: '0.0.0.0/0' }], dns: { domain: 'example' } },
    },
  ];
  for (const c of cases) assert.deepEqual(convertResult(c.raw), c.want, c.name);
});
