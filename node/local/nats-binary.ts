// Finds nats-server, and says how to install it when it is missing.
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

export const NATS_INSTALL_HELP = [
  'nats-server is not installed (not found in PATH, /usr/sbin or /usr/local/bin).',
  'Install it with one of:',
  '  sudo apt-get install nats-server          # Debian, Ubuntu (or: bash scripts/install-deps.sh)',
  '  brew install nats-server                  # macOS',
  '  go install github.com/nats-io/nats-server/v2@latest',
  '  or download a release from https://github.com/nats-io/nats-server/releases',
  'or use an existing server: shardbank up --nats-url nats://127.0.0.1:4222',
].join('\n');

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** `$SHARDBANK_NATS_SERVER` if set (and executable), else the first nats-server on PATH or in the usual dirs. */
export function findNatsServer(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.SHARDBANK_NATS_SERVER) return isExecutable(env.SHARDBANK_NATS_SERVER) ? env.SHARDBANK_NATS_SERVER : undefined;
  const directories = [
    ...(env.PATH ?? '').split(delimiter),
    '/usr/sbin',
    '/usr/local/bin',
    '/usr/local/sbin',
    '/usr/bin',
  ];
  for (const directory of directories) {
    if (directory.length === 0) continue;
    const candidate = join(directory, 'nats-server');
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}
