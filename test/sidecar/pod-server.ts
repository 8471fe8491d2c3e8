/**
 * A test pod's application: an HTTP server on 0.0.0.0:<port> answering with
 * its version (and echoing WebSocket-style upgrades), plus an optional raw
 * TCP echo server. Run inside a namespace: node pod-server.js NAME VERSION HTTPPORT [ECHOPORT]
 */
import * as http from 'node:http';
import * as net from 'node:net';

const [name, version, httpPort, echoPort] = process.argv.slice(2);
const server = http.createServer((req, res) => {
  req.resume();
  const body = JSON.stringify({ name, version, url: req.url });
  res.writeHead(200, { 'content-type': 'application/json', 'x-version': version, 'x-pod': name });
  res.end(body);
});
server.on('upgrade', (_req, sock, head) => {
  sock.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
  if (head.length) sock.write(head);
  sock.pipe(sock);
});
server.keepAliveTimeout = 30_000;
server.listen(Number(httpPort), '0.0.0.0', () => process.stdout.write('listening\n'));
if (echoPort) net.createServer((s) => s.pipe(s)).listen(Number(echoPort), '0.0.0.0');
