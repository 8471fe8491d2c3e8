import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { run, repoRoot } from '../helpers/lab';

const CLI = path.join(repoRoot, 'bin', 'meshwork');

test('meshwork policy apply: no -f, an empty directory or an empty file is an error, never a silent success', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mw-apply-usage-'));
  try {
    const store = `file:${path.join(dir, 'store')}`;
    fs.mkdirSync(path.join(dir, 'empty'));
    fs.writeFileSync(path.join(dir, 'blank.yaml'), '\n# nothing yet\n');
    const cases: Array<[string[], string]> = [
      [[], 'meshwork: policy apply needs -f FILE|DIR (repeatable): the documents to apply\n'],
      [['-f', path.join(dir, 'empty')], `meshwork: no documents in ${path.join(dir, 'empty')}\n`],
      [['-f', path.join(dir, 'blank.yaml')], `meshwork: no documents in ${path.join(dir, 'blank.yaml')}\n`],
    ];
    for (const [args, stderr] of cases) {
      const r = await run(process.execPath, [CLI, 'policy', 'apply', ...args, '--store', store]);
      assert.equal(r.code, 1, `${args.join(' ')}: ${r.stdout}`);
      assert.equal(r.stderr, stderr);
    }
    // A real document still applies.
    fs.writeFileSync(path.join(dir, 'svc.yaml'), 'apiVersion: meshwork.dev/v1\nkind: Service\nmetadata:\n  name: cart\nspec:\n  selector:\n    app: cart\n  ports:\n    - port: 80\n');
    const ok = await run(process.execPath, [CLI, 'policy', 'apply', '-f', path.join(dir, 'svc.yaml'), '--store', store]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout, 'service/cart created\n');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
