/**
 * The demo's bookstore application, one tiny HTTP server per role:
 *   backend  — answers as `<service> <version>`; `POST /admin/fail?rate=R` makes
 *              a share R of its answers 500s (the story's failing canary)
 *   frontend — calls each upstream by its service name and combines the answers
 *   loadgen  — calls the frontend at a steady rate forever
 * Plain node:http on purpose: the mesh, not the app, does the hard work.
 */
import * as http from 'node:http';
import * as os from 'node:os';

interface Args { role: string; name: string; version: string; port: number; upstreams: string[]; target: string; rate: number }

function parseArgs(argv: string[]): Args {
  const a: Args = { role: 'backend', name: 'app', version: 'v1', port: 9080, upstreams: [], target: '', rate: 20 };
  for (let i = 0; i < argv.length; i += 2) {
    const [k, v] = [argv[i], argv[i + 1]];
    switch (k) {
      case '--role': a.role = v; break;
      case '--name': a.name = v; break;
      case '--version': a.version = v; break;
      case '--port': a.port = Number(v); break;
      case '--upstream': a.upstreams.push(v); break;
      case '--target': a.target = v; break;
      case '--rate': a.rate = Number(v); break;
      // Only names the demo run in `ps`, so a run's processes can be found by its id.
      case '--cluster': break;
      default: throw new Error(`unknown flag ${k}`);
    }
  }
  return a;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

function get(url: string, timeoutMs = 2000): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = http.get(url, { agent, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', () => resolve({ status: 0, body: '' }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve({ status: 0, body: '' }));
  });
}

function backend(a: Args): void {
  let failRate = 0;
  http.createServer((req, res) => {
    if (req.url === '/healthz') { res.end('ok\n'); return; }
    if (req.method === 'POST' && req.url?.startsWith('/admin/fail')) {
      failRate = Number(new URL(req.url, 'http://x').searchParams.get('rate') ?? '0');
      res.end(`fail rate ${failRate}\n`);
      return;
    }
    const fail = Math.random() < failRate;
    res.writeHead(fail ? 500 : 200, { 'content-type': 'text/plain', 'x-version': a.version });
    res.end(fail ? `${a.name} ${a.version} failing\n` : `${a.name} ${a.version} ${os.hostname()}\n`);
  }).listen(a.port, '0.0.0.0');
}

function frontend(a: Args): void {
  http.createServer(async (req, res) => {
    if (req.url === '/healthz') { res.end('ok\n'); return; }
    const parts = await Promise.all(a.upstreams.map((u) => get(u)));
    const ok = parts.every((p) => p.status === 200);
    res.writeHead(ok ? 200 : 502, { 'content-type': 'text/plain' });
    res.end(parts.map((p) => p.body.trim() || `error ${p.status}`).join(' | ') + '\n');
  }).listen(a.port, '0.0.0.0');
}

function loadgen(a: Args): void {
  const interval = 1000 / a.rate;
  setInterval(() => { void get(a.target); }, interval);
}

const args = parseArgs(process.argv.slice(2));
const roles: Record<string, (a: Args) => void> = { backend, frontend, loadgen };
const start = roles[args.role];
if (!start) {
  process.stderr.write(`demo app: unknown role ${args.role} (backend, frontend, loadgen)\n`);
  process.exit(2);
}
start(args);
