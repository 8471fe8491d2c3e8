import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Lab, isRoot, NEEDS_ROOT, run, sh, repoRoot } from '../helpers/lab';

const CLI = path.join(repoRoot, 'bin', 'meshwork');
const CNITOOL = path.join(repoRoot, '.cache', 'cnitool', 'bin', 'cnitool');
const meshwork = (...args: string[]) => run(process.execPath, [CLI, ...args]);

/** Every file and directory under `dir`, relative. */
function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      out.push(path.relative(dir, p) + (e.isDirectory() ? '/' : ''));
      if (e.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out.sort();
}

/**
 * Runs cnitool in a private mount namespace whose libcni result cache
 * (/var/lib/cni, not configurable in cnitool) is a temp dir: nothing is left
 * on the machine and parallel runs of other tests cannot disturb it.
 */
function cnitool(cacheDir: string, args: string[], env: NodeJS.ProcessEnv, ns?: { name: string }) {
  fs.mkdirSync(cacheDir, { recursive: true });
  const target = fs.existsSync('/var/lib/cni') ? '/var/lib/cni' : '/var/lib';
  const inner = ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', 'mount --bind "$1" "$2" && shift 2 && exec "$@"', 'sh', cacheDir, target, CNITOOL, ...args];
  return ns ? sh('ip', ['netns', 'exec', ns.name, ...inner], { env }) : sh(inner[0], inner.slice(1), { env });
}

/** A stand-in plugin program: logs each call and answers ADD with a result. */
function stubPlugin(dir: string): { entry: string; log: string } {
  const log = path.join(dir, 'calls.log');
  const entry = path.join(dir, 'stub-plugin.js');
  // An executable, as the real entry (the shim) is: the launcher execs it with MESHWORK_NODE set.
  fs.writeFileSync(entry, `#!${process.execPath}
    const fs = require('fs'); let s = '';
    process.stdin.on('data', (d) => (s += d)).on('end', () => {
      fs.appendFileSync(${JSON.stringify(log)}, JSON.stringify({ cmd: process.env.CNI_COMMAND, netns: process.env.CNI_NETNS, ifname: process.env.CNI_IFNAME, conf: JSON.parse(s || '{}') }) + '\\n');
      if (process.env.CNI_COMMAND === 'ADD') process.stdout.write(JSON.stringify({ cniVersion: '1.0.0', interfaces: [{ name: 'eth0', sandbox: process.env.CNI_NETNS }], ips: [{ address: '10.99.0.2/24', interface: 0 }] }));
    });`, { mode: 0o755 });
  return { entry, log };
}

test('install --dry-run prints every file with its content and writes nothing', async () => {
  const lab = new Lab('mwi');
  try {
    const prefix = path.join(lab.tmp, 'root');
    fs.mkdirSync(prefix);
    const r = await meshwork('install', '--dry-run', '--prefix', prefix, '--driver', 'bridge', '--mesh', '--store', 'etcd:http://10.0.0.1:2379', '--node', 'n1', '--underlay', '192.0.2.10');
    assert.equal(r.code, 0, r.stderr);
    for (const f of ['opt/cni/bin/meshwork-cni', 'etc/cni/net.d/10-meshwork.conflist', 'etc/meshwork/agent.env', 'etc/systemd/system/meshwork-agent.service', 'etc/meshwork/installed.json']) {
      assert.match(r.stdout, new RegExp(`would write ${path.join(prefix, f).replace(/[.]/g, '\\.')} \\(mode 0[67][45][45]\\)`), f);
    }
    assert.match(r.stdout, /\| MESHWORK_NODE='.*node' exec '.*\/bin\/meshwork-cni' "\$@"/);
    assert.match(r.stdout, /\|\s+"driver": "bridge"/);
    assert.match(r.stdout, /\|\s+"mesh": true/);
    assert.match(r.stdout, /\| MESHWORK_STORE=etcd:http:\/\/10\.0\.0\.1:2379/);
    assert.match(r.stdout, /\| MESHWORK_UNDERLAY=192\.0\.2\.10/);
    // Quoted, so an empty setting reaches the agent as an empty value it names rather than shifting the flags.
    assert.match(r.stdout, /\| ExecStart=".*node" ".*\/bin\/meshwork" agent --node "\$\{MESHWORK_NODE\}" --underlay "\$\{MESHWORK_UNDERLAY\}"/);
    assert.deepEqual(tree(prefix), [], 'dry run wrote nothing');
  } finally {
    await lab.cleanup();
  }
});

