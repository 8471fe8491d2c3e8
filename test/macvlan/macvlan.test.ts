import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Lab, eventually, isRoot, NEEDS_ROOT, repoRoot, type Netns } from '../helpers/lab';

/**
 * A "host" namespace whose macvlan parent is one end of a veth; the other end
 * sits in an "ext" namespace standing in for the LAN (10.88.0.254). Pods are
 * namespaces wired by meshwork-cni run inside the host namespace.
 */
class MacvlanLab {
  readonly host: Netns;
  readonly ext: Netns;
  constructor(readonly lab: Lab) {
    this.host = lab.netns('host');
    this.ext = lab.netns('ext');
    lab.veth(this.host, 'par0', undefined, this.ext, 'ext0', '10.88.0.254/24');
  }

  conf(extra: Record<string, unknown>): string {
    return JSON.stringify({
      cniVersion: '1.1.0', name: 'lan', type: 'meshwork-cni', driver: 'macvlan', master: 'par0',
      store: `file:${path.join(this.lab.tmp, 'store')}`,
      ipam: { type: 'meshwork', dataDir: path.join(this.lab.tmp, 'ipam'), ranges: [[{ subnet: '10.88.0.0/24', rangeStart: '10.88.0.10', gateway: '10.88.0.254' }]] },
      ...extra,
    });
  }

  async cni(command: string, pod: Netns, conf: string): Promise<{ code: number; out: any; raw: string }> {
    const r = await this.host.run('env', [
      `CNI_COMMAND=${command}`, `CNI_CONTAINERID=${pod.name}`, `CNI_NETNS=${pod.path}`, 'CNI_IFNAME=eth0', 'CNI_PATH=/nonexistent',
      // No daemon on this path: the shim runs the plugin itself, inside the host namespace.
      `MESHWORK_CNI_SOCKET=${path.join(this.lab.tmp, 'no-daemon.sock')}`, path.join(repoRoot, 'bin', 'meshwork-cni'),
    ], { input: conf });
    let out: any;
    try { out = r.stdout ? JSON.parse(r.stdout) : undefined; } catch { out = undefined; }
    return { code: r.code, out, raw: r.stdout + r.stderr };
  }

  async pod(name: string, conf: string): Promise<{ ns: Netns; ip: string; result: any }> {
    const ns = this.lab.netns(name);
    const r = await this.cni('ADD', ns, conf);
    assert.equal(r.code, 0, r.raw);
    return { ns, ip: String(r.out.ips[0].address).split('/')[0], result: r.out };
  }
}

const pings = (from: Netns, ip: string) => from.sh('ping', ['-c', '1', '-W', '1', ip], { allowFail: true }).code === 0;

test('macvlan bridge mode: containers on one parent reach each other and the LAN', { skip: !isRoot && NEEDS_ROOT }, async () => {
  const lab = new Lab();
  try {
    const m = new MacvlanLab(lab);
    const conf = m.conf({ mode: 'bridge', mtu: 1400 });
    const a = await m.pod('a', conf);
    const b = await m.pod('b', conf);
    assert.notEqual(a.ip, b.ip);
    const link = a.ns.ip('-d', 'link', 'show', 'eth0');
    assert.match(link, /macvlan mode bridge/);
    assert.match(link, /mtu 1400/);
    // Born in the pod: nothing was left in the host namespace but the parent.
    assert.doesNotMatch(m.host.ip('-o', 'link'), /macvlan/);
    await eventually(() => pings(a.ns, b.ip), 10_000, 'a -> b');
    await eventually(() => pings(b.ns, a.ip), 10_000, 'b -> a');
    await eventually(() => pings(a.ns, '10.88.0.254'), 10_000, 'a -> LAN');

    const chk = await m.cni('CHECK', a.ns, JSON.stringify({ ...JSON.parse(conf), prevResult: a.result }));
    assert.equal(chk.code, 0, chk.raw);

    const del = await m.cni('DEL', a.ns, conf);
    assert.equal(del.code, 0, del.raw);
    assert.doesNotMatch(a.ns.ip('-o', 'link'), /eth0/);
    assert.equal((await m.cni('DEL', a.ns, conf)).code, 0, 'a second DEL succeeds');
    // The address went back to the pool: IPAM's state names b, no longer a.
    const ipamState = fs.readFileSync(path.join(lab.tmp, 'ipam', 'lan', 'state.json'), 'utf8');
    assert.match(ipamState, new RegExp(b.ns.name));
    assert.doesNotMatch(ipamState, new RegExp(a.ns.name));
  } finally {
    await lab.cleanup();
  }
});

