/**
 * A separate process acting on a store, for the contract suite's
 * cross-process tests. Usage: node child.js <command> <spec> [args...]
 *   lease <key> <ttl>        take a lease, write <key> under it, print "ready", wait to be killed
 *   cas <key> <n>            n compare-and-set increments of the counter at <key>; prints "done <conflicts>"
 *   watch <prefix> <from>    print each event as a JSON line, from revision <from> (0 = now)
 *   write <prefix> [walBytes] put <prefix>k<i> = {"i":i,...} in a tight loop; print each i after it is stored
 *                            (walBytes: a small file-store log, so kills also land mid-snapshot)
 * Output is line-oriented on stdout; failures go to stderr with exit code 1.
 */
import { openStore } from '../../store/open';

async function main(): Promise<void> {
  const [cmd, spec, ...args] = process.argv.slice(2);
  const walBytes = cmd === 'write' && args[1] ? Number(args[1]) : undefined;
  const store = await openStore(spec, { file: { walBytes } });
  const out = (line: string) => process.stdout.write(`${line}\n`);
  switch (cmd) {
    case 'lease': {
      const [key, ttl] = args;
      const lease = await store.grantLease(Number(ttl));
      await store.put(key, JSON.stringify({ pid: process.pid }), { lease: lease.id });
      out(`ready ${lease.id}`);
      setInterval(() => undefined, 1 << 30); // stay alive until killed
      return;
    }
    case 'cas': {
      const [key, n] = args;
      let conflicts = 0;
      for (let done = 0; done < Number(n);) {
        const kv = await store.get(key);
        const next = String(Number(kv?.value ?? '0') + 1);
        if (await store.cas(key, kv?.modRevision ?? 0, next)) done++;
        else conflicts++;
      }
      out(`done ${conflicts}`);
      await store.close();
      return;
    }
    case 'watch': {
      const [prefix, from] = args;
      await store.watch(prefix, (ev) => out(JSON.stringify(ev)), {
        fromRevision: Number(from) > 0 ? Number(from) : undefined,
        onError: (err) => { process.stderr.write(`watch error: ${err.message}\n`); process.exit(1); },
      });
      out('watching');
      setInterval(() => undefined, 1 << 30);
      return;
    }
    case 'write': {
      const [prefix] = args;
      // Values of varied size so a torn write would show as broken JSON.
      for (let i = 0; ; i++) {
        await store.put(`${prefix}k${i % 50}`, JSON.stringify({ i, pad: 'x'.repeat((i * 37) % 400) }));
        out(String(i));
      }
    }
    default:
      throw new Error(`unknown command ${cmd}`);
  }
}

main().catch((err) => {
  process.stderr.write(`child: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
