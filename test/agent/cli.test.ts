import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Lab, eventually, isRoot, NEEDS_ROOT, repoRoot, sh, type Netns } from '../helpers/lab';
import { openStore } from '../../store/open';
import { keys } from '../../store/keys';

const MESHWORK = path.join(repoRoot, 'bin', 'meshwork');

/** A host namespace whose eth0 (`<net>.1/24`) is wired to a neighbour (`<net>.2`): the agent's underlay. */
function agentHost(lab: Lab, net: string): Netns {
  const h = lab.netns('h');
  lab.veth(h, 'eth0', `${net}.1/24`, lab.netns('o'), 'eth0', `${net}.2/24`);
  return h;
}

test('meshwork agent: metrics, health, hosted DNS and CNI daemon; SIGTERM keeps the node, --leave-on-stop removes it', { skip: !isRoot && NEEDS_ROOT, timeout: 60_000 }, async () => {
  const lab = new Lab();
  try {
    const h = agentHost(lab, '192.168.92');
    const storeSpec = `file:${lab.tmp}/store`;
    const sock = path.join(lab.tmp, 'cni.sock');
    const start = (extra: string[]) => {
      const child = lab.spawnIn(h, process.execPath, [MESHWORK, 'agent', '--node', 'n1', '--underlay', '192.168.92.1', '--store', storeSpec,
        '--network', 'mesh', '--cluster-cidr', '10.98.0.0/16', '--state-dir', path.join(lab.tmp, 'state'), '--lease-ttl', '30',
        '--metrics', '127.0.0.1:0', ...extra]);
      let log = '';
      child.stderr!.on('data', (d) => (log += d));
      return { child, log: () => log };
    };
    // Upstream: nothing listens on 127.0.0.1:9 in this namespace, so forwarded names fail at once.
    const a = start(['--dns', '127.0.0.1:5353', '--dns-zone', 'Cluster.Test.', '--dns-upstream', '127.0.0.1:9', '--cni-socket', sock, '--service-vips']);
    await eventually(() => a.log().includes('"agent started"'), 20_000, 'agent start');
    const port = /"metrics listening".*"port":(\d+)/.exec(a.log())![1];
    const metrics = h.sh('curl', ['-sf', `http://127.0.0.1:${port}/metrics`]).stdout;
    assert.match(metrics, /^meshwork_agent_reconciles_total \d+/m);
    assert.match(metrics, /^meshwork_agent_nodes 1$/m);
    assert.match(metrics, /^meshwork_dns_/m, 'DNS metrics share the registry');
    const health = JSON.parse(h.sh('curl', ['-sf', `http://127.0.0.1:${port}/healthz`]).stdout);
    assert.equal(health.ok, true);
    assert.equal(health.subnets.length, 1);
    const dig = (name: string, type = 'A') => h.sh('dig', ['+time=2', '+tries=1', '@127.0.0.1', '-p', '5353', name, type], { allowFail: true }).stdout;
    assert.match(dig('nothing.default.svc.cluster.test'), /status: NXDOMAIN/);
    assert.match(dig('dns-version.cluster.test', 'TXT'), /"1\.1\.0"/, '--dns-zone sets the zone');
    assert.match(dig('nothing.default.svc.cluster.local'), /status: SERVFAIL/, 'other names go to --dns-upstream');
    assert.ok(fs.statSync(sock).isSocket());
    {
      const st = await openStore(storeSpec);
      try { assert.equal(JSON.parse((await st.get(keys.node('n1')))!.value).dns, '127.0.0.1', 'the node record names its DNS server'); } finally { await st.close(); }
    }

    // SIGTERM = restart semantics: clean exit, the node stays registered until its lease runs out.
    const exit = new Promise<number | null>((r) => a.child.once('exit', (c) => r(c)));
    a.child.kill('SIGTERM');
    assert.equal(await exit, 0);
    const store = await openStore(storeSpec);
    try {
      assert.ok(await store.get(keys.node('n1')), 'node record kept across a restart');
      assert.match(h.sh('nft', ['list', 'tables']).stdout, /inet meshwork-svc/, 'a restart leaves the VIP table in force');
      // Decommission: --leave-on-stop revokes the lease on SIGTERM.
      // This run has no --service-vips: leaving still removes the table the first run left.
      const b = start(['--leave-on-stop']);
      await eventually(() => b.log().includes('"agent started"'), 20_000, 'agent restart');
      const exitB = new Promise<number | null>((r) => b.child.once('exit', (c) => r(c)));
      b.child.kill('SIGTERM');
      assert.equal(await exitB, 0);
      assert.equal(await store.get(keys.node('n1')), undefined);
      assert.equal((await store.list(keys.subnets('mesh'))).items.length, 0);
      assert.doesNotMatch(h.ip('-o', 'link'), /mw\.vx1/);
      assert.doesNotMatch(h.sh('nft', ['list', 'tables']).stdout, /meshwork-/, 'leaving removes the VIP and egress tables');
    } finally {
      await store.close();
    }
  } finally {
    await lab.cleanup();
  }
});

