/**
 * The contract every meshwork CNI driver keeps, as one suite each driver's
 * test file runs with its own setup (bridge here; overlay and macvlan with
 * theirs): ADD gives a spec result whose sandbox interface is really in the
 * container with its addresses; two containers reach each other; CHECK
 * passes and then catches a removed address; a failed ADD leaves nothing;
 * DEL is idempotent (twice, and with the namespace gone); GC removes
 * attachments not listed. Not a test file itself: call `driverCompliance`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Lab, isRoot, NEEDS_ROOT, sh, type Netns } from '../helpers/lab';
import { callPlugin, snapshot, ping } from './harness';

export interface DriverSetup {
  /** The namespace the plugin runs in (its links, rules and state live there). */
  host: Netns;
  /** The network config (cniVersion 1.1.0, so GC is allowed). */
  conf: Record<string, unknown>;
  /** Namespaces for containers, at least 3. */
  pods: Netns[];
}

export function driverCompliance(driver: string, setup: (lab: Lab) => Promise<DriverSetup> | DriverSetup): void {
  test(`driver compliance: ${driver}`, { skip: !isRoot && NEEDS_ROOT, timeout: 180_000 }, async () => {
    const lab = new Lab('mwdc');
    try {
      const { host, conf, pods } = await setup(lab);
      const [p0, p1, p2] = pods;
      const env = (i: number, ns: Netns, command = 'ADD') => ({ command, containerId: `${lab.id}-${i}`, netns: ns.path, ifname: 'eth0', path: '/usr/lib/cni' });
      const empty = snapshot(lab, host);

      // ADD: a spec result, matching the kernel.
      const r0 = await callPlugin(host, env(0, p0), conf);
      const r1 = await callPlugin(host, env(1, p1), conf);
      assert.equal(r0.code, 0, r0.stdout + r0.stderr);
      assert.equal(r1.code, 0, r1.stdout + r1.stderr);
      for (const [r, ns] of [[r0, p0], [r1, p1]] as const) {
        assert.equal(r.json.cniVersion, conf.cniVersion);
        const sandbox = r.json.interfaces.findIndex((i: any) => i.sandbox === ns.path && i.name === 'eth0');
        assert.ok(sandbox >= 0, 'the result names the container interface with its sandbox');
        assert.ok(r.json.ips.length > 0);
        for (const ip of r.json.ips) {
          assert.equal(ip.interface, sandbox);
          assert.match(ns.ip('-o', 'addr', 'show', 'dev', 'eth0'), new RegExp(` ${ip.address.replace(/\./g, '\\.')} `));
        }
      }
      // Two containers reach each other over every address family they got.
      for (const ip of r1.json.ips) assert.ok(await ping(p0, ip.address.split('/')[0]), `ping ${ip.address}`);

      // CHECK passes, then notices a removed address.
      const chk = await callPlugin(host, env(0, p0, 'CHECK'), { ...conf, prevResult: r0.json });
      assert.equal(chk.code, 0, chk.stdout);
      p0.ip('addr', 'del', r0.json.ips[0].address, 'dev', 'eth0');
      const bad = await callPlugin(host, env(0, p0, 'CHECK'), { ...conf, prevResult: r0.json });
      assert.equal(bad.code, 1, 'CHECK fails when an address is gone');
      assert.ok(bad.json && typeof bad.json.code === 'number' && bad.json.msg);

      // A failed ADD (the container already has eth0) leaves nothing of its own.
      const before = snapshot(lab, host, pods);
      p2.ip('link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0p');
      const failed = await callPlugin(host, env(2, p2), conf);
      assert.equal(failed.code, 1);
      p2.ip('link', 'del', 'eth0');
      assert.equal(snapshot(lab, host, pods), before, 'a failed ADD left something behind');

      // GC keeps what is listed, removes the rest.
      const gc = await callPlugin(host, { command: 'GC', path: '/usr/lib/cni' }, { ...conf, 'cni.dev/valid-attachments': [{ containerID: `${lab.id}-0`, ifname: 'eth0' }] });
      assert.equal(gc.code, 0, gc.stdout);
      assert.doesNotMatch(p1.ip('-o', 'link'), /eth0/, 'GC removed the unlisted attachment');
      assert.match(p0.ip('-o', 'link'), /eth0/, 'GC kept the listed attachment');

      // DEL: twice, and with the namespace already gone.
      for (let round = 0; round < 2; round++) {
        assert.equal((await callPlugin(host, env(1, p1, 'DEL'), conf)).code, 0);
      }
      sh('ip', ['netns', 'del', p0.name]);
      for (let round = 0; round < 2; round++) {
        const d = await callPlugin(host, env(0, p0, 'DEL'), conf);
        assert.equal(d.code, 0, d.stdout);
      }
      assert.equal(snapshot(lab, host), empty, 'DEL of all leaves the host as it was');
    } finally {
      await lab.cleanup();
    }
  });
}
