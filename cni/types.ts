/**
 * Shared CNI shapes: the well-known error codes, the error class the plugin
 * edge prints as the spec's error JSON, the network config as the plugin sees
 * it, and the result in its richest (1.1.0) form; cni/result.ts converts it to
 * the version the caller asked for.
 */
import { MeshworkError } from '../lib/errors';

/** SPEC.md "Well-known Error Codes" (0-99 reserved; 100+ plugin-specific). */
export const CniCode = {
  incompatibleVersion: 1,
  unsupportedField: 2,
  unknownContainer: 3,
  invalidEnv: 4,
  io: 5,
  decode: 6,
  invalidConfig: 7,
  tryAgainLater: 11,
  /** STATUS: the plugin cannot service ADD requests. */
  notAvailable: 50,
  /** STATUS: not available, and existing containers may have limited connectivity. */
  notAvailableLimited: 51,
  /** Anything else that went wrong inside meshwork (plugin-specific range). */
  internal: 100,
  /** CHECK: the kernel no longer matches what ADD made. */
  checkFailed: 101,
} as const;

/** An error with a CNI code; `code` holds the number as a string, as every MeshworkError code is a string. */
export class CniError extends MeshworkError {
  constructor(code: number, message: string, readonly details?: string, options?: { cause?: unknown }) {
    super(String(code), message, options);
  }
}
export class ConfigError extends CniError {
  /** `field` is the JSON path of the bad value (e.g. `ipam.ranges[0][0].subnet`). */
  constructor(readonly field: string, problem: string) {
    super(CniCode.invalidConfig, `${field}: ${problem}`);
  }
}
export class UnsupportedFieldError extends CniError {
  constructor(field: string, value: unknown, hint = '') {
    super(CniCode.unsupportedField, `unsupported value of "${field}": ${JSON.stringify(value)}${hint ? ` (${hint})` : ''}`);
  }
}
export class EnvError extends CniError {
  constructor(variable: string, problem: string) {
    super(CniCode.invalidEnv, `${variable}: ${problem}`);
  }
}

export type CniCommand = 'ADD' | 'DEL' | 'CHECK' | 'VERSION' | 'STATUS' | 'GC';

export interface PortMapping { hostPort: number; containerPort: number; protocol: 'tcp' | 'udp'; hostIP?: string }
export interface Dns { nameservers?: string[]; domain?: string; search?: string[]; options?: string[] }
export interface Attachment { containerID: string; ifname: string }

/** The network config after generic validation (driver fields stay in `raw`). */
export interface NetConf {
  cniVersion: string;
  name: string;
  type: string;
  driver: string;
  ipam?: Record<string, unknown>;
  dns?: Dns;
  runtimeConfig: { portMappings?: PortMapping[]; mac?: string; [k: string]: unknown };
  args?: Record<string, unknown>;
  prevResult?: Record<string, unknown>;
  validAttachments?: Attachment[];
  /** The whole parsed object, as IPAM and driver loaders need it. */
  raw: Record<string, unknown>;
}

export interface ResultInterface { name: string; mac?: string; mtu?: number; sandbox?: string; socketPath?: string; pciID?: string }
export interface ResultIp { address: string; gateway?: string; interface?: number }
export interface ResultRoute { dst: string; gw?: string; mtu?: number; advmss?: number; priority?: number; table?: number; scope?: number }

/** A result in 1.1.0 form without `cniVersion`; cni/result.ts renders any supported version. */
export interface Result {
  interfaces?: ResultInterface[];
  ips?: ResultIp[];
  routes?: ResultRoute[];
  dns?: Dns;
}

/** Everything one plugin call knows about its environment (CNI_* variables, parsed once). */
export interface CallEnv {
  command: CniCommand;
  containerId: string;
  netns?: string;
  ifname: string;
  args: Record<string, string>;
  path: string[];
  /** The raw environment, for external IPAM plugins. */
  env: Record<string, string | undefined>;
}
