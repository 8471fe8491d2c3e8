/**
 * Real etcd servers for tests: Debian's etcd-server (/usr/bin/etcd) on
 * loopback, free ports, a data dir per member (on tmpfs when there is one, as
 * this etcd has no --unsafe-no-fsync). One member or a three-member cluster;
 * a member can be stopped and started again on its ports and data;
 * `cleanup()` kills every member and removes the data dirs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

export const ETCD_BIN = process.env.MESHWORK_ETCD_BIN ?? '/usr/bin/etcd';
export const haveEtcd = fs.existsSync(ETCD_BIN);
export const NEEDS_ETCD = `needs etcd (${ETCD_BIN}, Debian package etcd-server)`;

/** A port that was free a moment ago; etcd start retries with new ports if it is taken meanwhile. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

export interface Member {
  readonly name: string;
  clientUrl: string;
  peerUrl: string;
  clientPort: number;
  peerPort: number;
  dataDir: string;
  proc?: ChildProcess;
  log: string;
}

export class EtcdCluster {
  readonly members: Member[] = [];
  private readonly root: string;
  private readonly token = `mwt-${crypto.randomBytes(4).toString('hex')}`;

  private constructor() {
    const base = fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir();
    this.root = fs.mkdtempSync(path.join(base, 'mw-etcd-'));
    // If the test process exits or is killed without cleanup, take the members and data with it.
    process.once('exit', this.onExit);
    for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, this.onSignal);
  }

  private readonly onExit = (): void => {
    for (const m of this.members) m.proc?.kill('SIGKILL');
    fs.rmSync(this.root, { recursive: true, force: true });
  };

  private readonly onSignal = (sig: NodeJS.Signals): void => {
    this.onExit();
    this.unhook();
    process.kill(process.pid, sig); // die of the same signal, as without us
  };

  private unhook(): void {
    process.removeListener('exit', this.onExit);
    process.removeListener('SIGTERM', this.onSignal);
    process.removeListener('SIGINT', this.onSignal);
  }

  /** Starts `size` members and waits until the cluster has a leader and serves. */
  static async start(size = 1): Promise<EtcdCluster> {
    const c = new EtcdCluster();
    try {
      for (let attempt = 0; ; attempt++) {
        await c.assignPorts(size);
        c.members.forEach((m) => c.launch(m, 'new'));
        const ok = await c.waitHealthy(c.members, 20_000).then(() => true, (e) => { if (attempt >= 2) throw e; return false; });
        if (ok) return c;
        // Probably a port taken between probing and binding: start over on fresh ports.
        await c.killAll();
        for (const m of c.members) fs.rmSync(m.dataDir, { recursive: true, force: true });
        c.members.length = 0;
      }
    } catch (err) {
      await c.cleanup();
      throw err;
    }
  }

  get endpoints(): string[] { return this.members.map((m) => m.clientUrl); }
  get spec(): string { return `etcd:${this.endpoints.join(',')}`; }

  /** Stops a member abruptly (SIGKILL), as a crash or a lost host would. */
  async stop(i: number): Promise<void> {
    const m = this.members[i];
    await killMember(m);
  }

  /** Starts a stopped member again on the same ports and data dir, and waits until it serves. */
  async restart(i: number): Promise<void> {
    const m = this.members[i];
    if (m.proc && m.proc.exitCode === null && m.proc.signalCode === null) return;
    this.launch(m, 'existing');
    await this.waitHealthy([m], 20_000);
  }

  async cleanup(): Promise<void> {
    this.unhook();
    await this.killAll();
    fs.rmSync(this.root, { recursive: true, force: true });
  }

  private async killAll(): Promise<void> {
    await Promise.all(this.members.map(killMember));
  }

  private async assignPorts(size: number): Promise<void> {
    for (let i = 0; i < size; i++) {
      const clientPort = await freePort();
      const peerPort = await freePort();
      const name = `m${i}`;
      const dataDir = path.join(this.root, `${name}-${crypto.randomBytes(3).toString('hex')}`);
      this.members.push({
        name, clientPort, peerPort, dataDir, log: '',
        clientUrl: `http://127.0.0.1:${clientPort}`,
        peerUrl: `http://127.0.0.1:${peerPort}`,
      });
    }
  }

  private launch(m: Member, state: 'new' | 'existing'): void {
    const cluster = this.members.map((x) => `${x.name}=${x.peerUrl}`).join(',');
    const args = [
      '--name', m.name,
      '--data-dir', m.dataDir,
      '--listen-client-urls', m.clientUrl,
      '--advertise-client-urls', m.clientUrl,
      '--listen-peer-urls', m.peerUrl,
      '--initial-advertise-peer-urls', m.peerUrl,
      '--initial-cluster', cluster,
      '--initial-cluster-state', state,
      '--initial-cluster-token', this.token,
      // Two shared cores: a slower heartbeat and generous election timeout avoid spurious elections.
      '--heartbeat-interval', '100',
      '--election-timeout', '1000',
      '--snapshot-count', '10000',
      '--logger', 'zap',
      '--log-level', 'error',
    ];
    m.log = '';
    const proc = spawn(ETCD_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const keep = (d: Buffer) => { m.log = (m.log + d.toString()).slice(-4000); };
    proc.stdout!.on('data', keep);
    proc.stderr!.on('data', keep);
    m.proc = proc;
  }

  private async waitHealthy(members: Member[], timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (const m of members) {
      for (;;) {
        if (m.proc && (m.proc.exitCode !== null || m.proc.signalCode !== null)) {
          throw new Error(`etcd member ${m.name} exited (${m.proc.exitCode ?? m.proc.signalCode}): ${m.log.trim().slice(-800)}`);
        }
        try {
          const res = await fetch(`${m.clientUrl}/health`, { signal: AbortSignal.timeout(1000) });
          const body = (await res.json()) as { health?: string };
          if (body.health === 'true') break;
        } catch { /* not up yet */ }
        if (Date.now() > deadline) throw new Error(`etcd member ${m.name} not healthy after ${timeoutMs} ms: ${m.log.trim().slice(-800)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }
}

async function killMember(m: Member): Promise<void> {
  const p = m.proc;
  if (!p || p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise((r) => p.once('exit', r));
  p.kill('SIGKILL');
  await exited;
}
