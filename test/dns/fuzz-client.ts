/**
 * Hostile client for the robustness test, run inside a pod namespace:
 * `node fuzz-client.js <host> <port> <udpPackets> <tcpConnections> <seed>`.
 * Sends random, truncated and mutated datagrams and opens garbage TCP
 * connections, all from a seeded generator so a failure can be replayed.
 */
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import { buildTestQuery } from './client';
import { TYPE } from '../../dns/wire';
import { seeded } from '../helpers/seeded';

async function main(): Promise<void> {
  const [host, portS, udpS, tcpS, seedS] = process.argv.slice(2);
  const port = Number(portS);
  const rand = seeded(Number(seedS));
  const int = (n: number) => Math.floor(rand() * n);
  const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)));
  const valid = [buildTestQuery('web.team-a.svc.cluster.local', TYPE.A), buildTestQuery('x.example.test', TYPE.TXT, { edns: false }), buildTestQuery('db.team-a.svc.cluster.local', TYPE.SRV)];

  const packet = (): Buffer => {
    const base = valid[int(valid.length)];
    switch (int(5)) {
      case 0: return bytes(int(600));
      case 1: return base.subarray(0, int(base.length));
      case 2: { const b = Buffer.from(base); for (let i = 0; i < 1 + int(6); i++) b[int(b.length)] = int(256); return b; }
      case 3: { const b = Buffer.from(base); b[12] = 0xc0; b[13] = 12; return b; } // pointer to itself
      default: { const b = Buffer.concat([base.subarray(0, 12), bytes(int(300))]); b.writeUInt16BE(int(4), 4); b.writeUInt16BE(int(65536), 10); return b; }
    }
  };

  const sock = dgram.createSocket('udp4');
  sock.on('error', () => undefined);
  sock.on('message', () => undefined);
  let sent = 0;
  const total = Number(udpS);
  while (sent < total) {
    // Batches awaited on their send callbacks, so the client itself never runs out of buffers.
    const batch: Promise<void>[] = [];
    for (let i = 0; i < 200 && sent < total; i++, sent++) {
      batch.push(new Promise((r) => sock.send(packet(), port, host, () => r())));
    }
    await Promise.all(batch);
  }
  sock.close();

  let done = 0;
  const conns = Number(tcpS);
  const one = (): Promise<void> => new Promise((resolve) => {
    const s = net.connect({ host, port });
    const finish = () => { s.destroy(); resolve(); };
    s.setTimeout(2000, finish);
    s.on('error', finish);
    s.on('close', finish);
    s.resume(); // drain replies, or the stream never reaches its end
    s.on('connect', () => {
      const kind = int(4);
      if (kind === 0) s.end(bytes(int(100)));
      else if (kind === 1) { const l = Buffer.alloc(2); l.writeUInt16BE(int(65536)); s.end(Buffer.concat([l, bytes(int(50))])); }
      else if (kind === 2) { const p = packet(); const l = Buffer.alloc(2); l.writeUInt16BE(p.length); s.end(Buffer.concat([l, p])); }
      else s.destroy();
    });
  });
  const workers = Array.from({ length: 50 }, async () => { while (done < conns) { done++; await one(); } });
  await Promise.all(workers);
  process.stdout.write(JSON.stringify({ udp: sent, tcp: done }) + '\n');
}

main().catch((e) => { process.stderr.write(String(e?.stack ?? e) + '\n'); process.exit(1); });
