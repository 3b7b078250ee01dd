// Types of binaries.mjs for TypeScript callers.
export class MissingBinariesError extends Error {}
export function cacheDir(): string;
export function versions(): Record<string, string>;
export const KUBE_COMMANDS: string[];
export function binaries(options?: {
  need?: string[];
}): Record<
  | 'etcd'
  | 'kube-apiserver'
  | 'kube-controller-manager'
  | 'kube-scheduler'
  | 'kubelet'
  | 'kube-proxy'
  | 'kubectl'
  | 'helm'
  | 'promtool'
  | 'coredns'
  | 'local-path-provisioner'
  | 'pause',
  string
>;