test('install refuses bad flags and configs with a clear message', async () => {
  const lab = new Lab('mwi');
  try {
    const bad = path.join(lab.tmp, 'bad.yaml');
    fs.writeFileSync(bad, 'name: ok\nplugins:\n  - driver: bridge\n');
    const cases: Array<[string[], RegExp]> = [
      [['--driver', 'ipvlan'], /--driver ipvlan: expected one of bridge, overlay, macvlan/],
      [['--driver', 'macvlan'], /--driver macvlan needs --master IFACE/],
      [['--network', 'bad name'], /--network "bad name": expected letters/],
      [['--cni-bin-dir', 'relative/bin'], /--cni-bin-dir relative\/bin: expected an absolute path/],
      [['--config', bad], /bad\.yaml: plugins\[0\]\.type: expected the plugin's name/],
      [['--config', path.join(lab.tmp, 'none.json')], /none\.json: no such file/],
      [['--subnet', '10.88.0.0/99'], /--subnet 10\.88\.0\.0\/99: expected a CIDR/],
      [['--underlay', 'eth0'], /--underlay eth0: expected this host's IP address/],
    ];
    for (const [args, re] of cases) {
      const r = await meshwork('install', '--dry-run', '--prefix', lab.tmp, ...args);
      assert.equal(r.code, 1, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, re);
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    }
  } finally {
    await lab.cleanup();
  }
});

test('install into a temporary root: cnitool finds and runs the plugin from the conflist; uninstall leaves nothing', { skip: !isRoot && NEEDS_ROOT }, async (t) => {
  const lab = new Lab('mwi');
  try {
    const prefix = path.join(lab.tmp, 'root');
    fs.mkdirSync(prefix);
    const stub = stubPlugin(lab.tmp);
    const conf = path.join(lab.tmp, 'net.yaml');
    // A single plugin config in YAML: install wraps it into a conflist.
    fs.writeFileSync(conf, `cniVersion: 1.0.0\nname: ${lab.id}\ntype: meshwork-cni\ndriver: bridge\nbridge: ${lab.link('br')}\n`);
    const r = await meshwork('install', '--prefix', prefix, '--config', conf, '--plugin-entry', stub.entry, '--node', 'n1', '--underlay', '192.0.2.10');
    assert.equal(r.code, 0, r.stderr);
    const launcher = path.join(prefix, 'opt/cni/bin/meshwork-cni');
    assert.equal(fs.statSync(launcher).mode & 0o777, 0o755);
    const conflist = JSON.parse(fs.readFileSync(path.join(prefix, `etc/cni/net.d/10-${lab.id}.conflist`), 'utf8'));
    assert.deepEqual(conflist.plugins, [{ type: 'meshwork-cni', driver: 'bridge', bridge: lab.link('br') }]);

    // Re-running is idempotent.
    const again = await meshwork('install', '--prefix', prefix, '--config', conf, '--plugin-entry', stub.entry, '--node', 'n1', '--underlay', '192.0.2.10');
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /unchanged .*meshwork-cni/);

    if (fs.existsSync(CNITOOL)) {
      const pod = lab.netns('pod');
      const env = { ...process.env, CNI_PATH: path.join(prefix, 'opt/cni/bin'), NETCONFPATH: path.join(prefix, 'etc/cni/net.d'), CNI_IFNAME: 'eth0' };
      const cache = path.join(lab.tmp, 'cni-cache');
      const add = cnitool(cache, ['add', lab.id, pod.path], env);
      assert.match(add.stdout, /10\.99\.0\.2\/24/);
      cnitool(cache, ['del', lab.id, pod.path], env);
      const calls = fs.readFileSync(stub.log, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
      assert.deepEqual(calls.map((c) => c.cmd), ['ADD', 'DEL']);
      assert.equal(calls[0].netns, pod.path);
      assert.equal(calls[0].conf.name, lab.id);
      assert.equal(calls[0].conf.driver, 'bridge');
    } else {
      t.diagnostic('cnitool not built (scripts/build-cnitool.sh): skipped running the plugin through it');
    }

    // An edited file is kept by uninstall unless forced.
    const env = path.join(prefix, 'etc/meshwork/agent.env');
    fs.appendFileSync(env, 'MESHWORK_EXTRA=1\n');
    const u1 = await meshwork('uninstall', '--prefix', prefix);
    assert.equal(u1.code, 0, u1.stderr);
    assert.match(u1.stdout, /kept .*agent\.env: changed since install/);
    assert.deepEqual(tree(prefix), ['etc/', 'etc/meshwork/', 'etc/meshwork/agent.env']);
    fs.writeFileSync(path.join(prefix, 'etc/meshwork/keep-me'), 'x');
    // Reinstall over the edited file works (it is ours), then a forced uninstall removes all we wrote.
    assert.equal((await meshwork('install', '--prefix', prefix, '--config', conf, '--plugin-entry', stub.entry, '--force')).code, 0);
    const u2 = await meshwork('uninstall', '--prefix', prefix, '--force');
    assert.equal(u2.code, 0, u2.stderr);
    assert.deepEqual(tree(prefix), ['etc/', 'etc/meshwork/', 'etc/meshwork/keep-me'], 'only the file we did not write is left');
    fs.rmSync(path.join(prefix, 'etc/meshwork/keep-me'));

    // A file install did not write is never overwritten without --force.
    fs.mkdirSync(path.join(prefix, 'etc/systemd/system'), { recursive: true });
    fs.writeFileSync(path.join(prefix, 'etc/systemd/system/meshwork-agent.service'), '# hand-written\n');
    const clash = await meshwork('install', '--prefix', prefix, '--config', conf, '--plugin-entry', stub.entry);
    assert.equal(clash.code, 1);
    assert.match(clash.stderr, /meshwork-agent\.service exists and was not written by meshwork install; move it away or use --force/);
    assert.ok(!fs.existsSync(path.join(prefix, 'opt')), 'a refused install wrote nothing');
    const un = await meshwork('uninstall', '--prefix', prefix);
    assert.equal(un.code, 1);
    assert.match(un.stderr, /meshwork is not installed under/);
  } finally {
    await lab.cleanup();
  }
});

test('install of the real plugin: cnitool wires a pod on a bridge inside a lab host namespace', { skip: !isRoot ? NEEDS_ROOT : !fs.existsSync(path.join(repoRoot, 'bin', 'meshwork-cni')) || !fs.existsSync(CNITOOL) ? 'bin/meshwork-cni or cnitool not built yet' : false }, async () => {
  const lab = new Lab('mwi');
  try {
    const prefix = path.join(lab.tmp, 'root');
    fs.mkdirSync(prefix);
    const conf = path.join(lab.tmp, 'net.json');
    fs.writeFileSync(conf, JSON.stringify({
      cniVersion: '1.0.0', name: lab.id,
      plugins: [{
        type: 'meshwork-cni', driver: 'bridge', bridge: lab.link('br'), isGateway: true, stateDir: path.join(lab.tmp, 'state'),
        store: `file:${path.join(lab.tmp, 'store')}`,
        ipam: { type: 'meshwork', ranges: [[{ subnet: '10.250.7.0/24' }]], dataDir: path.join(lab.tmp, 'ipam') },
      }],
    }));
    const r = await meshwork('install', '--prefix', prefix, '--config', conf);
    assert.equal(r.code, 0, r.stderr);
    const host = lab.netns('host');
    const pod = lab.netns('pod');
    const env = { ...process.env, CNI_PATH: path.join(prefix, 'opt/cni/bin'), NETCONFPATH: path.join(prefix, 'etc/cni/net.d'), CNI_IFNAME: 'eth0' };
    // cnitool runs inside the lab's host namespace, so the bridge is made there, not on this machine.
    const cache = path.join(lab.tmp, 'cni-cache');
    const add = cnitool(cache, ['add', lab.id, pod.path], env, host);
    assert.match(add.stdout, /10\.250\.7\.\d+\/24/);
    assert.match(pod.ip('-o', 'addr', 'show', 'dev', 'eth0'), /inet 10\.250\.7\.\d+\/24/);
    assert.match(host.ip('-o', 'link', 'show', lab.link('br')), new RegExp(lab.link('br')));
    pod.sh('ping', ['-c', '1', '-W', '2', '10.250.7.1']);
    cnitool(cache, ['del', lab.id, pod.path], env, host);
    assert.equal((await meshwork('uninstall', '--prefix', prefix)).code, 0);
    assert.deepEqual(tree(prefix), []);
  } finally {
    await lab.cleanup();
  }
});

test('the conflist install builds from flags is accepted by the plugin for every driver', async () => {
  const { planInstall, optionsFromFlags } = await import('../../cli/install');
  const { parseNetConf } = await import('../../cni/config');
  const { loadDriver } = await import('../../cni/drivers/driver');
  const { parseIpamConfig } = await import('../../cni/ipam/config');
  for (const driver of ['bridge', 'overlay', 'macvlan']) {
    for (const mesh of [false, true]) {
      const o = optionsFromFlags({
        prefix: '/', cniBinDir: '/opt/cni/bin', cniConfDir: '/etc/cni/net.d', systemdDir: '/etc/systemd/system', network: 'meshwork',
        driver, mesh, subnet: '10.88.0.0/16', master: 'eth9', node: 'n1', underlay: '192.0.2.1',
      });
      const conflist = JSON.parse(planInstall(o).find((f) => f.path.endsWith('.conflist'))!.content);
      for (const plugin of conflist.plugins) {
        const { conf } = parseNetConf({ cniVersion: conflist.cniVersion, name: conflist.name, ...plugin });
        assert.equal(conf.driver, driver);
        assert.equal(conf.raw.mesh === true, mesh);
        loadDriver(driver).loadConfig(conf);
        if (conf.ipam) parseIpamConfig(conf.raw, {});
      }
    }
  }
});

test('the conflist install builds from flags: the pods it wires land in the install\'s store with their labels and names, even from a runtime whose PATH lacks sbin', { skip: !isRoot ? NEEDS_ROOT : !fs.existsSync(path.join(repoRoot, 'bin', 'meshwork-cni')) || !fs.existsSync(CNITOOL) ? 'bin/meshwork-cni or cnitool not built yet' : false }, async () => {
  const lab = new Lab('mwi');
  try {
    const prefix = path.join(lab.tmp, 'root');
    const store = `file:${path.join(lab.tmp, 'store')}`;
    const r = await meshwork('install', '--prefix', prefix, '--network', lab.id, '--driver', 'bridge', '--subnet', '10.250.9.0/24',
      '--store', store, '--node', 'worker-7', '--underlay', '192.0.2.7', '--no-systemd');
    assert.equal(r.code, 0, r.stderr);
    const conflist = JSON.parse(fs.readFileSync(path.join(prefix, `etc/cni/net.d/10-${lab.id}.conflist`), 'utf8'));
    const plugin = conflist.plugins[0];
    // Without these the plugin writes its records to the default store under the host name,
    // and a runtime never passes the pod's labels and names: Services and DNS never find the pod.
    assert.equal(plugin.store, store);
    assert.equal(plugin.node, 'worker-7');
    assert.deepEqual(plugin.capabilities, { portMappings: true, labels: true, hostname: true, aliases: true, mesh: true });

    // Only the node-local paths move into the lab (bridge name, state and IPAM dirs); the rest is as installed.
    const netconf = path.join(lab.tmp, 'net.d');
    fs.mkdirSync(netconf);
    fs.writeFileSync(path.join(netconf, `10-${lab.id}.conflist`), JSON.stringify({ ...conflist, plugins: [{ ...plugin, bridge: lab.link('br'),
      stateDir: path.join(lab.tmp, 'state'), ipam: { ...plugin.ipam, dataDir: path.join(lab.tmp, 'ipam') } }] }));
    const host = lab.netns('host');
    const pod = lab.netns('pod');
    // A runtime started with a minimal PATH (no sbin, where nft lives): the launcher completes it.
    const env = { PATH: '/usr/bin:/bin', CNI_PATH: path.join(prefix, 'opt/cni/bin'), NETCONFPATH: netconf, CNI_IFNAME: 'eth0',
      CNI_ARGS: 'K8S_POD_NAMESPACE=shop;K8S_POD_NAME=cart-1', CAP_ARGS: JSON.stringify({ labels: { app: 'cart' }, hostname: 'cart-a', aliases: ['basket'] }) };
    const cache = path.join(lab.tmp, 'cni-cache');
    const add = cnitool(cache, ['add', lab.id, pod.path], env, host);
    assert.match(add.stdout, /10\.250\.9\.\d+\/24/);
    const { openStore } = await import('../../store/open');
    const s = await openStore(store);
    try {
      const recs = (await s.list('/meshwork/endpoints/')).items.map((kv) => JSON.parse(kv.value));
      assert.equal(recs.length, 1);
      assert.deepEqual({ node: recs[0].node, pod: recs[0].pod, namespace: recs[0].namespace, labels: recs[0].labels, hostname: recs[0].hostname, aliases: recs[0].aliases },
        { node: 'worker-7', pod: 'cart-1', namespace: 'shop', labels: { app: 'cart' }, hostname: 'cart-a', aliases: ['basket'] });
      cnitool(cache, ['del', lab.id, pod.path], env, host);
      assert.deepEqual((await s.list('/meshwork/endpoints/')).items, []);
    } finally {
      await s.close();
    }
    assert.equal((await meshwork('uninstall', '--prefix', prefix)).code, 0);
    assert.ok(!fs.existsSync(prefix), 'uninstall removed the root install created');
  } finally {
    await lab.cleanup();
  }
});
