/**
 * The JSON Schema editors use (yaml-language-server, VS Code), produced from
 * the same zod schemas that validate input. policies/schema.json is this
 * output; test/policies/schema.test.ts fails when it is stale, and
 * `node dist/policies/json-schema.js --write` regenerates it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { httpRouteDocument } from './gateway';
import { serviceDocument, trafficPolicyDocument } from './schema';
import { trafficSplitDocument } from './smi';

export const SCHEMA_ID = 'https://meshwork.dev/schemas/policy.json';

export function policyJsonSchema(): Record<string, unknown> {
  const doc = z.union([serviceDocument, trafficPolicyDocument, trafficSplitDocument, httpRouteDocument])
    .meta({ title: 'meshwork policy document', description: 'A Service or TrafficPolicy (meshwork.dev/v1), or an imported SMI TrafficSplit or Gateway API HTTPRoute' });
  return { ...z.toJSONSchema(doc, { io: 'input', unrepresentable: 'any' }), $id: SCHEMA_ID };
}

export function renderJsonSchema(): string { return `${JSON.stringify(policyJsonSchema(), null, 2)}\n`; }

/** Where the shipped schema lives in the source tree (dist/policies -> policies). */
export const SCHEMA_FILE = path.resolve(__dirname, '..', '..', 'policies', 'schema.json');

if (require.main === module) {
  if (process.argv.includes('--write')) { fs.writeFileSync(SCHEMA_FILE, renderJsonSchema()); process.stdout.write(`wrote ${SCHEMA_FILE}\n`); }
  else process.stdout.write(renderJsonSchema());
}
