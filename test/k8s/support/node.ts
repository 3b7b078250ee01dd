// Helpers for the tests against the real single-node Kubernetes of `npm run k8s:up`
// (on in CI, else behind SHARDBANK_K8S_E2E=1: they change the host's network, sysctls and mounts).
import { execFile, execFileSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { binaries } from '../../../scripts/controlplane/binaries.mjs';
import { nodeDirs } from '../../../scripts/controlplane/node.mjs';

/**
 * On in CI (CI=true, as .ci/run sets it) unless SHARDBANK_K8S_E2E=0; elsewhere only with
 * SHARDBANK_K8S_E2E=1 (a developer's `npm test` leaves the host's network alone).
 */
export const K8S_E2E =
  process.env.SHARDBANK_K8S_E2E === '1' || (process.env.CI === 'true' && process.env.SHARDBANK_K8S_E2E !== '0');
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const k8sCli = join(repoRoot, 'scripts', 'controlplane', 'k8s.mjs');

/** Strings in the command line of every node process (as k8s.mjs defines them). */
export function nodeMarkers(): string[] {
  const d = nodeDirs();
  return [d.state, d.run];
}

export function nodeDirList(): string[] {
  const d = nodeDirs();
  return [d.state, d.run];
}

/** Runs `k8s.mjs up|down`; returns stdout; throws with stderr on a non-zero exit. */
export function k8s(command: 'up' | 'down', ...args: string[]): string {
  try {
    return execFileSync(process.execPath, [k8sCli, command, ...args], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 600_000,
    });
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    throw new Error(`k8s ${command} failed: ${e.message}\n${e.stdout ?? ''}\n${e.stderr ?? ''}`);
  }
}

/** `k8s:up`, returning the kubeconfig path from its last line. */
export function k8sUp(): string {
  const lines = k8s('up').trim().split('\n');
  const last = lines[lines.length - 1] ?? '';
  if (!last.startsWith('KUBECONFIG=')) throw new Error(`k8s:up did not end with KUBECONFIG=: ${last}`);
  return last.slice('KUBECONFIG='.length);
}

/** kubectl (the v1.36.3 one built with the node) against kubeconfig; resolves stdout. */
export function kubectl(kubeconfig: string, args: string[], input?: string, timeoutMs = 180_000): Promise<string> {
  return new Promise((res, rej) => {
    const child = execFile(
      binaries().kubectl,
      ['--kubeconfig', kubeconfig, ...args],
      { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 32 << 20 },
      (err, stdout, stderr) => {
        if (err) rej(new Error(`kubectl ${args.join(' ')}: ${err.message}\n${stderr}`));
        else res(stdout);
      },
    );
    if (input !== undefined) child.stdin?.end(input);
  });
}

export function helm(kubeconfig: string, args: string[]): Promise<string> {
  return new Promise((res, rej) => {
    execFile(
      binaries({ need: ['helm'] }).helm,
      ['--kubeconfig', kubeconfig, ...args],
      { encoding: 'utf8', timeout: 300_000 },
      (err, stdout, stderr) => {
        if (err) rej(new Error(`helm ${args.join(' ')}: ${err.message}\n${stderr}`));
        else res(stdout);
      },
    );
  });
}

/** Polls probe until it returns a value other than undefined (errors count as not yet). */
export async function until<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 180_000,
  everyMs = 500,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(
        `${what}: not true after ${timeoutMs} ms${last ? ` (last error: ${(last as Error).message})` : ''}`,
      );
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
