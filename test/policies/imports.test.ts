/** SMI TrafficSplit and Gateway API HTTPRoute convert to the expected TrafficPolicy. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatIssue } from '../../policies/errors';
import type { Service, TrafficPolicy } from '../../policies/model';
import { issuesOf, load } from './util';

const svc = (name: string, selector: Record<string, string>) => `apiVersion: meshwork.dev/v1
kind: Service
metadata: {name: ${name}}
spec:
  selector: ${JSON.stringify(selector)}
  ports: [{port: 80}]
---
`;
const SERVICES = svc('web', { app: 'web' }) + svc('web-v1', { app: 'web', version: 'v1' }) + svc('web-v2', { app: 'web', version: 'v2' });
const policyOf = (text: string, ctx = {}) => load(text, ctx).find((d): d is TrafficPolicy => d.kind === 'TrafficPolicy')!;
const meta = (name: string) => ({ name, namespace: 'default', labels: {} });
const subsetV = (v: string) => ({ name: `web-${v}`, labels: { app: 'web', version: v } });

test('SMI v1alpha4 TrafficSplit becomes a one-route policy over subsets', () => {
  const tp = policyOf(`${SERVICES}apiVersion: split.smi-spec.io/v1alpha4
kind: TrafficSplit
metadata:
  name: canary
  annotations: {owner: team-a}
  resourceVersion: "123"
spec:
  service: web
  backends:
    - {service: web-v1, weight: 900}
    - {service: web-v2, weight: 100}
status: {}
`);
  assert.deepEqual(tp, {
    kind: 'TrafficPolicy',
    metadata: meta('canary'),
    spec: {
      service: 'web',
      subsets: [subsetV('v1'), subsetV('v2')],
      loadBalancer: { type: 'round-robin' },
      routes: [{ name: 'canary', matches: [], backends: [{ subset: 'web-v1', weight: 90 }, { subset: 'web-v2', weight: 10 }] }],
    },
  });
});

test('SMI v1alpha1 quantities, an FQDN root and the root as a backend', () => {
  const tp = policyOf(`${SERVICES}apiVersion: split.smi-spec.io/v1alpha1
kind: TrafficSplit
metadata: {name: s}
spec:
  service: web.default.svc.cluster.local
  backends:
    - {service: web, weight: 500m}
    - {service: web-v2, weight: "1"}
`);
  assert.deepEqual(tp.spec.subsets, [subsetV('v2')]);
  assert.deepEqual(tp.spec.routes[0].backends, [{ subset: '', weight: 33 }, { subset: 'web-v2', weight: 67 }]);
});

test('SMI backends must exist and select inside the root service', () => {
  const text = `${SERVICES}${svc('other', { app: 'other' })}apiVersion: split.smi-spec.io/v1alpha3
kind: TrafficSplit
metadata: {name: s}
spec:
  service: web
  backends:
    - {service: web-v3, weight: 1}
    - {service: other, weight: 1}
`;
  const issues = issuesOf(text).map(formatIssue);
  assert.equal(issues.length, 2, issues.join('\n'));
  assert.match(issues[0], /^t.yaml:\d+:\d+: spec.backends\[0\].service: backend service `web-v3.default` is neither in this apply set nor in the store$/);
  assert.match(issues[1], /spec.backends\[1\].service: backend service `other` must select a subset of `web`'s endpoints: its selector needs app=web/);
});

test('SMI backends may be found in the store instead of the set', () => {
  const stored = load(SERVICES) as Service[];
  const tp = policyOf('apiVersion: split.smi-spec.io/v1alpha2\nkind: TrafficSplit\nmetadata: {name: s}\nspec:\n  service: web\n  backends: [{service: web-v1, weight: 1}]\n', { services: stored });
  assert.deepEqual(tp.spec.routes[0].backends, [{ subset: 'web-v1', weight: 100 }]);
});

test('HTTPRoute (mesh form) becomes routes with matches, weights, mirror and timeout', () => {
  const tp = policyOf(`${SERVICES}apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
    - name: api
      matches:
        - path: {type: Exact, value: /login}
          method: POST
        - path: {type: RegularExpression, value: "^/v[0-9]+/"}
          headers:
            - {name: X-Tenant, value: acme}
            - {type: RegularExpression, name: x-user, value: "^qa-"}
      backendRefs: [{name: web-v2, port: 80}]
      timeouts: {request: 3s}
    - matches: [{path: {type: PathPrefix, value: /shop}}]
      filters:
        - type: RequestMirror
          requestMirror:
            backendRef: {name: web-v2}
            fraction: {numerator: 1, denominator: 4}
      backendRefs:
        - {name: web-v1, weight: 3}
        - {name: web-v2}
    - matches: [{path: {type: PathPrefix, value: /}}]
      backendRefs: [{name: web}]
`);
  assert.deepEqual(tp, {
    kind: 'TrafficPolicy',
    metadata: meta('web'),
    spec: {
      service: 'web',
      subsets: [subsetV('v2'), subsetV('v1')],
      loadBalancer: { type: 'round-robin' },
      routes: [
        {
          name: 'api',
          matches: [
            { path: { exact: '/login' }, method: 'POST' },
            { path: { regex: '^/v[0-9]+/' }, headers: [{ name: 'x-tenant', exact: 'acme' }, { name: 'x-user', regex: '^qa-' }] },
          ],
          backends: [{ subset: 'web-v2', weight: 100 }],
          timeoutMs: 3000,
        },
        { name: 'rule-1', matches: [{ path: { prefix: '/shop' } }], backends: [{ subset: 'web-v1', weight: 75 }, { subset: 'web-v2', weight: 25 }], mirror: { subset: 'web-v2', percentage: 25 } },
        { name: 'rule-2', matches: [], backends: [{ subset: '', weight: 100 }] },
      ],
    },
  });
});

test('HTTPRoute refuses what meshwork cannot honour, by name', () => {
  const issues = issuesOf(`${SERVICES}apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web}
spec:
  hostnames: [web.example.com]
  parentRefs: [{kind: Gateway, name: gw}]
  rules:
    - matches: [{queryParams: [{name: a, value: b}]}]
      backendRefs: [{name: web-v1, weight: 0}]
`).map((i) => `${i.path}: ${i.message}`);
  assert.deepEqual(issues, [
    'spec.hostnames: `hostnames` is not supported by meshwork; remove it',
    'spec.parentRefs[0].kind: expected `Service`, got the string "Gateway"',
    'spec.rules[0].matches[0].queryParams: `queryParams` is not supported by meshwork; remove it',
  ]);
});

test('HTTPRoute with all weights zero is refused after conversion', () => {
  const issues = issuesOf(`${SERVICES}apiVersion: gateway.networking.k8s.io/v1beta1
kind: HTTPRoute
metadata: {name: web}
spec:
  parentRefs: [{name: web}]
  rules: [{backendRefs: [{name: web-v1, weight: 0}]}]
`);
  assert.ok(issues.some((i) => i.path === 'spec.rules[0].backendRefs' && /every weight is zero/.test(i.message)), issues.map(formatIssue).join('\n'));
});

test('an imported policy and a native one for the same service conflict', () => {
  const issues = issuesOf(`${SERVICES}apiVersion: split.smi-spec.io/v1alpha4
kind: TrafficSplit
metadata: {name: s}
spec: {service: web, backends: [{service: web-v1, weight: 1}]}
---
apiVersion: meshwork.dev/v1
kind: TrafficPolicy
metadata: {name: web}
spec: {service: web}
`);
  assert.equal(issues.length, 1, issues.map(formatIssue).join('\n'));
  assert.match(issues[0].message, /already has TrafficPolicy `default\/s`/);
});
