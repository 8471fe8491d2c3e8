/** dns/README.md stays true: its examples use real flags, its metrics table matches the code. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';
import { Registry } from 'prom-client';
import { register } from '../../cli/dns';
import { createDnsMetrics } from '../../dns/metrics';
import { parseListen } from '../../cli/dns';
import { parseUpstream } from '../../dns/upstreams';
import { repoRoot } from '../helpers/lab';

const readme = fs.readFileSync(path.join(repoRoot, 'dns', 'README.md'), 'utf8');

test('every README example of `meshwork dns serve` uses real flags with valid values', () => {
  const program = new Command('meshwork');
  register(program);
  const serve = program.commands.find((c) => c.name() === 'dns')!.commands.find((c) => c.name() === 'serve')!;
  const known = new Set(serve.options.map((o) => o.long));
  const examples = readme.split('\n').filter((l) => l.startsWith('meshwork dns serve --'));
  assert.ok(examples.length >= 3);
  for (const line of examples) {
    const words = line.split(/\s+/).slice(3);
    for (let i = 0; i < words.length; i++) {
      assert.ok(known.has(words[i]), `${words[i]} in "${line}"`);
      const value = words[i + 1] && !words[i + 1].startsWith('--') ? words[++i] : undefined;
      if (words[i - 1] === '--listen' || words[i - 1] === '--metrics') assert.doesNotThrow(() => parseListen(value!), line);
      if (words[i - 1] === '--upstream') assert.doesNotThrow(() => parseUpstream(value!), line);
    }
  }
});

test('the README metrics table lists exactly the metrics the server registers', async () => {
  const registry = new Registry();
  createDnsMetrics(registry);
  const registered = (await registry.getMetricsAsJSON()).map((m) => m.name).sort();
  const documented = [...readme.matchAll(/^\| `(meshwork_dns_[a-z_]+)`/gm)].map((m) => m[1]).sort();
  assert.deepEqual(documented, registered);
});
