/**
 * Where `nft` is. A CNI runtime may execute the plugin with a PATH that lacks
 * the sbin directories (libcni passes its own environment through), so after
 * PATH the usual system locations are tried; resolved once per process.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

const SYSTEM_DIRS = ['/usr/sbin', '/sbin', '/usr/local/sbin'];
let found: string | undefined;

export function nftBinary(): string {
  if (found) return found;
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter).filter(Boolean), ...SYSTEM_DIRS];
  for (const d of dirs) {
    const p = path.join(d, 'nft');
    try { fs.accessSync(p, fs.constants.X_OK); found = p; return p; } catch { /* next */ }
  }
  // Not installed: spawning the bare name gives the usual ENOENT, named in the caller's error.
  return 'nft';
}
