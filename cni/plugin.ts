/**
 * The whole plugin as one function: environment and stdin in, exit code and
 * output out. No process globals (no process.env, no process.exit), so the
 * resident daemon can call it concurrently for many containers.
 */
import { decodeConfig, parseNetConf } from './config';
import { loadDriver, type AttachmentContext, type BaseContext, type IpamPort } from './drivers/driver';
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

export async function handle(req: CniRequest): Promise<CniResponse> {
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
    };
    const att: AttachmentContext = { ...base, containerId: call.containerId, ifname: call.ifname, netns: call.netns };

    switch (command) {
      case 'ADD': {
        const result = await driver.add(att, cfg);
        return ok(`${JSON.stringify(renderResult(result, version))}\n`);
      }
      case 'DEL':
        await driver.del(att, cfg);
        return ok();
      case 'CHECK': {
        if (!conf.prevResult) throw new ConfigError('prevResult', 'required for CHECK');
        await driver.check(att, cfg, parseResult(conf.prevResult));
        return ok();
      }
      case 'GC': {
        if (!conf.validAttachments) throw new ConfigError('cni.dev/valid-attachments', 'required for GC');
        await driver.gc({ ...base, validAttachments: conf.validAttachments }, cfg);
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