test('macvlan private mode: containers on one parent are isolated from each other, not from the LAN', { skip: !isRoot && NEEDS_ROOT }, async () => {
  const lab = new Lab();
  try {
    const m = new MacvlanLab(lab);
    const conf = m.conf({ mode: 'private' });
    const a = await m.pod('a', conf);
    const b = await m.pod('b', conf);
    assert.match(a.ns.ip('-d', 'link', 'show', 'eth0'), /macvlan mode private/);
    // Both links work (each reaches the LAN) ...
    await eventually(() => pings(a.ns, '10.88.0.254'), 10_000, 'a -> LAN');
    await eventually(() => pings(b.ns, '10.88.0.254'), 10_000, 'b -> LAN');
    // ... yet the kernel keeps them apart.
    assert.equal(pings(a.ns, b.ip), false, 'private: a must not reach b');
    assert.equal(pings(b.ns, a.ip), false, 'private: b must not reach a');
  } finally {
    await lab.cleanup();
  }
});

test('macvlan: vepa and passthru modes; passthru takes the parent for one container only', { skip: !isRoot && NEEDS_ROOT }, async () => {
  const lab = new Lab();
  try {
    const m = new MacvlanLab(lab);
    const v = await m.pod('v', m.conf({ mode: 'vepa' }));
    assert.match(v.ns.ip('-d', 'link', 'show', 'eth0'), /macvlan mode vepa/);
    assert.equal((await m.cni('DEL', v.ns, m.conf({ mode: 'vepa' }))).code, 0);

    const pt = m.conf({ mode: 'passthru' });
    const p = await m.pod('p', pt);
    assert.match(p.ns.ip('-d', 'link', 'show', 'eth0'), /macvlan mode passthru/);
    await eventually(() => pings(p.ns, '10.88.0.254'), 10_000, 'passthru -> LAN');
    const q = lab.netns('q');
    const r = await m.cni('ADD', q, pt);
    assert.notEqual(r.code, 0, 'a second passthru macvlan on one parent must fail');
    assert.doesNotMatch(q.ip('-o', 'link'), /eth0/, 'the failed ADD left nothing behind');
  } finally {
    await lab.cleanup();
  }
});

test('macvlan config errors name the field; no fallback to the default-route interface', { skip: !isRoot && NEEDS_ROOT }, async () => {
  const lab = new Lab();
  try {
    const m = new MacvlanLab(lab);
    const ns = lab.netns('x');
    const base = JSON.parse(m.conf({}));
    delete base.master;
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [base, /master.*required/],
      [{ ...base, master: 'nope0' }, /master.*nope0 does not exist/],
      [{ ...base, master: 'par0', mode: 'sideways' }, /mode.*one of .*bridge.*sideways/],
      [{ ...base, master: 'par0', mtu: 9000 }, /mtu.*above the MTU/],
    ];
    for (const [conf, re] of cases) {
      const r = await m.cni('ADD', ns, JSON.stringify(conf));
      assert.notEqual(r.code, 0);
      assert.match(r.out?.msg ?? r.raw, re);
      assert.doesNotMatch(r.raw, /\n\s+at /, 'no stack trace');
      assert.doesNotMatch(ns.ip('-o', 'link'), /eth0/);
    }
  } finally {
    await lab.cleanup();
  }
});
