import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseIpamConfig } from '../../cni/ipam/config';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MeshworkError } from '../../lib/errors';
import { repoRoot } from '../helpers/lab';

const base = (ipam: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
  ({ cniVersion: '1.0.0', name: 'net1', type: 'meshwork-cni', ipam: { type: 'meshwork', dataDir: '/tmp/x', ...ipam }, ...extra });

test('config errors name the field, the value and use code 7', () => {
  const cases: Array<{ conf: Record<string, unknown>; env?: Record<string, string>; msg: RegExp }> = [
    { conf: base({ ranges: [[{ subnet: '10.0.0.0/33' }]] }), msg: /^ipam\.ranges\[0\]\[0\]\.subnet: "10\.0\.0\.0\/33" is not a CIDR$/ },
    { conf: base({ ranges: [[{ subnet: '10.0.0.5/24' }]] }), msg: /^ipam\.ranges\[0\]\[0\]\.subnet: .*host bits set.*10\.0\.0\.0\/24/ },
    { conf: base({ ranges: [[{ subnet: '10.0.0.0/31' }]] }), msg: /^ipam\.ranges\[0\]\[0\]\.subnet: .*too small/ },
    { conf: base({ ranges: [[{}]] }), msg: /^ipam\.ranges\[0\]\[0\]\.subnet: is required$/ },
    { conf: base({ ranges: [[{ subnet: 10 }]] }), msg: /^ipam\.ranges\[0\]\[0\]\.subnet: 10 is not a CIDR$/ },
    { conf: base({ ranges: [[{ subnet: '10.0.0.0/24', rangeStart: '10.0.1.1' }]] }), msg: /^ipam\.ranges\[0\]\[0\]\.rangeStart: 10\.0\.1\.1 is outside subnet 10\.0\.0\.0\/24$/ },
    { conf: base({ ranges: [[{ subnet: '10.0.0.0/24', rangeEnd: 'x' }]] }), msg: /^ipam\.ranges\[0\]\[0\]\.rangeEnd: "x" is not an IP address$/ },
    { conf: base({ ranges: [[{ subnet: '10.0.0.0/24', rangeEnd: '10.0.0.255' }]] }), msg: /^ipam\.ranges\[0\]\[0\]\.rangeEnd: .*broadcast/ },
    { conf: base({ ranges: [[{ subnet: '10.0.0.0/24', rangeStart: '10.0.0.9', rangeEnd: '10.0.0.8' }]] }), msg: /^ipam\.ranges\[0\]\[0\]: rangeStart 10\.0\.0\.9 is after rangeEnd 10\.0\.0\.8$/ },
    { conf: base({ ranges: [[{ subnet: '10.0.0.0/24', gateway: 7 }]] }), msg: /^ipam\.ranges\[0\]\[0\]\.gateway: expected a string, got 7$/ },
    { conf: base({ ranges: [[{ subnet: '10.0.0.0/24' }, { subnet: 'fd00::/64' }]] }), msg: /^ipam\.ranges\[0\]\[1\]\.subnet: mixes IPv4 and IPv6/ },
    { conf: base({ ranges: [[{ subnet: '10.0.0.0/24' }], [{ subnet: '10.0.0.0/25' }]] }), msg: /^ipam\.ranges\[1\]\[0\]: overlaps ipam\.ranges\[0\]\[0\]$/ },
    { conf: base({ ranges: [] }), msg: /^ipam\.ranges: expected a non-empty list/ },
    { conf: base({ ranges: [{ subnet: '10.0.0.0/24' }] }), msg: /^ipam\.ranges\[0\]: expected a non-empty list of ranges/ },
    { conf: base({}), msg: /^ipam\.ranges: is required/ },
    { conf: base({ ranges: [[{ subnet: '10.0.0.0/24' }]], routes: [{ dst: '0.0.0.0/40' }] }), msg: /^ipam\.routes\[0\]\.dst: "0\.0\.0\.0\/40" is not a CIDR$/ },
    { conf: base({ ranges: [[{ subnet: '10.0.0.0/24' }]], routes: [{ dst: '0.0.0.0/0', gw: 'fd00::1' }] }), msg: /^ipam\.routes\[0\]\.gw: .*same IP family/ },
    { conf: base({ ranges: [[{ subnet: '10.0.0.0/24' }]], dataDir: 'relative/dir' }), msg: /^ipam\.dataDir: "relative\/dir" is not an absolute path$/ },
    { conf: base({ ranges: [[{ subnet: '10.0.0.0/24' }]] }, { name: '../etc' }), msg: /^name: "\.\.\/etc" is not a valid network name/ },
    { conf: base({ ranges: [[{ subnet: '10.0.0.0/24' }]] }, { runtimeConfig: { ips: ['10.0.0.300'] } }), msg: /^runtimeConfig\.ips\[0\]: "10\.0\.0\.300" is not an IP address$/ },
    { conf: base({ ranges: [[{ subnet: '10.0.0.0/24' }]] }, { args: { cni: { ips: 'x' } } }), msg: /^args\.cni\.ips: expected a list/ },
    { conf: base({ ranges: [[{ subnet: '10.0.0.0/24' }]] }), env: { CNI_ARGS: 'IP=nope' }, msg: /^CNI_ARGS IP\[0\]: "nope" is not an IP address$/ },
  ];
  for (const c of cases) {
    assert.throws(() => parseIpamConfig(c.conf, c.env ?? {}), (err: unknown) => {
      assert.ok(err instanceof MeshworkError, String(err));
      assert.equal(err.code, '7');
      assert.match(err.message, c.msg);
      return true;
    }, JSON.stringify(c.conf));
  }
});

test('valid config: defaults, flat host-local form, routes, requested ips from three sources', () => {
  const cfg = parseIpamConfig(base({
    ranges: [[{ subnet: '10.5.0.0/16', rangeStart: '10.5.1.0', rangeEnd: '10.5.1.255', gateway: '10.5.0.1' }], [{ subnet: 'fd05::/64' }]],
    routes: [{ dst: '0.0.0.0/0' }, { dst: '::/0', gw: 'fd05::1' }],
  }, { runtimeConfig: { ips: ['10.5.1.9/16'] }, args: { cni: { ips: ['fd05::9'] } } }), { CNI_ARGS: 'K8S_POD_NAME=a;IP=10.5.1.9' });
  assert.equal(cfg.network, 'net1');
  assert.equal(cfg.dataDir, '/tmp/x');
  assert.equal(cfg.rangeSets.length, 2);
  assert.equal(cfg.rangeSets[1][0].gateway, cfg.rangeSets[1][0].subnet.network + 1n, 'IPv6 default gateway is ::1 of the subnet');
  assert.deepEqual(cfg.routes, [{ dst: '0.0.0.0/0' }, { dst: '::/0', gw: 'fd05::1' }]);
  assert.deepEqual(cfg.requested.map((r) => r.field), ['runtimeConfig.ips[0]', 'args.cni.ips[0]'], 'duplicate CNI_ARGS IP collapses');

  const flat = parseIpamConfig({ name: 'n', ipam: { type: 'meshwork', subnet: '10.6.0.0/24' } }, {});
  assert.equal(flat.dataDir, '/var/lib/meshwork/ipam');
  assert.equal(flat.rangeSets[0][0].start, flat.rangeSets[0][0].subnet.network + 1n);
});

test('the README example is a valid config', () => {
  const readme = fs.readFileSync(path.join(repoRoot, 'cni', 'ipam', 'README.md'), 'utf8');
  const block = /```json\n([\s\S]*?)```/.exec(readme);
  assert.ok(block, 'README has a json example');
  const ipam = JSON.parse(block[1]);
  const cfg = parseIpamConfig({ name: 'readme', ipam }, {});
  assert.equal(cfg.rangeSets.length, 2);
  assert.equal(cfg.routes.length, 2);
});
