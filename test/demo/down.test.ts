/**
 * Two demos at once do not collide; a SIGKILLed demo's leftovers (namespaces,
 * processes inside them, /etc/netns entries, its run directory) are removed
 * by `meshwork demo --down <id>` without touching the other run; SIGTERM
 * stops and removes a demo like Ctrl-C.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { eventually, isRoot, NEEDS_ROOT, repoRoot, run, sh } from '../helpers/lab';
import { leftovers, machineState, nothing, rootChanges, startDemo, type DemoEvent } from './harness';

const MESHWORK = path.join(repoRoot, 'bin', 'meshwork');
const servingFrontend = (e: DemoEvent) => e.type === 'stats' && (e.rows ?? []).some((r: { service: string; rps: number; successPercent: number | null }) => r.service === 'frontend' && r.rps > 0 && r.successPercent === 100);

test('two demos at once; --down after SIGKILL removes only that run; SIGTERM cleans up', { skip: !isRoot && NEEDS_ROOT, timeout: 300_000 }, async () => {
  const before = machineState();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mwdemo-down-'));
  const args = ['--no-story', '--hosts', '1', '--rate', '3'];
  const a = startDemo(dir, 'a', args);
  const b = startDemo(dir, 'b', args);
  const ids: string[] = [];
  try {
    const [ra, rb] = await Promise.all([
      a.waitFor((e) => e.type === 'run', 30_000, 'run a'),
      b.waitFor((e) => e.type === 'run', 30_000, 'run b'),
    ]);
    ids.push(ra.id, rb.id);
    assert.notEqual(ra.id, rb.id);
    const [readyA, readyB] = await Promise.all([
      a.waitFor((e) => e.type === 'ready', 180_000, 'demo a ready'),
      b.waitFor((e) => e.type === 'ready', 180_000, 'demo b ready'),
    ]);
    assert.notEqual(readyA.dashboard, readyB.dashboard);
    // Both serve their users and their dashboards, side by side.
    await Promise.all([a.waitFor(servingFrontend, 60_000, 'traffic in a'), b.waitFor(servingFrontend, 60_000, 'traffic in b')]);
    for (const url of [readyA.dashboard, readyB.dashboard]) assert.equal((await fetch(url)).status, 200);
    assert.ok(a.events().every((e) => e.type !== 'say' || e.step !== 'canary-promoted'), '--no-story keeps the split steady');

    // A crash: the demo process dies, everything it made stays.
    a.child.kill('SIGKILL');
    await a.exited();
    const left = leftovers(ra.id);
    assert.ok(left.namespaces.length >= 8, `namespaces of the killed run remain: ${left.namespaces}`);
    assert.ok(left.processes.length > 0, 'processes of the killed run remain');
    assert.deepEqual(left.runDirs, [ra.id]);

    const down = await run(process.execPath, [MESHWORK, 'demo', '--down', ra.id], { timeoutMs: 120_000 });
    assert.equal(down.code, 0, down.stderr + down.stdout);
    assert.match(down.stdout, new RegExp(`demo ${ra.id} removed`));
    assert.deepEqual(leftovers(ra.id), nothing);

    // The other run is untouched and still serving.
    assert.ok(leftovers(rb.id).namespaces.length >= 8);
    const seen = b.events().length;
    await eventually(() => b.events().slice(seen).some(servingFrontend), 30_000, 'b still serving after a was removed');

    b.child.kill('SIGTERM');
    const exit = await b.exited();
    assert.equal(exit.code, 0, b.output().slice(-2000));
    assert.deepEqual(b.events().find((e) => e.type === 'removed')?.problems, []);
    assert.deepEqual(leftovers(rb.id), nothing);
  } finally {
    for (const d of [a, b]) if (d.child.exitCode === null && d.child.signalCode === null) d.child.kill('SIGKILL');
    for (const id of ids) sh(process.execPath, [MESHWORK, 'demo', '--down', id], { allowFail: true, timeoutMs: 120_000 });
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const after = machineState();
  for (const id of ids) assert.deepEqual(leftovers(id, after), nothing);
  assert.deepEqual(rootChanges(before, after), { links: [], tables: [] });
});
