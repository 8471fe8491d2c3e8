/**
 * Endpoint records (issue 3): every attachment the plugin wires is recorded
 * in the cluster store at `keys.endpoint(network, containerId, ifname)`, so
 * DNS, service VIPs and sidecars know it. Written last on ADD (the pod is
 * then completely wired) and removed first on DEL; GC removes this node's
 * records of attachments the runtime no longer has; CHECK wants the record.
 */
import { keys } from '../store/keys';
import type { EndpointRecord } from '../store/records';
import type { Store } from '../store/types';
import { withContext } from '../lib/errors';
import type { Layer, LayerContext } from './layers';
import { CniCode, CniError, type Result } from './types';

/** Address without prefix length ("10.1.0.5/24" -> "10.1.0.5"). */
const bare = (cidr: string): string => cidr.split('/')[0];

export function endpointRecordFor(ctx: LayerContext, result: Result): EndpointRecord {
  const { att, cluster } = ctx;
  const rec: EndpointRecord = {
    network: att.conf.name,
    containerId: att.containerId,
    ifname: att.ifname,
    namespace: cluster.podNamespace,
    pod: cluster.pod,
    node: cluster.node,
    ips: (result.ips ?? []).map((ip) => bare(ip.address)),
    labels: cluster.labels,
    ready: true,
  };
  if (cluster.hostname) rec.hostname = cluster.hostname;
  if (cluster.aliases.length) rec.aliases = cluster.aliases;
  if (cluster.mesh) rec.mesh = true;
  return rec;
}

const keyOf = (ctx: LayerContext): string => keys.endpoint(ctx.att.conf.name, ctx.att.containerId, ctx.att.ifname);

function parseRecord(value: string): EndpointRecord | undefined {
  try {
    const r = JSON.parse(value) as EndpointRecord;
    return r && typeof r === 'object' && typeof r.containerId === 'string' ? r : undefined;
  } catch {
    return undefined;
  }
}

async function inStore<T>(ctx: { cluster: { store: string }; stores: LayerContext['stores'] }, what: string, fn: (s: Store) => Promise<T>): Promise<T> {
  try {
    return await ctx.stores.use(ctx.cluster.store, fn);
  } catch (err) {
    if (err instanceof CniError) throw err;
    throw withContext(what, err);
  }
}

export const endpointLayer: Layer = {
  name: 'endpoint record',
  async add(ctx, result, tx) {
    const key = keyOf(ctx);
    const rec = endpointRecordFor(ctx, result);
    await inStore(ctx, `recording endpoint ${key}`, (s) => s.put(key, JSON.stringify(rec)));
    tx.onUndo(`delete endpoint record ${key}`, () => inStore(ctx, `deleting endpoint record ${key}`, (s) => s.delete(key)).then(() => undefined));
    return result;
  },
  async del(ctx) {
    const key = keyOf(ctx);
    await inStore(ctx, `deleting endpoint record ${key}`, (s) => s.delete(key));
  },
  async check(ctx, prev) {
    const key = keyOf(ctx);
    const kv = await inStore(ctx, `reading endpoint record ${key}`, (s) => s.get(key));
    const rec = kv && parseRecord(kv.value);
    if (!rec) throw new CniError(CniCode.checkFailed, `endpoint record ${key} is missing from the cluster store`);
    const want = (prev.ips ?? []).map((ip) => bare(ip.address)).sort();
    const have = [...rec.ips].sort();
    if (want.join(',') !== have.join(',')) throw new CniError(CniCode.checkFailed, `endpoint record ${key} has addresses ${have.join(', ') || 'none'}, expected ${want.join(', ')}`);
  },
  async gc(ctx) {
    const network = ctx.gc.conf.name;
    const valid = new Set(ctx.gc.validAttachments.map((a) => `${a.containerID}\0${a.ifname}`));
    await inStore(ctx, `collecting endpoint records of ${network}`, async (s) => {
      const { items } = await s.list(keys.endpoints(network));
      for (const kv of items) {
        const rec = parseRecord(kv.value);
        // Only this node's records: other nodes' runtimes own theirs.
        if (!rec || rec.node !== ctx.cluster.node || valid.has(`${rec.containerId}\0${rec.ifname}`)) continue;
        // Guarded by its revision: an ADD that rewrote the key meanwhile wins.
        await s.cas(kv.key, kv.modRevision, null);
      }
    });
  },
};
