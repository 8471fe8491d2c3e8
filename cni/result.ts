/**
 * Renders a result in the exact shape of the requested spec version, and
 * reads a prevResult of any supported version back into our form.
 *  - 0.4.0: `ips[].version` ("4"/"6") is required.
 *  - 1.0.0: no `version`; interfaces {name, mac, sandbox}; routes {dst, gw}.
 *  - 1.1.0: adds interface mtu/socketPath/pciID and route mtu/advmss/priority/table/scope.
 */
import { atLeast, type SpecVersion } from './version';
import { CniCode, CniError, type Result, type ResultInterface, type ResultRoute } from './types';

const pick = <T extends object, K extends keyof T>(o: T, keys: readonly K[]): Partial<T> => {
  const out: Partial<T> = {};
  for (const k of keys) if (o[k] !== undefined) out[k] = o[k];
  return out;
};

export function renderResult(r: Result, version: SpecVersion): Record<string, unknown> {
  const v11 = atLeast(version, '1.1.0');
  const ifKeys: (keyof ResultInterface)[] = v11 ? ['name', 'mac', 'mtu', 'sandbox', 'socketPath', 'pciID'] : ['name', 'mac', 'sandbox'];
  const rtKeys: (keyof ResultRoute)[] = v11 ? ['dst', 'gw', 'mtu', 'advmss', 'priority', 'table', 'scope'] : ['dst', 'gw'];
  const out: Record<string, unknown> = { cniVersion: version };
  if (r.interfaces) out.interfaces = r.interfaces.map((i) => pick(i, ifKeys));
  if (r.ips) {
    out.ips = r.ips.map((ip) => {
      const o: Record<string, unknown> = {};
      if (!atLeast(version, '1.0.0')) o.version = ip.address.includes(':') ? '6' : '4';
      o.address = ip.address;
      if (ip.gateway !== undefined) o.gateway = ip.gateway;
      if (ip.interface !== undefined) o.interface = ip.interface;
      return o;
    });
  }
  if (r.routes) out.routes = r.routes.map((rt) => pick(rt, rtKeys));
  out.dns = r.dns ?? {};
  return out;
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Parses a prevResult (0.4.0, 1.0.0 or 1.1.0); error code 7 names the bad field. */
export function parseResult(v: unknown, field = 'prevResult'): Result {
  const bad = (f: string, want: string) => new CniError(CniCode.invalidConfig, `${field}${f}: expected ${want}`);
  if (!isObj(v)) throw bad('', 'an object');
  const r: Result = {};
  if (v.interfaces !== undefined) {
    if (!Array.isArray(v.interfaces)) throw bad('.interfaces', 'a list');
    r.interfaces = v.interfaces.map((i, n) => {
      if (!isObj(i) || typeof i.name !== 'string') throw bad(`.interfaces[${n}]`, 'an object with a "name"');
      return i as unknown as ResultInterface;
    });
  }
  if (v.ips !== undefined) {
    if (!Array.isArray(v.ips)) throw bad('.ips', 'a list');
    r.ips = v.ips.map((i, n) => {
      if (!isObj(i) || typeof i.address !== 'string') throw bad(`.ips[${n}]`, 'an object with an "address"');
      if (i.interface !== undefined && typeof i.interface !== 'number') throw bad(`.ips[${n}].interface`, 'a number');
      return { address: i.address, gateway: typeof i.gateway === 'string' ? i.gateway : undefined, interface: i.interface as number | undefined };
    });
  }
  if (v.routes !== undefined) {
    if (!Array.isArray(v.routes)) throw bad('.routes', 'a list');
    r.routes = v.routes.map((x, n) => {
      if (!isObj(x) || typeof x.dst !== 'string') throw bad(`.routes[${n}]`, 'an object with a "dst"');
      return x as unknown as ResultRoute;
    });
  }
  if (isObj(v.dns)) r.dns = v.dns as Result['dns'];
  return r;
}
