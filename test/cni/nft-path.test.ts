/**
 * A runtime may run the plugin with a PATH without the sbin directories
 * (libcni passes its own environment): the plugin still finds `nft`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Lab, isRoot, NEEDS_ROOT } from '../helpers/lab';
import { bridgeConf, callPlugin } from './harness';

test('ADD and DEL with PATH=/usr/bin:/bin still program and remove the nft table', { skip: !isRoot && NEEDS_ROOT, timeout: 60_000 }, async () => {
  const lab = new Lab('mwnp');
  try {
    const host = lab.netns('host');
    const pod = lab.netns('pod');
    const conf = bridgeConf(lab, { name: `${lab.id}-p`, n: 1 });
    const env = { command: 'ADD', containerId: `${lab.id}-c`, netns: pod.path, ifname: 'eth0', path: '/usr/lib/cni', PATH: '/usr/bin:/bin' };
    const add = await callPlugin(host, env, conf);
    assert.equal(add.code, 0, add.stdout + add.stderr);
    assert.match(host.sh('nft', ['list', 'tables']).stdout, new RegExp(`meshwork-${lab.id}-p`));
    const del = await callPlugin(host, { ...env, command: 'DEL' }, conf);
    assert.equal(del.code, 0, del.stdout + del.stderr);
  } finally {
    await lab.cleanup();
  }
});
