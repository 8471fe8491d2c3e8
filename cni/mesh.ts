/**
 * Sidecar injection belongs to the network plugin (issue 6): a pod whose
 * config, `runtimeConfig.mesh` or `args.cni.mesh` asks for the mesh gets the
 * sidecar's interception table in its namespace on ADD (sidecar/intercept.ts)
 * and loses it on DEL. Whoever runs the pod starts `meshwork sidecar` there.
 */
import type { Layer, LayerContext } from './layers';
import { CniCode, CniError } from './types';
import { withContext } from '../lib/errors';

type Intercept = typeof import('../sidecar/intercept');
// Loaded only for injected pods.
const intercept = (): Intercept => require('../sidecar/intercept') as Intercept;

function options(ctx: LayerContext) {
  const m = ctx.cluster.mesh!;
  return {
    outboundPort: m.outboundPort,
    inboundPort: m.inboundPort,
    sidecarGid: m.sidecarGid,
    excludeInboundPorts: m.excludeInboundPorts,
    excludeOutboundPorts: m.excludeOutboundPorts,
    excludeOutboundCidrs: m.excludeOutboundCidrs,
    includeInboundPorts: m.includeInboundPorts,
  };
}

export const meshLayer: Layer = {
  name: 'sidecar injection',
  async add(ctx, result, tx) {
    if (!ctx.cluster.mesh) return result;
    const netns = ctx.att.netns!;
    try {
      intercept().installInterception(netns, options(ctx));
    } catch (err) {
      throw withContext('sidecar injection', err);
    }
    tx.onUndo('remove the sidecar interception rules', () => intercept().removeInterception(netns));
    return result;
  },
  async del(ctx) {
    // The table dies with the namespace; without a namespace there is nothing to do.
    if (!ctx.cluster.mesh || !ctx.att.netns) return;
    try {
      intercept().removeInterception(ctx.att.netns);
    } catch (err) {
      throw withContext('removing the sidecar interception rules', err);
    }
  },
  async check(ctx) {
    if (!ctx.cluster.mesh) return;
    if (!intercept().hasInterception(ctx.att.netns!)) {
      throw new CniError(CniCode.checkFailed, `sidecar interception table inet ${intercept().TABLE} is missing in ${ctx.att.netns}`);
    }
  },
  async gc() { /* the rules live and die with the pod's namespace */ },
};
