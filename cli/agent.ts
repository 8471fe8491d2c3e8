/**
 * `meshwork agent`: runs the node agent in this network namespace until
 * SIGTERM/SIGINT. Stopping keeps this node's state for a restart; with
 * `--leave-on-stop` stopping decommissions the node (see agent/agent.ts).
 */
import type { Command } from 'commander';

interface AgentFlags {
  node?: string;
  underlay?: string;
  store: string;
  network: string;
  clusterCidr: string[];
  subnetLen?: string;
  subnetLen6?: string;
  vni?: string;
  vxlanPort?: string;
  vxlanName?: string;
  bridge?: string;
  mtu?: string;
  vxlanUdpCsum?: boolean;
  ipMasq?: boolean;
  leaseTtl?: string;
  resync?: string;
  stateDir?: string;
  metrics?: string;
  leaveOnStop?: boolean;
  cniSocket?: string;
  dns?: string;
  dnsZone?: string;
  dnsUpstream: string[];
  serviceVips?: boolean;
  debug?: boolean;
}

const collect = (v: string, prev: string[]) => [...prev, ...v.split(',').map((s) => s.trim()).filter(Boolean)];

export function register(program: Command): void {
  program
    .command('agent')
    .description('run the node agent: register this host, lease its pod subnet, keep overlay peers converged')
    .requiredOption('--node <name>', 'this node\'s name in the cluster')
    .requiredOption('--underlay <addr>', 'this host\'s underlay IP address (VXLAN packets leave from it)')
    .option('--store <spec>', 'cluster store: file:/dir or etcd:http://a:2379,...', 'file:/var/lib/meshwork')
    .option('--network <name>', 'overlay network name (as in the CNI config)', 'overlay')
    .option('--cluster-cidr <cidr>', 'cluster CIDR (once per family; repeat or comma-separate)', collect, [])
    .option('--subnet-len <n>', 'IPv4 pod subnet prefix length (default 24)')
    .option('--subnet-len6 <n>', 'IPv6 pod subnet prefix length (default 64)')
    .option('--vni <n>', 'VXLAN network identifier (default 1)')
    .option('--vxlan-port <n>', 'VXLAN UDP port (default 8472)')
    .option('--vxlan-name <ifname>', 'VXLAN device name (default mw.vx<vni>)')
    .option('--bridge <ifname>', 'pod bridge name (default mw.br0)')
    .option('--mtu <n>', 'overlay MTU (default: underlay MTU - 50)')
    .option('--vxlan-udp-csum', 'compute the outer UDP checksum on an IPv4 underlay (default off, as RFC 7348 allows)')
    .option('--no-ip-masq', 'do not masquerade pods\' traffic to destinations outside the cluster CIDRs (on by default, as flannel --ip-masq)')
    .option('--lease-ttl <s>', 'node lease TTL in seconds (default 15)')
    .option('--resync <s>', 'full resync period in seconds (default 30)')
    .option('--state-dir <dir>', 'node-local state directory (default /run/meshwork)')
    .option('--metrics <addr:port>', 'serve /metrics and /healthz here')
    .option('--leave-on-stop', 'decommission on SIGTERM: revoke the lease, remove the VTEP')
    .option('--cni-socket <path>', 'also serve CNI calls on this unix socket (the resident CNI daemon)')
    .option('--dns <addr[:port]>', 'also serve cluster DNS here (port 53 by default)')
    .option('--dns-zone <zone>', 'the cluster zone that DNS answers (default cluster.local; as clusterDNS.zone in the CNI config)')
    .option('--dns-upstream <ip[:port]>', 'where DNS forwards other names (repeatable; default: /etc/resolv.conf without loopback)', collect, [])
    .option('--service-vips', 'program nftables so Service cluster IPs reach their ready endpoints')
    .option('--debug', 'debug logging')
    .action(async (flags: AgentFlags) => runAgent(flags));
}