test('meshwork agent: bad flags get one clear line, no stack trace', () => {
  const cases: Array<[string[], RegExp]> = [
    [['--node', 'n1', '--underlay', 'eth0'], /--underlay: expected this host's underlay IP address, got "eth0"/],
    [['--node', 'n1', '--underlay', '192.0.2.1', '--cluster-cidr', '10.1.2.0/16'], /--cluster-cidr: .*host bits set/],
    [['--node', 'n1', '--underlay', '192.0.2.1', '--metrics', 'localhost'], /--metrics: expected ADDR:PORT/],
    [['--node', 'n1', '--underlay', '192.0.2.1', '--store', 'zk:foo'], /unknown store kind "zk"/],
    [['--node', 'n1', '--underlay', '192.0.2.1', '--lease-ttl', 'abc'], /--lease-ttl: expected an integer from 1 to 3600, got "abc"/],
    [['--node', 'n1', '--underlay', '192.0.2.1', '--dns', '127.0.0.1', '--dns-zone', 'bad zone'], /--dns-zone: expected a domain name .*"bad zone"/],
    [['--node', 'n1', '--underlay', '192.0.2.1', '--dns', '127.0.0.1', '--dns-upstream', 'resolver.example'], /--dns-upstream: upstream "resolver.example": not an IP address/],
    [['--node', 'n1', '--underlay', '192.0.2.1', '--dns-upstream', '192.0.2.53'], /--dns-zone and --dns-upstream need --dns/],
    [['--node', 'n1', '--underlay', '192.0.2.1', '--vni', '1.5'], /--vni: expected an integer .*, got "1.5"/],
  ];
  for (const [args, re] of cases) {
    const r = sh(process.execPath, [MESHWORK, 'agent', ...args], { allowFail: true });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, re);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
  }
});

test('meshwork agent: a second agent for the same network on one host is refused before it touches the store; a killed one frees the host at once', { skip: !isRoot && NEEDS_ROOT, timeout: 60_000 }, async () => {
  const lab = new Lab();
  try {
    const h = agentHost(lab, '192.168.93');
    const storeSpec = `file:${lab.tmp}/store`;
    // Same node name and underlay: to the store, a twin looks exactly like a restart.
    const start = () => {
      const child = lab.spawnIn(h, process.execPath, [MESHWORK, 'agent', '--node', 'n1', '--underlay', '192.168.93.1', '--store', storeSpec,
        '--network', 'mesh', '--cluster-cidr', '10.99.0.0/16', '--state-dir', path.join(lab.tmp, 'state'), '--lease-ttl', '2', '--metrics', '127.0.0.1:0']);
      let log = '';
      child.stderr!.on('data', (d) => (log += d));
      const exit = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
      return { child, exit, log: () => log };
    };
    const a = start();
    await eventually(() => a.log().includes('"agent started"'), 20_000, 'agent start');
    const store = await openStore(storeSpec);
    try {
      const before = (await store.get(keys.node('n1')))!;
      const twin = start();
      const code = await Promise.race([twin.exit, new Promise((r) => setTimeout(() => r('still running'), 10_000))]);
      assert.equal(code, 1, `the twin must exit with an error: ${twin.log()}`);
      assert.match(twin.log(), new RegExp(`another meshwork agent \\(pid \\d+, node n1\\) already serves network mesh on this host`));
      assert.doesNotMatch(twin.log(), /\n\s+at |"node registered"/);
      // The running agent's registration is untouched, and stays so past the lease TTL.
      await new Promise((r) => setTimeout(r, 3000));
      const after = (await store.get(keys.node('n1')))!;
      assert.equal(after.modRevision, before.modRevision, 'the twin re-registered the node');
      assert.doesNotMatch(a.log(), /own node record deleted/);
      assert.equal(a.child.exitCode, null);

      // SIGKILL: the kernel frees the guard with the process, so a replacement starts at once.
      a.child.kill('SIGKILL');
      await a.exit;
      const b = start();
      await eventually(() => b.log().includes('"agent started"'), 20_000, `replacement start: ${b.log()}`);
      b.child.kill('SIGTERM');
      assert.equal(await b.exit, 0);
    } finally {
      await store.close();
    }
  } finally {
    await lab.cleanup();
  }
});

test('meshwork agent: a metrics port already in use stops start-up with an error naming --metrics', { skip: !isRoot && NEEDS_ROOT, timeout: 60_000 }, async () => {
  const lab = new Lab();
  try {
    const h = agentHost(lab, '192.168.93');
    // Something else holds the port in the host's namespace.
    const holder = lab.spawnIn(h, 'python3', ['-c', 'import socket,time\ns=socket.socket();s.bind(("127.0.0.1",9499));s.listen();print("up",flush=True);time.sleep(60)']);
    let up = '';
    holder.stdout!.on('data', (d) => (up += d));
    await eventually(() => up.includes('up'), 10_000, 'port holder');
    const r = await h.run(process.execPath, [MESHWORK, 'agent', '--node', 'n1', '--underlay', '192.168.93.1', '--store', `file:${lab.tmp}/store`,
      '--network', 'mesh', '--cluster-cidr', '10.98.0.0/16', '--state-dir', path.join(lab.tmp, 'state'), '--metrics', '127.0.0.1:9499'], { timeoutMs: 20_000 });
    assert.equal(r.code, 1, `agent must exit, not run unobserved: ${r.stderr}`);
    assert.match(r.stderr, /--metrics 127\.0\.0\.1:9499: .*EADDRINUSE/);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
    // Nothing was registered: the node never joined.
    const store = await openStore(`file:${lab.tmp}/store`);
    try { assert.equal(await store.get(keys.node('n1')), undefined); } finally { await store.close(); }
  } finally {
    await lab.cleanup();
  }
});
