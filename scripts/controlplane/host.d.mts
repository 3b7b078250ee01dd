// Types of host.mjs for TypeScript callers (test/k8s).
export interface HostSnapshot {
  sysctls: Record<string, string | undefined>;
  netns: string[];
  links: string[];
  iptables: Record<string, string>;
  paths: Record<string, boolean>;
}
export interface NodeProcess {
  pid: number;
  cmdline: string[];
  exe: string;
  cgroup: string;
}
export function takeSnapshot(): HostSnapshot;
export function nodeProcesses(options: { markers: string[] }): NodeProcess[];
export function hostDiff(snap: HostSnapshot, options: { dirs: string[]; bridge: string; markers: string[] }): string[];
