// Locates the cached control-plane binaries built by build-binaries.sh.
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

export function cacheDir() {
  return process.env.SHARDBANK_CACHE || join(homedir(), '.cache', 'shardbank');
}

/** KEY=value pairs of versions.sh. */
export function versions() {
  const text = readFileSync(join(here, 'versions.sh'), 'utf8');
  const out = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Z_]+)=(\S+)/.exec(line);
    if (m) out[m[1]] = m[2];
  }
  return out;
}

export class MissingBinariesError extends Error {
  name = 'MissingBinariesError';
}

/** The Kubernetes binaries build-binaries.sh makes in one go build. */
export const KUBE_COMMANDS = [
  'kube-apiserver',
  'kube-controller-manager',
  'kube-scheduler',
  'kubelet',
  'kube-proxy',
  'kubectl',
];

/** Paths of the cached binaries; throws MissingBinariesError naming the build command. */
export function binaries({ need = ['etcd', 'kube-apiserver'] } = {}) {
  const v = versions();
  const bin = join(cacheDir(), 'bin');
  const kube = join(bin, `kubernetes-${v.KUBERNETES_VERSION}`);
  const paths = {
    etcd: join(bin, 'etcd'),
    helm: join(bin, `helm-${v.HELM_VERSION}`),
    promtool: join(bin, `promtool-${v.PROMTOOL_VERSION}`),
    coredns: join(bin, `coredns-${v.COREDNS_VERSION}`),
    'local-path-provisioner': join(bin, `local-path-provisioner-${v.LOCAL_PATH_PROVISIONER_VERSION}`),
    pause: join(bin, 'pause-1'),
  };
  for (const c of KUBE_COMMANDS) paths[c] = join(kube, c);
  const missing = need.filter((name) => !existsSync(paths[name]));
  if (missing.length > 0) {
    throw new MissingBinariesError(
      `control-plane binaries missing: ${missing.map((m) => paths[m]).join(', ')}. ` +
        'Build them once with `bash scripts/controlplane/build-binaries.sh` (CI runs it from scripts/ci.d/20-controlplane.sh).',
    );
  }
  return paths;
}
