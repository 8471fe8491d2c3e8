/**
 * The node-local overlay state file, `<stateDir>/overlay/<network>.json`.
 * The agent writes it once its subnet is leased and its devices exist; the
 * overlay CNI driver reads it to wire pods (bridge, MTU, subnet, gateway),
 * flannel's subnet.env in spirit. It also lets a restarted agent re-claim the
 * subnet it had. Written atomically (temp file + rename).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MeshworkError } from '../lib/errors';

export const DEFAULT_STATE_DIR = '/run/meshwork';

export interface OverlayNodeState {
  version: 1;
  network: string;
  node: string;
  bridge: string;
  vxlan: string;
  mtu: number;
  clusterCidrs: string[];
  /** Pod subnets of this node, one per cluster CIDR, with their bridge gateways. */
  subnets: string[];
  gateways: string[];
}

export class NodeStateMissingError extends MeshworkError {
  constructor(file: string, network: string) {
    super('EOVERLAY_NOT_READY', `overlay network ${network} is not ready on this host (${file} missing): is \`meshwork agent\` running for it?`);
  }
}

export const nodeStatePath = (stateDir: string, network: string): string =>
  path.join(stateDir, 'overlay', `${network}.json`);

export function writeNodeState(stateDir: string, st: OverlayNodeState): void {
  const file = nodeStatePath(stateDir, st.network);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, `${JSON.stringify(st, null, 2)}\n`);
  fs.renameSync(tmp, file);
}

export function readNodeState(stateDir: string, network: string): OverlayNodeState | undefined {
  const file = nodeStatePath(stateDir, network);
  let text: string;
  try { text = fs.readFileSync(file, 'utf8'); } catch (err: any) {
    if (err?.code === 'ENOENT') return undefined;
    throw new MeshworkError('ESTATE', `read ${file}: ${err.message}`, { cause: err });
  }
  let v: Partial<OverlayNodeState>;
  try { v = JSON.parse(text); } catch (err) {
    throw new MeshworkError('ESTATE', `${file} is not valid JSON`, { cause: err });
  }
  const strs = (x: unknown) => Array.isArray(x) && x.every((s) => typeof s === 'string');
  if (v.version !== 1 || typeof v.bridge !== 'string' || typeof v.mtu !== 'number' || !strs(v.subnets) || !strs(v.gateways) || !strs(v.clusterCidrs)) {
    throw new MeshworkError('ESTATE', `${file} is not a meshwork overlay state file (version 1)`);
  }
  return v as OverlayNodeState;
}

export function removeNodeState(stateDir: string, network: string): void {
  fs.rmSync(nodeStatePath(stateDir, network), { force: true });
}
