/**
 * Sidecar benchmark: wrk against a backend directly, through haproxy (round
 * robin over the same backends) and through the meshwork sidecar (all features
 * on: routes, split, retries, breaker, outlier detection, pool limits,
 * timeout, metrics), in one run. The proxy under test is pinned to core 0;
 * wrk, the paced client and the backends (haproxy serving a fixed reply, so
 * they are never the bottleneck) to core 1. Prints req/s, latency
 * percentiles, proxy RSS and ratios, then the p99 added at a paced 1,000 req/s.
 *
 *   node dist/bench/sidecar.js [seconds=10] [connections=50]
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

const SECONDS = Number(process.argv[2] ?? 10);
const CONNS = Number(process.argv[3] ?? 50);
const ROOT = path.resolve(__dirname, '..', '..');
const BACKENDS = ['127.0.0.2', '127.0.0.3', '127.0.0.4'];
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mw-bench-'));
const procs: ChildProcess[] = [];

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => { const p = (s.address() as net.AddressInfo).port; s.close(() => resolve(p)); });
  });
}

function start(cmd: string, args: string[], core: number): ChildProcess {
  const p = spawn('taskset', ['-c', String(core), cmd, ...args], { stdio: ['ignore', 'ignore', 'inherit'] });
  procs.push(p);
  return p;
}

async function waitHttp(port: number, host: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise<boolean>((r) => {
      const req = http.get({ host: '127.0.0.1', port, headers: { host }, agent: false }, (res) => { res.resume(); r(res.statusCode === 200); });
      req.on('error', () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing answering on ${port}`);
}

function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

/** wrk's "Requests/sec" line. */
const rpsOf = (wrkOut: string): number => Number(/Requests\/sec:\s+([\d.]+)/.exec(wrkOut)?.[1] ?? 0);

interface WrkResult { rps: number; p50: number; p75: number; p90: number; p99: number }

function ms(v: string, unit: string): number {
  return Number(v) * ({ us: 0.001, ms: 1, s: 1000 } as Record<string, number>)[unit];
}

function wrk(port: number, host = '127.0.0.1', script?: string): WrkResult {
  const r = spawnSync('taskset', ['-c', '1', 'wrk', '-t1', `-c${CONNS}`, `-d${SECONDS}s`, '--latency', ...(script ? ['-s', script] : []), '-H', 'Host: reviews:9080', `http://${host}:${port}/`], { encoding: 'utf8' });
  const out = r.stdout;
  const rps = rpsOf(out);
  const pct = (p: string) => { const m = new RegExp(`\\s${p}%\\s+([\\d.]+)(us|ms|s)`).exec(out); return m ? ms(m[1], m[2]) : NaN; };
  const errs = /Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1];
  if (errs) process.stdout.write(`  (warning: ${errs} non-2xx responses)\n`);
  return { rps, p50: pct('50'), p75: pct('75'), p90: pct('90'), p99: pct('99') };
}

/**
 * About 1,000 req/s: wrk on core 1 (never the proxy's core), 10 connections,
 * each waiting an exponentially distributed think time (mean 10 ms) between a
 * response and its next request, so arrivals do not come in lockstep bursts.
 * Percentiles come from wrk's microsecond histogram (printed by the script).
 */
function paced(port: number, host = '127.0.0.1'): { p50: number; p99: number; p999: number; rps: number } {
  const script = path.join(tmp, 'pace.lua');
  fs.writeFileSync(script, [
    'math.randomseed(7)',
    'function delay() return -math.log(1 - math.random()) * 10 end',
    'function done(s, latency, r)',
    '  io.write(string.format("paced p50=%d p99=%d p999=%d\\n", latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))',
    'end',
  ].join('\n'));
  const r = spawnSync('taskset', ['-c', '1', 'wrk', '-t1', '-c10', `-d${SECONDS}s`, '-s', script, '-H', 'Host: reviews:9080', `http://${host}:${port}/`], { encoding: 'utf8' });
  const m = /paced p50=(\d+) p99=(\d+) p999=(\d+)/.exec(r.stdout);
  const us = (i: number) => (m ? Number(m[i]) / 1000 : NaN);
  return { p50: us(1), p99: us(2), p999: us(3), rps: rpsOf(r.stdout) };
}

