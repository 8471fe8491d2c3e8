/** The bridge driver runs the driver compliance suite (dual stack). */
import * as path from 'node:path';
import { driverCompliance } from './driver-compliance';
import { subnets } from './harness';

driverCompliance('bridge', (lab) => {
  const s = subnets(lab, 7);
  return {
    host: lab.netns('host'),
    pods: [lab.netns('c0'), lab.netns('c1'), lab.netns('c2')],
    conf: {
      cniVersion: '1.1.0', name: `${lab.id}-dc`, type: 'meshwork-cni', driver: 'bridge', bridge: lab.link('br'),
      isGateway: true, ipMasq: true, stateDir: path.join(lab.tmp, 'state'),
      store: `file:${path.join(lab.tmp, 'store')}`,
      ipam: { type: 'meshwork', dataDir: path.join(lab.tmp, 'ipam'), ranges: [[{ subnet: s.v4 }], [{ subnet: s.v6 }]] },
    },
  };
});
