// The mutation catalogue (scripts/mutants.json) must apply to the code as it is: every entry's
// original line once in its file. `npm run mutants` refuses to start otherwise, and nothing
// else would notice a moved line until someone runs the (long, opt-in) suite.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';

const run = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

it('every entry of the mutation catalogue applies exactly once (npm run mutants -- --list)', async () => {
  let code = 0;
  let output = '';
  try {
    const { stdout, stderr } = await run(process.execPath, ['scripts/mutants.mjs', '--list'], { cwd: root });
    output = stdout + stderr;
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    code = typeof e.code === 'number' ? e.code : 1;
    output = `${e.stdout ?? ''}${e.stderr ?? ''}`;
  }
  expect(code, output).toBe(0);
  expect(output).toMatch(/mutants, every one applies exactly once/);
}, 60_000);
