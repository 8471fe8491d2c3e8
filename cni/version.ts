/** The CNI spec versions this plugin speaks, and choosing one for a call. */
import { CniCode, CniError } from './types';

export const SUPPORTED_VERSIONS = ['0.4.0', '1.0.0', '1.1.0'] as const;
export type SpecVersion = (typeof SUPPORTED_VERSIONS)[number];
export const LATEST: SpecVersion = '1.1.0';

export const isSupported = (v: unknown): v is SpecVersion => (SUPPORTED_VERSIONS as readonly unknown[]).includes(v);

function cmp(a: string, b: string): number {
  const pa = a.split('.').map(Number), pb = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) if ((pa[i] ?? 0) !== (pb[i] ?? 0)) return (pa[i] ?? 0) - (pb[i] ?? 0);
  return 0;
}
export const atLeast = (v: string, min: string): boolean => cmp(v, min) >= 0;

/**
 * The version of this call: `cniVersion`, or (1.1.0) the highest entry of
 * `cniVersions` we support. Error code 1 when none is supported.
 */
export function chooseVersion(cniVersion: unknown, cniVersions?: unknown): SpecVersion {
  if (Array.isArray(cniVersions)) {
    const ok = cniVersions.filter(isSupported).sort(cmp);
    if (ok.length) return ok[ok.length - 1];
  }
  if (isSupported(cniVersion)) return cniVersion;
  throw new CniError(CniCode.incompatibleVersion, `incompatible CNI version ${JSON.stringify(cniVersion)}: meshwork-cni supports ${SUPPORTED_VERSIONS.join(', ')}`);
}

/** The VERSION command's answer. */
export function versionInfo(): { cniVersion: SpecVersion; supportedVersions: string[] } {
  return { cniVersion: LATEST, supportedVersions: [...SUPPORTED_VERSIONS] };
}
