/**
 * The whole plugin as one function: environment and stdin in, exit code and
 * output out. No process globals (no process.env, no process.exit), so the
 * resident daemon can call it concurrently for many containers.
 */
import { decodeConfig, parseNetConf } from './config';
import { loadDriver, transaction, type AttachmentContext, type BaseContext, type Deferrer, type IpamPort } from './drivers/driver';
import { createDeferrer, type FlushableDeferrer } from './deferrer';
import { parseClusterConf } from './cluster-config';
import { layers, type LayerContext } from './layers';
import { createStorePool, type StorePool } from './store-pool';
import { renderResult, parseResult } from './result';
import { errorJson, parseCallEnv, parseCommand } from './skel';
import { CniCode, CniError, ConfigError, type Attachment, type NetConf } from './types';
import { atLeast, isSupported, LATEST, versionInfo } from './version';
import type { IpamContext } from './ipam/types';

export interface CniRequest { env: Record<string, string | undefined>; stdin: Buffer }
export interface CniResponse { exitCode: number; stdout: string; stderr: string }

type IpamModule = typeof import('./ipam/index');
// IPAM is loaded on first use only: VERSION, STATUS and an IPAM-less DEL never pay for it.
const ipamModule = (): IpamModule => require('./ipam/index') as IpamModule;

function ipamPort(conf: NetConf, rawStdin: Buffer, env: Record<string, string | undefined>, containerId: string, ifname: string): IpamPort {
  const ctx = (): IpamContext => ({ netconf: conf.raw, rawStdin, env, containerId, ifname });
  return {
    configured: !!conf.ipam && typeof conf.ipam.type === 'string' && conf.ipam.type !== '',
    add: () => ipamModule().ipamAdd(ctx()),
    del: () => ipamModule().ipamDel(ctx()),
    check: () => ipamModule().ipamCheck(ctx()),
    gc: (validAttachments: Attachment[]) => ipamModule().ipamGc({ netconf: conf.raw, rawStdin, env, validAttachments }),
  };
}

const ok = (stdout = ''): CniResponse => ({ exitCode: 0, stdout, stderr: '' });

export interface HandlerDeps {
  /** Cluster stores for endpoint records; the resident daemon keeps them open between calls. */
  stores?: StorePool;
  /**
   * A resident process (the daemon) postpones a network's teardown after its
   * last container by this long, so pod churn does not rebuild the bridge and
   * nft table every time (default 5000 ms). 0: a one-shot process, no deferral.
   */
  teardownGraceMs?: number;
}

export type CniHandler = ((req: CniRequest) => Promise<CniResponse>) & { close(): Promise<void> };

/** A plugin instance: the call handler, and `close` to finish postponed work and release its stores. */
export function createHandler(deps: HandlerDeps = {}): CniHandler {
  const grace = deps.teardownGraceMs ?? 5000;
  const stores = deps.stores ?? createStorePool({ idleMs: grace > 0 ? 10_000 : 0 });
  const defer: FlushableDeferrer | undefined = grace > 0 ? createDeferrer(grace) : undefined;
  const fn = (req: CniRequest) => run(req, stores, defer);
  const close = async () => {
    await defer?.flush();
    await stores.closeAll();
  };
  // A daemon that returns from main after SIGTERM drains its loop: finish the
  // postponed teardowns then (a process.exit() skips this; the network's next
  // DEL or GC does the job).
  if (defer) process.once('beforeExit', () => { if (defer.pending()) void close(); });
  return Object.assign(fn, { close });
}

/** The resident instance the daemon (cni/daemon.ts, the agent) serves calls with. */
export const handle: CniHandler = createHandler();

/** A one-shot plugin process (cni/main.ts): everything done before it answers. */
export const createOneShotHandler = (): CniHandler => createHandler({ teardownGraceMs: 0 });

/**
 * DEL: the layers in reverse order, one after another, beside the driver's
 * DEL (they share nothing, and the driver's spends most of its time waiting
 * for the kernel). Every step runs; the first failure is reported.
 */
async function delAll(layerSteps: Array<() => Promise<void>>, driverStep: () => Promise<void>): Promise<void> {
  const layersInOrder = async () => {
    let first: unknown;
    for (const step of layerSteps) {
      try { await step(); } catch (err) { first ??= err; }
    }
    if (first !== undefined) throw first;
  };
  const [d, l] = await Promise.allSettled([driverStep(), layersInOrder()]);
  if (d.status === 'rejected') throw d.reason;
  if (l.status === 'rejected') throw l.reason;
}

async function run(req: CniRequest, stores: StorePool, defer: Deferrer | undefined): Promise<CniResponse> {
  // Errors are reported in the caller's version when we got that far.
  let errVersion: string = LATEST;
  try {
    const command = parseCommand(req.env.CNI_COMMAND);
    if (command === 'VERSION') return ok(`${JSON.stringify(versionInfo())}\n`);

    const raw = decodeConfig(req.stdin);
    if (isSupported(raw.cniVersion)) errVersion = raw.cniVersion;
    const { conf, version } = parseNetConf(raw);
    errVersion = version;
    const call = parseCallEnv(req.env, command);
    if ((command === 'GC' || command === 'STATUS') && !atLeast(version, '1.1.0')) {
      throw new CniError(CniCode.incompatibleVersion, `${command} needs cniVersion 1.1.0 or later, config has ${version}`);
    }

    const driver = loadDriver(conf.driver);
    const cfg = driver.loadConfig(conf);
    const base: BaseContext = {
      conf, version, rawStdin: req.stdin, env: req.env,
      ipam: ipamPort(conf, req.stdin, req.env, call.containerId, call.ifname),
      defer,
    };
    const att: AttachmentContext = { ...base, containerId: call.containerId, ifname: call.ifname, netns: call.netns };
    // Validated before anything changes: a bad label or mesh option fails the call cleanly.
    const cluster = command === 'STATUS' ? undefined : parseClusterConf(conf, call.containerId, call.args);
    const lctx = (): LayerContext => ({ att, cluster: cluster!, stores });

    switch (command) {
      case 'ADD': {
        const ctx = lctx();
        const result = await transaction(async (tx) => {
          let r = await driver.add(att, cfg);
          tx.onUndo(`undo the ${driver.name} driver's ADD`, () => driver.del(att, cfg));
          for (const layer of layers()) r = await layer.add(ctx, r, tx);
          return r;
        });
        return ok(`${JSON.stringify(renderResult(result, version))}\n`);
      }
      case 'DEL': {
        const ctx = lctx();
        await delAll(layers().reverse().map((l) => () => l.del(ctx)), () => driver.del(att, cfg));
        return ok();
      }
      case 'CHECK': {
        if (!conf.prevResult) throw new ConfigError('prevResult', 'required for CHECK');
        const prev = parseResult(conf.prevResult);
        await driver.check(att, cfg, prev);
        const ctx = lctx();
        for (const layer of layers()) await layer.check(ctx, prev);
        return ok();
      }
      case 'GC': {
        if (!conf.validAttachments) throw new ConfigError('cni.dev/valid-attachments', 'required for GC');
        const gc = { ...base, validAttachments: conf.validAttachments };
        await driver.gc(gc, cfg);
        for (const layer of layers()) await layer.gc({ gc, cluster: cluster!, stores });
        return ok();
      }
      case 'STATUS':
        await driver.status(base, cfg);
        return ok();
    }
  } catch (err) {
    const e = errorJson(err, errVersion);
    return { exitCode: 1, stdout: `${JSON.stringify(e)}\n`, stderr: `meshwork-cni: ${e.msg}${e.details ? ` (${e.details})` : ''}\n` };
  }
}
