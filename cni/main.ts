/**
 * Standalone entry: read the environment and stdin, run `handle`, print,
 * exit. Kept tiny so the ADD path loads only what that call needs.
 */
import { createOneShotHandler } from './plugin';

async function readStdin(): Promise<Buffer> {
  if (process.stdin.isTTY) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

export async function main(): Promise<number> {
  const handle = createOneShotHandler();
  const res = await handle({ env: { ...process.env }, stdin: await readStdin() });
  // A cluster store client (etcd) would keep this one-shot process alive.
  await handle.close();
  if (res.stderr) process.stderr.write(res.stderr);
  await new Promise<void>((resolve) => process.stdout.write(res.stdout, () => resolve()));
  return res.exitCode;
}

if (require.main === module) {
  main().then(
    (code) => { process.exitCode = code; },
    (err) => {
      // handle() never throws; this is a bug guard that still prints spec JSON.
      process.stdout.write(`${JSON.stringify({ cniVersion: '1.1.0', code: 100, msg: String(err?.message ?? err) })}\n`);
      process.exitCode = 1;
    },
  );
}
