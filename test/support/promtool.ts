// Where the promtool binary built by scripts/controlplane/build-binaries.sh (CI:
// scripts/ci.d/20-controlplane.sh) lives; tests that need it skip, saying so, when it is absent.
import { join } from 'node:path';
import { cacheDir, versions } from '../../scripts/controlplane/binaries.mjs';

export function promtoolPath(): string {
  return join(cacheDir(), 'bin', `promtool-${versions().PROMTOOL_VERSION}`);
}
