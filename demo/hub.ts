/**
 * The demo's hub: one process inside the first host's namespace that can reach
 * every pod over the overlay. It serves, on a unix socket (unix sockets are
 * not network-namespaced, so the demo in the machine's own namespace can
 * connect to it):
 *   /dashboard/…      the dashboard (agent/dashboard.ts) over the sidecars and store
 *   /relay?url=URL    one HTTP request to URL inside the cluster (the live view
 *                     reads sidecars' /metrics and /endpoints, the story posts
 *                     /admin/fail to a pod), answered with the target's status and body
 * and, unless --no-canary, runs the canary controller (canary/controller.ts,
 * the same one `meshwork canary run` runs) printing each decision as a JSON
 * line on stdout, which the demo turns into the story's announcements.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import { openStore } from '../store/open';
import { createCanaryController } from '../canary/controller';
import type { MetricsSource, TargetScrape } from '../canary/source';
import { parsePrometheusText } from '../canary/prom';
import { createDashboard } from '../agent/dashboard';

interface HubArgs { store: string; socket: string; scrape: string[]; canary: boolean; minRequests: number }

function parseArgs(argv: string[]): HubArgs {
  const a: HubArgs = { store: '', socket: '', scrape: [], canary: true, minRequests: 2 };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = () => { const x = argv[++i]; if (x === undefined) throw new Error(`${k} needs a value`); return x; };
    switch (k) {
      case '--store': a.store = v(); break;
      case '--socket': a.socket = v(); break;
      case '--scrape': a.scrape.push(v()); break;
      case '--no-canary': a.canary = false; break;
      case '--min-requests': a.minRequests = Number(v()); break;
      default: throw new Error(`unknown flag ${k}`);
    }
  }
  if (!a.store || !a.socket) throw new Error('--store and --socket are required');
  return a;
}

/**
 * Scrapes the sidecars like canary/source.ts httpMetricsSource, keeping only
 * the mesh's own series. LEAD: the sidecars' process metrics sometimes print
 * "Nan" (prom-client event-loop lag), which canary/prom.ts rejects, making the
 * whole target unreadable; once the parser accepts it, use httpMetricsSource.
 */
function meshMetricsSource(urls: string[], timeoutMs = 2000): MetricsSource {
  return {
    async scrape() {
      const at = Date.now();
      const targets = await Promise.all(urls.map(async (url): Promise<TargetScrape> => {
        try {
          const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
          if (!res.ok) return { target: url, error: `HTTP ${res.status}` };
          const text = (await res.text()).split('\n').filter((l) => !l.includes('meshwork_sidecar_')).join('\n');
          return { target: url, samples: parsePrometheusText(text, url) };
        } catch (err: any) {
          return { target: url, error: String(err?.cause?.code ?? err?.message ?? err) };
        }
      }));
      return { at, targets };
    },
  };
}

const emit = (ev: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(ev)}\n`);

async function relay(req: http.IncomingMessage, res: http.ServerResponse, target: string): Promise<void> {
  let url: URL;
  try { url = new URL(target); } catch { res.writeHead(400).end('bad url\n'); return; }
  const body = await new Promise<Buffer>((resolve) => {
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c)).on('end', () => resolve(Buffer.concat(chunks)));
  });
  try {
    const r = await fetch(url, {
      method: req.method,
      body: req.method === 'GET' || req.method === 'HEAD' ? undefined : body,
      signal: AbortSignal.timeout(3000),
    });
    const text = Buffer.from(await r.arrayBuffer());
    res.writeHead(r.status, { 'content-type': r.headers.get('content-type') ?? 'text/plain' }).end(text);
  } catch (err: any) {
    res.writeHead(502, { 'content-type': 'text/plain' }).end(`relay to ${url.host}: ${err?.cause?.code ?? err?.message ?? err}\n`);
  }
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const store = await openStore(args.store);
  const source = meshMetricsSource(args.scrape);
  const dashboard = createDashboard({ metrics: source, store, sampleMs: 1000 });
  const controller = args.canary
    ? createCanaryController({
      store,
      metrics: source,
      minRequests: args.minRequests,
      onEvent: (policy, ev) => emit({ type: 'canary', policy, ...ev }),
      onError: (err) => emit({ type: 'hub-error', message: err.message }),
    })
    : undefined;

  const server = http.createServer((req, res) => {
    if (dashboard(req, res)) return;
    const u = new URL(req.url ?? '/', 'http://hub');
    if (u.pathname === '/relay' && u.searchParams.get('url')) { void relay(req, res, u.searchParams.get('url')!); return; }
    if (u.pathname === '/healthz') { res.end('ok\n'); return; }
    if (u.pathname === '/') { res.writeHead(302, { location: '/dashboard/' }).end(); return; }
    res.writeHead(404).end();
  });
  fs.rmSync(args.socket, { force: true });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(args.socket, resolve));
  // The dashboard is a view: if it cannot start, the controller and the relay still serve the story.
  await dashboard.start().catch((err) => emit({ type: 'hub-error', message: `dashboard: ${err?.message ?? err}` }));
  await controller?.start();
  emit({ type: 'hub-ready' });

  await new Promise<void>((resolve) => { process.once('SIGINT', resolve); process.once('SIGTERM', resolve); });
  await controller?.stop();
  await dashboard.stop();
  server.close();
  await store.close();
}

main().catch((err) => {
  emit({ type: 'hub-error', message: String(err?.message ?? err), fatal: true });
  process.exit(1);
});