function haproxyConfig(listen: string, body: string): string {
  return `global\n  maxconn 4000\n  nbthread 1\ndefaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n  option http-keep-alive\n${body.replace('LISTEN', listen)}`;
}

async function main(): Promise<void> {
  const bport = await freePort();
  // Backends: one haproxy answering 200 on three addresses, on core 1.
  fs.writeFileSync(path.join(tmp, 'backend.cfg'), haproxyConfig('', `frontend be\n${BACKENDS.map((a) => `  bind ${a}:${bport}\n`).join('')}  http-request return status 200 content-type text/plain string "ok"\n`));
  start('haproxy', ['-f', path.join(tmp, 'backend.cfg')], 1);
  await waitHttp(bport, 'x').catch(() => {});
  // haproxy as the proxy under test: round robin over the same backends, pooled connections.
  const hport = await freePort();
  fs.writeFileSync(path.join(tmp, 'proxy.cfg'), haproxyConfig('', `frontend fe\n  bind 127.0.0.1:${hport}\n  default_backend pool\nbackend pool\n  balance roundrobin\n  http-reuse always\n${BACKENDS.map((a, i) => `  server s${i} ${a}:${bport}\n`).join('')}`));
  const hap = start('haproxy', ['-f', path.join(tmp, 'proxy.cfg')], 0);
  // The sidecar, all features on.
  const sport = await freePort();
  const aport = await freePort();
  const file = path.join(tmp, 'policies.yaml');
  const endpoints = path.join(tmp, 'endpoints.json');
  fs.writeFileSync(file, `apiVersion: meshwork.dev/v1
kind: Service
metadata: { name: reviews }
spec:
  selector: { app: reviews }
  ports: [{ name: http, port: 9080, targetPort: ${bport} }]
---
apiVersion: meshwork.dev/v1
kind: TrafficPolicy
metadata: { name: reviews }
spec:
  service: reviews
  subsets:
    - { name: v1, labels: { version: v1 } }
    - { name: v2, labels: { version: v2 } }
  loadBalancer: { simple: ROUND_ROBIN }
  connectionPool: { maxConnections: 10000, maxPendingRequests: 10000 }
  circuitBreaker: { errorThresholdPercentage: 50, volumeThreshold: 20, rollingCountTimeout: 10s, resetTimeout: 5s }
  outlierDetection: { consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s, maxEjectionPercent: 50 }
  retries: { attempts: 2, perTryTimeout: 5s, retryOn: [connect-failure, reset, 5xx], budget: { percent: 20, minRetriesPerSecond: 10 } }
  timeout: 10s
  routes:
    - name: testers
      matches: [{ headers: [{ name: x-user, exact: tester }] }]
      backends: [{ subset: v2 }]
    - name: canary
      backends: [{ subset: v1, weight: 67 }, { subset: v2, weight: 33 }]
`);
  fs.writeFileSync(endpoints, JSON.stringify(BACKENDS.map((a, i) => ({ pod: `b${i}`, ips: [a], labels: { app: 'reviews', version: i < 2 ? 'v1' : 'v2' } }))));
  const side = start(process.execPath, [path.join(ROOT, 'dist', 'cli', 'main.js'), 'sidecar', '--policies', file, '--endpoints', endpoints, '--gid', '0',
    '--outbound-port', String(sport), '--inbound-port', String(await freePort()), '--admin-port', String(aport), '--admin-host', '127.0.0.1'], 0);
  await waitHttp(hport, 'reviews:9080');
  await waitHttp(sport, 'reviews:9080');

  // Warm-up (JIT, pools), then measure.
  spawnSync('taskset', ['-c', '1', 'wrk', '-t1', `-c${CONNS}`, '-d2s', '-H', 'Host: reviews:9080', `http://127.0.0.1:${sport}/`]);
  spawnSync('taskset', ['-c', '1', 'wrk', '-t1', `-c${CONNS}`, '-d2s', '-H', 'Host: reviews:9080', `http://127.0.0.1:${hport}/`]);
  const results: Record<string, WrkResult & { rssMb?: number }> = {};
  results.direct = wrk(bport, BACKENDS[0]);
  results.haproxy = { ...wrk(hport), rssMb: rssKb(hap.pid!) / 1024 };
  results.meshwork = { ...wrk(sport), rssMb: rssKb(side.pid!) / 1024 };
  // wrk repeats one request; the sidecar reuses the parse of a repeated head. Every request
  // with its own path shows the figure without that (responses still repeat, as real ones do).
  const vary = path.join(tmp, 'vary.lua');
  fs.writeFileSync(vary, 'local n = 0\nrequest = function()\n  n = n + 1\n  return wrk.format(nil, "/item/" .. n)\nend\n');
  results['haproxy*'] = { ...wrk(hport, '127.0.0.1', vary), rssMb: rssKb(hap.pid!) / 1024 };
  results['meshwork*'] = { ...wrk(sport, '127.0.0.1', vary), rssMb: rssKb(side.pid!) / 1024 };
  process.stdout.write(`\nwrk -t1 -c${CONNS} -d${SECONDS}s; proxy pinned to core 0, wrk and backends to core 1\n`);
  process.stdout.write(`${'target'.padEnd(10)} ${'req/s'.padStart(9)} ${'p50 ms'.padStart(8)} ${'p75 ms'.padStart(8)} ${'p90 ms'.padStart(8)} ${'p99 ms'.padStart(8)} ${'RSS MB'.padStart(8)}\n`);
  for (const [k, r] of Object.entries(results)) {
    process.stdout.write(`${k.padEnd(10)} ${r.rps.toFixed(0).padStart(9)} ${r.p50.toFixed(2).padStart(8)} ${r.p75.toFixed(2).padStart(8)} ${r.p90.toFixed(2).padStart(8)} ${r.p99.toFixed(2).padStart(8)} ${(r.rssMb?.toFixed(1) ?? '-').padStart(8)}\n`);
  }
  process.stdout.write(`ratio meshwork/haproxy req/s: ${(results.meshwork.rps / results.haproxy.rps).toFixed(3)}\n`);
  process.stdout.write(`ratio with every request to its own path (*): ${(results['meshwork*'].rps / results['haproxy*'].rps).toFixed(3)}\n`);

  const pd = paced(bport, BACKENDS[0]);
  const ph = paced(hport);
  const pm = paced(sport);
  const f = (x: { p50: number; p99: number; p999: number; rps: number }) => `p50 ${x.p50.toFixed(3)} ms, p99 ${x.p99.toFixed(3)} ms, p99.9 ${x.p999.toFixed(3)} ms (${x.rps.toFixed(0)} req/s)`;
  process.stdout.write(`\npaced ~1000 req/s for ${SECONDS}s (wrk, 10 connections, exponential think time of mean 10 ms, core 1):\n`);
  process.stdout.write(`  direct   ${f(pd)}\n  haproxy  ${f(ph)}\n  meshwork ${f(pm)}\n`);
  process.stdout.write(`added p99: haproxy ${(ph.p99 - pd.p99).toFixed(3)} ms, meshwork ${(pm.p99 - pd.p99).toFixed(3)} ms (goal < 1 ms)\n`);
}

main().catch((err) => { process.stderr.write(`bench failed: ${err instanceof Error ? err.message : String(err)}\n`); process.exitCode = 1; })
  .finally(() => {
    for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
    fs.rmSync(tmp, { recursive: true, force: true });
  });
