/**
 * The dashboard page: plain HTML + JS + SVG in agent/dashboard.html, shipped
 * as a static file of the package (no CDN, no build step). Read once, from
 * the source tree next to dist/, when this module loads.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MeshworkError } from '../lib/errors';

function load(): string {
  const candidates = [path.join(__dirname, 'dashboard.html'), path.join(__dirname, '..', '..', 'agent', 'dashboard.html')];
  for (const p of candidates) {
    try { return fs.readFileSync(p, 'utf8'); } catch { /* next */ }
  }
  throw new MeshworkError('EDASHBOARD', `dashboard page not found (looked in ${candidates.join(', ')})`);
}

export const DASHBOARD_PAGE = load();
