// The formatter and the linter, run as a user runs them (`npm run format:check`, `npm run lint`):
// a file that is not formatted or breaks a lint rule fails CI here, naming the file.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const bin = (name: string) => path.join(root, 'node_modules/.bin', name);

async function exitOf(command: string, args: string[]): Promise<{ code: number; output: string }> {
  try {
    const { stdout, stderr } = await run(command, args, { cwd: root, maxBuffer: 16 * 1024 * 1024 });
    return { code: 0, output: stdout + stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, output: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

describe('code style', () => {
  it('every file is formatted (prettier --check)', async () => {
    const { code, output } = await exitOf(bin('prettier'), ['--check', '.']);
    expect(
      output.split('\n').filter((line) => line.startsWith('[warn]')),
      output,
    ).toEqual([]);
    expect(code).toBe(0);
  });

  it('the linter finds nothing (eslint)', async () => {
    const { code, output } = await exitOf(bin('eslint'), ['.']);
    expect(output.trim(), output).toBe('');
    expect(code).toBe(0);
  });
});
