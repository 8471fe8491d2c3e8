/**
 * IPAM entry points used by the plugin core: ours when `ipam.type` is
 * "meshwork", otherwise the external plugin of that name on CNI_PATH.
 */
import { parseIpamConfig, type IpamConfig } from './config';
import { delegate, convertResult, type ExecFn, execFile } from './delegate';
import { CniCode, IpamConfigError } from './errors';
import { createFileStore } from './file-store';
import { allocate, collect, release, verify } from './reservations';
import { KeyedMutex, type ReservationStore } from './store';
import type { IpamContext, IpamGcContext, IpamResult, NetConf } from './types';
import { MeshworkError } from '../../lib/errors';

export type { IpamContext, IpamGcContext, IpamResult, NetConf } from './types';
export { DEFAULT_DATA_DIR } from './config';

export const MESHWORK_IPAM_TYPE = 'meshwork';

export interface IpamDeps {
  /** The reservation store for a data dir (default: file store). */
  storeFor?: (dataDir: string) => ReservationStore;
  /** How external IPAM plugins are run (default: spawn). */
  exec?: ExecFn;
}

export interface Ipam {
  add(ctx: IpamContext): Promise<IpamResult>;
  del(ctx: IpamContext): Promise<void>;
  check(ctx: IpamContext): Promise<void>;
  gc(ctx: IpamGcContext): Promise<void>;
}

function ipamType(netconf: NetConf): string {
  const ipam = netconf.ipam;
  if (typeof ipam !== 'object' || ipam === null || Array.isArray(ipam)) {
    throw new IpamConfigError('ipam', `expected an object with "type", got ${JSON.stringify(ipam)}`);
  }
  const type = (ipam as Record<string, unknown>).type;
  if (typeof type !== 'string' || type === '') throw new IpamConfigError('ipam.type', `expected a plugin name, got ${JSON.stringify(type)}`);
  return type;
}

/** Addresses listed in prevResult (CHECK), for comparing with our reservations. */
function prevResultAddresses(netconf: NetConf): string[] | undefined {
  const prev = netconf.prevResult as { ips?: Array<{ address?: unknown }> } | undefined;
  if (!prev || !Array.isArray(prev.ips)) return undefined;
  return prev.ips.map((i) => i.address).filter((a): a is string => typeof a === 'string');
}

export function createIpam(deps: IpamDeps = {}): Ipam {
  // One in-process lock table for every file store this instance makes.
  const mutex = new KeyedMutex();
  const stores = new Map<string, ReservationStore>();
  const storeFor = deps.storeFor ?? ((dataDir: string) => {
    let s = stores.get(dataDir);
    if (!s) stores.set(dataDir, (s = createFileStore({ dataDir, mutex })));
    return s;
  });
  const exec = deps.exec ?? execFile;
  const ours = (ctx: { netconf: NetConf; env: IpamContext['env'] }): IpamConfig => parseIpamConfig(ctx.netconf, ctx.env);
  const key = (ctx: IpamContext) => ({ containerID: ctx.containerId, ifname: ctx.ifname });

  return {
    async add(ctx) {
      const type = ipamType(ctx.netconf);
      if (type !== MESHWORK_IPAM_TYPE) {
        const raw = await delegate(type, 'ADD', ctx.env, ctx.rawStdin, exec);
        if (!raw) throw new MeshworkError(CniCode.decode, `IPAM plugin ${type}: ADD printed no result`);
        return convertResult(raw);
      }
      const cfg = ours(ctx);
      const ips = await storeFor(cfg.dataDir).update(cfg.network, (s) => allocate(s, cfg, key(ctx)));
      const result: IpamResult = { ips, routes: cfg.routes.map((r) => ({ ...r })) };
      if (cfg.dns) result.dns = cfg.dns;
      return result;
    },

    async del(ctx) {
      const type = ipamType(ctx.netconf);
      if (type !== MESHWORK_IPAM_TYPE) {
        await delegate(type, 'DEL', ctx.env, ctx.rawStdin, exec);
        return;
      }
      const cfg = ours(ctx);
      await storeFor(cfg.dataDir).update(cfg.network, (s) => release(s, key(ctx)));
    },

    async check(ctx) {
      const type = ipamType(ctx.netconf);
      if (type !== MESHWORK_IPAM_TYPE) {
        await delegate(type, 'CHECK', ctx.env, ctx.rawStdin, exec);
        return;
      }
      const cfg = ours(ctx);
      verify(await storeFor(cfg.dataDir).read(cfg.network), cfg, key(ctx), prevResultAddresses(ctx.netconf));
    },

    async gc(ctx) {
      const type = ipamType(ctx.netconf);
      if (type !== MESHWORK_IPAM_TYPE) {
        await delegate(type, 'GC', ctx.env, ctx.rawStdin, exec);
        return;
      }
      const cfg = ours(ctx);
      await storeFor(cfg.dataDir).update(cfg.network, (s) => collect(s, ctx.validAttachments));
    },
  };
}

// The plugin core calls these; one instance per process keeps the in-process
// lock table shared by every call (the daemon runs many calls concurrently).
let shared: Ipam | undefined;
const instance = (): Ipam => (shared ??= createIpam());

export const ipamAdd = (ctx: IpamContext): Promise<IpamResult> => instance().add(ctx);
export const ipamDel = (ctx: IpamContext): Promise<void> => instance().del(ctx);
export const ipamCheck = (ctx: IpamContext): Promise<void> => instance().check(ctx);
export const ipamGc = (ctx: IpamGcContext): Promise<void> => instance().gc(ctx);
