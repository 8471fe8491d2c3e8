import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRtNetlink } from 'netlink';
import { inNetnsSync, NetnsNotFoundError } from '../lib/netns';
import { Lab, isRoot, NEEDS_ROOT } from './helpers/lab';

test('a netlink socket opened through inNetnsSync sees the target namespace', { skip: !isRoot && NEEDS_ROOT }, async () => {
  const lab = new Lab();
  try {
    const a = lab.netns('a');
    const b = lab.netns('b');
    lab.veth(a, 'left', '10.250.0.1/30', b, 'right', '10.250.0.2/30');
    const sock = inNetnsSync(a.path, () => createRtNetlink());
    try {
      const names = (await sock.getLinks()).map((l) => l.attrs.ifname).sort();
      assert.deepEqual(names, ['left', 'lo']);
    } finally {
      sock.socket.close();
    }
    // And we came back home: the machine's namespace has no `left`.
    const home = createRtNetlink();
    try {
      assert.ok(!(await home.getLinks()).some((l) => l.attrs.ifname === 'left'));
    } finally {
      home.socket.close();
    }
  } finally {
    await lab.cleanup();
  }
});

test('a missing namespace path is a typed error', { skip: !isRoot && NEEDS_ROOT }, () => {
  assert.throws(() => inNetnsSync('/var/run/netns/does-not-exist-mw', () => 1), NetnsNotFoundError);
});