async function runAgent(f: AgentFlags): Promise<void> {
  // Loaded here so other subcommands never pay for netlink, prom-client or the store clients.
  const { agentConfig } = await import('../agent/config');
  const { createAgent } = await import('../agent/agent');
  const { createAgentMetrics } = await import('../agent/metrics');
  const { createAgentHttp, parseListen } = await import('../agent/http');
  const { jsonLogger } = await import('../agent/logger');
  const { openNetlink } = await import('../cni/netlink/socket');
  const { openStore } = await import('../store/open');
  const { MeshworkError, withContext } = await import('../lib/errors');
  const { Registry, collectDefaultMetrics } = await import('prom-client');
  const { startHosted, dnsSettings } = await import('../agent/hosted');
  // Checked before anything starts: a bad DNS flag must not leave a half-started agent behind.
  const dns = f.dns ? await dnsSettings({ dns: f.dns, dnsZone: f.dnsZone, dnsUpstreams: f.dnsUpstream }) : undefined;
  if (!f.dns && (f.dnsZone !== undefined || f.dnsUpstream.length)) throw new MeshworkError('EUSAGE', '--dns-zone and --dns-upstream need --dns');
  const { createServiceVips, removeVipTable } = await import('../agent/service-vips');

  const cfg = agentConfig({
    node: f.node, underlay: f.underlay, network: f.network,
    clusterCidrs: f.clusterCidr.length ? f.clusterCidr : undefined,
    subnetLen: f.subnetLen, subnetLen6: f.subnetLen6,
    // Flag text goes in as is: agentConfig checks it and names the flag ("got \"abc\"", not "got null").
    vni: f.vni, port: f.vxlanPort,
    vxlanName: f.vxlanName, bridgeName: f.bridge, mtu: f.mtu, udpCsum: !!f.vxlanUdpCsum, ipMasq: f.ipMasq !== false,
    leaseTtlSeconds: f.leaseTtl,
    resyncSeconds: f.resync,
    stateDir: f.stateDir,
    dns: dns?.listen.address,
  });
  const listen = f.metrics ? parseListen(f.metrics) : undefined;
  const log = jsonLogger('agent', process.stderr, !!f.debug);
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'meshwork_agent_process_' });
  const metrics = createAgentMetrics(registry);

  const store = await openStore(f.store);
  const nl = openNetlink();
  const agent = createAgent(cfg, { store, netlink: nl, logger: log, metrics });
  const web = createAgentHttp({
    registry,
    health: () => { const s = agent.status(); return { ok: s.registered && !s.lastError, detail: { ...s } }; },
  });

  let hosted: Awaited<ReturnType<typeof startHosted>> | undefined;
  const vips = f.serviceVips
    ? createServiceVips({ store, logger: log, registry })
    : undefined;
  // What every way out (signal or failed start-up) closes last.
  const closeBase = async () => {
    await web.stop().catch(() => {});
    await store.close().catch(() => {});
    nl.close();
  };
  const done = new Promise<void>((resolve) => {
    let stopping = false;
    const onSignal = (sig: string) => {
      if (stopping) return;
      stopping = true;
      log.info('stopping', { signal: sig, leave: !!f.leaveOnStop });
      (async () => {
        await hosted?.stop();
        // A restart leaves the VIP table in force (new connections keep working); only leaving removes it.
        await vips?.stop({ keepTable: !f.leaveOnStop });
        // Leaving removes a VIP table an earlier run with --service-vips left, even if this one ran without.
        if (!vips && f.leaveOnStop) await removeVipTable().catch((err) => log.error('removing the VIP table failed', { err }));
        await agent.stop({ leave: !!f.leaveOnStop }).catch((err) => log.error('stop failed', { err }));
        await closeBase();
      })().finally(resolve);
    };
    process.once('SIGTERM', () => onSignal('SIGTERM'));
    process.once('SIGINT', () => onSignal('SIGINT'));
  });

  // The metrics port is bound first: a port in use is a start-up error, not an agent running unobserved.
  if (listen) {
    try {
      const addr = await web.start(listen.host, listen.port);
      log.info('metrics listening', { address: addr.address, port: addr.port });
    } catch (err) {
      await closeBase();
      throw withContext(`--metrics ${f.metrics}`, err);
    }
  }
  try {
    await agent.start();
  } catch (err) {
    await closeBase();
    throw err;
  }
  try {
    hosted = await startHosted({ store, registry, logger: log, cniSocket: f.cniSocket, dns });
    await vips?.start();
  } catch (err) {
    await hosted?.stop();
    await vips?.stop();
    await agent.stop();
    await closeBase();
    throw err;
  }
  log.info('agent started', { node: cfg.node, network: cfg.network, subnets: agent.status().subnets });
  await done;
}
