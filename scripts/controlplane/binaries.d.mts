// Types of binaries.mjs for TypeScript callers.
export class MissingBinariesError extends Error {}
export function cacheDir(): string;
export function versions(): Record<string, string>;
export function binaries(options?: { need?: string[] }): Record<'etcd' | 'kube-apiserver' | 'helm', string>;
