/**
 * A test pod's client, run inside the client namespace. Modes:
 *   http URL N CONCURRENCY [HEADER=VALUE...]   -> {"tally":{version:count}, "errors":[...]}
 *   loop URL STOPFILE CONCURRENCY              -> like http, until STOPFILE exists
 *   tcp HOST PORT TEXT                         -> {"echo": text received}
 *   ws URL TEXT                                -> {"head": status line, "echo": text}
 *   refused HOST PORT                          -> {"code": connect error code, "ms": time to fail}
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';

const [mode, ...args] = process.argv.slice(2);
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
const out = (o: unknown) => { process.stdout.write(`${JSON.stringify(o)}\n`); process.exit(0); };

function one(url: string, headers: Record<string, string>): Promise<string> {
  return new Promise((resolve) => {
    const req = http.get(url, { agent, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 200 ? String(res.headers['x-version']) : `status:${res.statusCode}:${res.headers['x-meshwork-error'] ?? res.headers['x-meshwork-overflow'] ?? ''}`));
    });
    req.on('error', (e) => resolve(`error:${(e as NodeJS.ErrnoException).code ?? e.message}`));
  });
}

async function run(url: string, more: () => boolean, conc: number, headers: Record<string, string>) {
  const tally: Record<string, number> = {};
  await Promise.all(Array.from({ length: conc }, async () => {
    while (more()) { const v = await one(url, headers); tally[v] = (tally[v] ?? 0) + 1; }
  }));
  return tally;
}

async function main() {
  if (mode === 'http') {
    const [url, n, conc, ...hs] = args;
    const headers = Object.fromEntries(hs.map((h) => h.split('=', 2)));
    let left = Number(n);
    out({ tally: await run(url, () => left-- > 0, Number(conc), headers) });
  } else if (mode === 'loop') {
    const [url, stop, conc] = args;
    let i = 0;
    out({ tally: await run(url, () => (++i % 50 !== 0 || !fs.existsSync(stop)), Number(conc), {}) });
  } else if (mode === 'tcp') {
    const [host, port, text] = args;
    const s = net.connect(Number(port), host);
    let got = '';
    s.on('data', (d) => { got += d; if (got.length >= text.length) out({ echo: got }); });
    s.on('error', (e) => out({ error: e.message }));
    s.write(text);
  } else if (mode === 'ws') {
    const [url, text] = args;
    const u = new URL(url);
    const req = http.request({ host: u.hostname, port: u.port, path: u.pathname, headers: { connection: 'Upgrade', upgrade: 'websocket' } });
    req.on('upgrade', (res, sock, head) => {
      let got = head.toString();
      sock.on('data', (d) => { got += d; if (got.length >= text.length) out({ head: res.statusCode, echo: got }); });
      sock.write(text);
    });
    req.on('error', (e) => out({ error: e.message }));
    req.end();
  } else if (mode === 'refused') {
    const [host, port] = args;
    const t = Date.now();
    const s = net.connect(Number(port), host);
    s.on('connect', () => out({ code: 'connected', ms: Date.now() - t }));
    s.on('error', (e: NodeJS.ErrnoException) => out({ code: e.code, ms: Date.now() - t }));
  } else {
    process.stderr.write(`unknown mode ${mode}\n`);
    process.exit(2);
  }
}
void main();
