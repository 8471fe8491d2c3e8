/**
 * `meshwork dns serve --workers 2`: worker processes share the sockets, follow
 * the store through the primary, and their metrics add up on the primary.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { Lab, eventually, isRoot, NEEDS_ROOT, repoRoot } from '../helpers/lab';
import { openStore } from '../../store/open';
import { keys } from '../../store/keys';
import { svc } from './fixtures';

test('worker processes answer, follow the store and report metrics', { skip: !isRoot && NEEDS_ROOT }, async () => {
  const lab = new Lab('mwdw');
  try {
    const ns = lab.netns('dns');
    const dir = path.join(lab.tmp, 'store');
    const store = await openStore(`file:${dir}`);
    lab.onCleanup(() => store.close());
    await store.put(keys.policy('Service', 'a', 'one'), JSON.stringify(svc('one', 'a', { clusterIP: '10.96.0.1' })));
    const server = lab.spawnIn(ns, process.execPath, [path.join(repoRoot, 'dist', 'cli', 'main.js'), 'dns', 'serve', '--listen', '127.0.0.1:53',
      '--store', `file:${dir}`, '--no-upstreams', '--workers', '2', '--metrics', '127.0.0.1:9153']);
    let log = '';
    server.stderr?.on('data', (d) => (log += d));
    const dig = (name: string) => ns.sh('dig', ['@127.0.0.1', '+short', '+tries=1', '+timeout=1', name], { allowFail: true }).stdout.trim();
    await eventually(() => dig('one.a.svc.cluster.local') === '10.96.0.1', 20_000, `workers to answer (${log})`);
    await store.put(keys.policy('Service', 'a', 'two'), JSON.stringify(svc('two', 'a', { clusterIP: '10.96.0.2' })));
    // Several queries from different source ports: whichever worker takes each, all see the new service.
    await eventually(() => [1, 2, 3, 4, 5, 6].every(() => dig('two.a.svc.cluster.local') === '10.96.0.2'), 3000, 'every worker to see the change');
    const pids = ns.sh('ip', ['netns', 'pids', ns.name]).stdout.split(/\s+/).filter(Boolean);
    assert.ok(pids.length >= 3, `primary and two workers running (${pids.join(' ')})`);
    const scrape = () => ns.sh(process.execPath, ['-e', "require('http').get('http://127.0.0.1:9153/metrics', (r) => r.pipe(process.stdout))"]).stdout;
    const total = () => [...scrape().matchAll(/^meshwork_dns_queries_total\{type="A",rcode="NOERROR"\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
    await eventually(() => total() >= 7, 5000, 'worker tallies to reach the primary');
  } finally {
    await lab.cleanup();
  }
});
