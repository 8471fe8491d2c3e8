/**
 * bin/meshwork-cni is what a runtime executes: the C shim (daemon fast path,
 * standalone fallback). bin/meshwork-cni-node is the Node launcher. Both
 * answer, and a direct ADD/DEL through bin/meshwork-cni without a daemon
 * wires and unwires a pod (the shim finds dist/cni/main.js through the link).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Lab, isRoot, NEEDS_ROOT, repoRoot, run, eventually } from '../helpers/lab';
import { bridgeConf, runIn } from './harness';

const BIN = path.join(repoRoot, 'bin', 'meshwork-cni');
const NODE_BIN = path.join(repoRoot, 'bin', 'meshwork-cni-node');
const SHIM = path.join(repoRoot, 'build', 'Release', 'meshwork-cni-shim');
const SKIP_SHIM = !fs.existsSync(SHIM) && 'meshwork-cni-shim not built (npm run build)';
const VERSION = '{"cniVersion":"1.1.0","supportedVersions":["0.4.0","1.0.0","1.1.0"]}';

test('bin/meshwork-cni is the shim; both executables answer VERSION', { skip: SKIP_SHIM }, async () => {
  assert.equal(fs.realpathSync(BIN), fs.realpathSync(SHIM));
  const env = { PATH: process.env.PATH, CNI_COMMAND: 'VERSION', MESHWORK_CNI_SOCKET: '/nonexistent/cni.sock', MESHWORK_NODE: process.execPath };
  for (const exe of [BIN, NODE_BIN]) {
    const r = await run(exe, [], { input: '{}', env });
    assert.equal(r.code, 0, `${exe}: ${r.stderr}`);
    assert.equal(r.stdout.trim(), VERSION);
  }
});

test('a runtime executing bin/meshwork-cni directly (no daemon): ADD then DEL', { skip: (!isRoot && NEEDS_ROOT) || SKIP_SHIM, timeout: 60_000 }, async () => {
  const lab = new Lab('mwex');
  try {
    const host = lab.netns('host');
    const pod = lab.netns('p');
    const conf = JSON.stringify(bridgeConf(lab, { name: `${lab.id}-x`, n: 6 }));
    const call = (command: string) => runIn(host, 'env', [
      '-i', `PATH=${process.env.PATH}`, `MESHWORK_NODE=${process.execPath}`, `MESHWORK_CNI_SOCKET=${path.join(lab.tmp, 'none.sock')}`,
      `CNI_COMMAND=${command}`, `CNI_CONTAINERID=${lab.id}-x`, `CNI_NETNS=${pod.path}`, 'CNI_IFNAME=eth0', BIN,
    ], conf);
    const add = await call('ADD');
    assert.equal(add.code, 0, add.stdout + add.stderr);
    assert.match(JSON.parse(add.stdout).ips[0].address, /^10\./);
    assert.match(pod.ip('-o', 'addr', 'show', 'dev', 'eth0'), /inet 10\./);
    const del = await call('DEL');
    assert.equal(del.code, 0, del.stdout + del.stderr);
    assert.equal(host.ip('-o', 'link', 'show', 'type', 'veth'), '');
  } finally {
    await lab.cleanup();
  }
});

test('through the daemon: the last DEL leaves the bridge for a grace period, an ADD keeps it, then it goes; SIGTERM finishes pending teardowns', { skip: (!isRoot && NEEDS_ROOT) || SKIP_SHIM, timeout: 90_000 }, async () => {
  const lab = new Lab('mwdd');
  try {
    const host = lab.netns('host');
    const pods = [lab.netns('p0'), lab.netns('p1')];
    const socket = path.join(lab.tmp, 'cni.sock');
    const startDaemon = async () => {
      const d = lab.spawnIn(host, process.execPath, [path.join(repoRoot, 'dist', 'cni', 'daemon.js'), '--socket', socket]);
      await eventually(() => fs.existsSync(socket) || d.exitCode !== null, 20_000, 'daemon socket');
      assert.ok(fs.existsSync(socket), 'daemon started');
      return d;
    };
    let daemon = await startDaemon();
    const confObj = bridgeConf(lab, { name: `${lab.id}-d`, n: 7 });
    const conf = JSON.stringify(confObj);
    const call = (command: string, i: number) => runIn(host, 'env', [
      '-i', `PATH=${process.env.PATH}`, `MESHWORK_CNI_SOCKET=${socket}`, 'MESHWORK_CNI_MAIN=/nonexistent',
      `CNI_COMMAND=${command}`, `CNI_CONTAINERID=${lab.id}-${i}`, `CNI_NETNS=${pods[i].path}`, 'CNI_IFNAME=eth0', BIN,
    ], conf);
    const bridgeUp = () => host.sh('ip', ['link', 'show', confObj.bridge], { allowFail: true }).code === 0;
    const table = () => host.sh('nft', ['list', 'tables']).stdout.includes(`meshwork-${confObj.name}`);

    assert.equal((await call('ADD', 0)).code, 0);
    assert.equal((await call('DEL', 0)).code, 0);
    assert.ok(bridgeUp() && table(), 'teardown postponed');
    assert.equal((await call('ADD', 1)).code, 0, 'an ADD within the grace period reuses the network');
    assert.equal((await call('DEL', 1)).code, 0);
    await eventually(() => !bridgeUp() && !table(), 30_000, 'bridge and table removed after the grace period');

    assert.equal((await call('ADD', 0)).code, 0);
    assert.equal((await call('DEL', 0)).code, 0);
    assert.ok(bridgeUp());
    const exited = new Promise((r) => daemon.once('exit', r));
    daemon.kill('SIGTERM');
    await exited;
    assert.ok(!bridgeUp() && !table(), 'a stopping daemon finishes its postponed teardown');
    assert.equal(host.ip('-o', 'link', 'show', 'type', 'veth'), '');
  } finally {
    await lab.cleanup();
  }
});
