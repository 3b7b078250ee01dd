// The npm clients of the comparison systems (pg, etcd3) are not dependencies of shardbank: they
// are installed on first use into a cache directory outside the repository and loaded from there.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';

/** The clients and the versions tried with these workloads. */
export const ANCHOR_CLIENTS = { pg: '^8.13.0', etcd3: '^1.1.2' } as const;

export function anchorDepsDir(): string {
  return (
    process.env.SHARDBANK_ANCHOR_DEPS ??
    path.join(process.env.SHARDBANK_CACHE ?? path.join(os.homedir(), '.cache/shardbank'), 'anchor-deps')
  );
}

/** Installs the clients into the cache directory unless they are there (npm, the usual registry). */
export function installAnchorClients(dir = anchorDepsDir()): string {
  if (Object.keys(ANCHOR_CLIENTS).every((name) => existsSync(path.join(dir, 'node_modules', name, 'package.json'))))
    return dir;
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    path.join(dir, 'package.json'),
    `${JSON.stringify({ name: 'shardbank-anchor-deps', private: true, dependencies: ANCHOR_CLIENTS }, null, 2)}\n`,
  );
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--silent', '--no-package-lock'], {
    cwd: dir,
    stdio: ['ignore', 'inherit', 'inherit'],
    timeout: 300_000,
  });
  return dir;
}

/** `require(name)` from the cache directory, installing the clients first if needed. */
export function loadAnchorClient<T>(name: keyof typeof ANCHOR_CLIENTS): T {
  const dir = installAnchorClients();
  return createRequire(path.join(dir, 'package.json'))(name) as T;
}
