/**
 * DNS benchmark: dnsperf against `meshwork dns serve` and against dnsmasq
 * answering the same names, in the same run, alternating which goes first,
 * both servers pinned to the same CPUs. Runs in a private network namespace
 * (servers on its loopback). Prints queries/s, latency, and the ratio.
 *
 *   node dist/bench/dns.js [--rounds 3] [--seconds 10] [--names 200] [--workers auto] [--cpus 0-1] [--clients 8]
 */
import * as path from 'node:path';
import * as os from 'node:os';
import * as fs from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import { Lab, eventually, repoRoot, sh, type Netns } from '../test/helpers/lab';
import { openStore } from '../store/open';
import { keys } from '../store/keys';

interface Result { qps: number; avgMs: number; maxMs: number; lost: number; cpuUsPerQuery: number }

/** CPU seconds (user + system) used so far by every process of `comm` in the namespace. */
function cpuSeconds(ns: Netns, comm: string): number {
  let ticks = 0;
  for (const pid of ns.name ? sh('ip', ['netns', 'pids', ns.name]).stdout.split(/\s+/).filter(Boolean) : []) {
    try {
      if (fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() !== comm) continue;
      const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
      ticks += Number(f[11]) + Number(f[12]);
    } catch { /* exited */ }
  }
  return ticks / 100; // USER_HZ
}

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
}

function parsePerf(out: string): Result {
  const num = (re: RegExp) => Number(re.exec(out)?.[1] ?? NaN);
  return {
    qps: num(/Queries per second:\s+([\d.]+)/),
    avgMs: num(/Average Latency \(s\):\s+([\d.]+)/) * 1000,
    maxMs: num(/Average Latency \(s\):.*max ([\d.]+)\)/) * 1000,
    lost: num(/Queries lost:\s+(\d+)/),
    cpuUsPerQuery: NaN,
  };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main(): Promise<void> {
  const rounds = Number(arg('rounds', '3'));
  const seconds = Number(arg('seconds', '10'));
  const names = Number(arg('names', '200'));
  const workers = arg('workers', 'auto');
  const cpus = arg('cpus', `0-${os.availableParallelism() - 1}`);
  const clients = arg('clients', '8');
  const lab = new Lab('mwdb');
  try {
    const ns: Netns = lab.netns('bench');
    const storeDir = path.join(lab.tmp, 'store');
    const store = await openStore(`file:${storeDir}`);
    const ip = (i: number) => `10.96.${Math.floor(i / 250)}.${(i % 250) + 1}`;
    const hostRecords: string[] = [];
    const queries: string[] = [];
    for (let i = 0; i < names; i++) {
      const name = `svc${i}.bench.svc.cluster.local`;
      await store.put(keys.policy('Service', 'bench', `svc${i}`), JSON.stringify({ kind: 'Service', metadata: { name: `svc${i}`, namespace: 'bench', labels: {} }, spec: { type: 'ClusterIP', selector: {}, ports: [], clusterIP: ip(i) } }));
      hostRecords.push(`--host-record=${name},${ip(i)}`);
      queries.push(`${name} A`);
    }
    await store.close();
    const qfile = path.join(lab.tmp, 'queries.txt');
    fs.writeFileSync(qfile, queries.join('\n') + '\n');

    const ours: ChildProcess = lab.spawnIn(ns, 'taskset', ['-c', cpus, process.execPath, path.join(repoRoot, 'dist', 'cli', 'main.js'), 'dns', 'serve',
      '--listen', '127.0.0.1:53', '--store', `file:${storeDir}`, '--no-upstreams', '--workers', workers]);
    lab.spawnIn(ns, 'taskset', ['-c', cpus, 'dnsmasq', '-k', '-C', '/dev/null', '--no-resolv', '--no-hosts', '--listen-address=127.0.0.1', '--port=5353',
      '--bind-interfaces', '--pid-file=', '--user=root', '--local-ttl=5', '--cache-size=10000', ...hostRecords]);
    let log = '';
    ours.stderr?.on('data', (d) => (log += d));
    for (const port of ['53', '5353']) {
      await eventually(() => ns.sh('dig', ['@127.0.0.1', '-p', port, '+short', '+tries=1', '+timeout=1', `svc${names - 1}.bench.svc.cluster.local`], { allowFail: true }).stdout.trim() === ip(names - 1), 20_000, `server on port ${port} (${log})`);
    }
    const perf = async (port: string): Promise<Result> => {
      const comm = port === '53' ? 'node' : 'dnsmasq';
      const cpu0 = cpuSeconds(ns, comm);
      const r = await ns.run('dnsperf', ['-s', '127.0.0.1', '-p', port, '-d', qfile, '-l', String(seconds), '-c', clients, '-q', '200'], { timeoutMs: (seconds + 30) * 1000 });
      const res = parsePerf(r.stdout);
      // Server CPU per answered query: less sensitive than q/s to other load on the machine.
      res.cpuUsPerQuery = ((cpuSeconds(ns, comm) - cpu0) * 1e6) / (res.qps * seconds);
      return res;
    };
    // Warm both (JIT, caches) before measuring.
    await perf('53');
    await perf('5353');
    const rows: Record<'meshwork' | 'dnsmasq', Result[]> = { meshwork: [], dnsmasq: [] };
    for (let r = 0; r < rounds; r++) {
      const order: Array<['meshwork' | 'dnsmasq', string]> = r % 2 ? [['dnsmasq', '5353'], ['meshwork', '53']] : [['meshwork', '53'], ['dnsmasq', '5353']];
      for (const [who, port] of order) {
        const res = await perf(port);
        rows[who].push(res);
        console.log(`round ${r + 1} ${who.padEnd(8)} ${res.qps.toFixed(0).padStart(8)} q/s  avg ${res.avgMs.toFixed(3)} ms  max ${res.maxMs.toFixed(1)} ms  lost ${res.lost}  server CPU ${res.cpuUsPerQuery.toFixed(1)} us/query`);
      }
    }
    const m = median(rows.meshwork.map((x) => x.qps));
    const d = median(rows.dnsmasq.map((x) => x.qps));
    console.log(`\n${names} names, ${rounds} rounds of ${seconds}s, dnsperf -c ${clients}, servers pinned to CPUs ${cpus}, meshwork workers: ${workers}`);
    console.log(`meshwork median ${m.toFixed(0)} q/s (avg latency ${median(rows.meshwork.map((x) => x.avgMs)).toFixed(3)} ms)`);
    console.log(`dnsmasq  median ${d.toFixed(0)} q/s (avg latency ${median(rows.dnsmasq.map((x) => x.avgMs)).toFixed(3)} ms)`);
    const cm = median(rows.meshwork.map((x) => x.cpuUsPerQuery));
    const cd = median(rows.dnsmasq.map((x) => x.cpuUsPerQuery));
    console.log(`server CPU per query: meshwork ${cm.toFixed(1)} us, dnsmasq ${cd.toFixed(1)} us (ratio dnsmasq/meshwork ${(cd / cm).toFixed(2)})`);
    console.log(`load average during the run: ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}`);
    console.log(`ratio meshwork/dnsmasq: ${(m / d).toFixed(2)}`);
  } finally {
    await lab.cleanup();
  }
}

main().catch((e) => { console.error(e); process.exitCode = 1; });
