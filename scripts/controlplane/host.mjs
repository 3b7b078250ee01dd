// What `npm run k8s:up` changes on the host, and how `k8s:down` puts it back: sysctls,
// iptables chains, the bridge and its veths, network namespaces, mounts, cgroups, files and
// processes. Works from names alone (no state needed beyond the snapshot file), so it also
// cleans up after a run that was killed, and is idempotent.
import { execFileSync, spawnSync } from 'node:child_process';
import {
  existsSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  rmdirSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';

/** Sysctls the kubelet, kube-proxy or the bridge plugin may set. */
export const SYSCTLS = [
  'net.ipv4.ip_forward',
  'net.ipv6.conf.all.forwarding',
  'vm.overcommit_memory',
  'vm.panic_on_oom',
  'kernel.panic',
  'kernel.panic_on_oops',
  'kernel.keys.root_maxkeys',
  'kernel.keys.root_maxbytes',
  'net.ipv4.conf.all.route_localnet',
  'net.netfilter.nf_conntrack_max',
  'net.netfilter.nf_conntrack_tcp_timeout_established',
  'net.netfilter.nf_conntrack_tcp_timeout_close_wait',
  'net.bridge.bridge-nf-call-iptables',
  'net.bridge.bridge-nf-call-ip6tables',
];
/** Chains made by kube-proxy, the kubelet, CNI plugins and our egress guard. */
export const CHAIN_PREFIXES = ['KUBE-', 'CNI-', 'SHARDBANK-'];
/** Files and directories made outside the node's own directories when absent before. */
export const HOST_PATHS = [
  '/var/log/pods',
  '/var/log/containers',
  '/var/lib/cni',
  '/var/lib/kubelet',
  '/run/netns',
  '/etc/cni',
];

const sysctlPath = (key) => join('/proc/sys', ...key.split('.'));

function readSysctl(key) {
  try {
    return readFileSync(sysctlPath(key), 'utf8').trim();
  } catch {
    return undefined;
  }
}

function run(cmd, args, { input, check = false } = {}) {
  const r = spawnSync(cmd, args, { input, encoding: 'utf8' });
  if (check && r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr || r.error}`);
  return r.status === 0 ? r.stdout : '';
}

export function netnsNames() {
  return existsSync('/run/netns') ? readdirSync('/run/netns').sort() : [];
}

export function linkNames() {
  return run('ip', ['-o', 'link', 'show'])
    .split('\n')
    .map((l) => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1])
    .filter(Boolean)
    .sort();
}

/** iptables-save without counters and comments, one table at a time, for ipv4 and ipv6. */
export function iptablesRules() {
  const out = {};
  for (const tool of ['iptables-save', 'ip6tables-save']) {
    out[tool] = run(tool, [])
      .split('\n')
      .filter((l) => l && !l.startsWith('#'))
      .map((l) => l.replace(/\[\d+:\d+\]/, '[0:0]'))
      .join('\n');
  }
  return out;
}

/** Custom chains of ours (by prefix) still present, as "tool table chain". */
export function leftoverChains() {
  const found = [];
  for (const tool of ['iptables-save', 'ip6tables-save']) {
    let table = '';
    for (const line of run(tool, []).split('\n')) {
      if (line.startsWith('*')) table = line.slice(1);
      const m = /^:(\S+)/.exec(line);
      if (m && CHAIN_PREFIXES.some((p) => m[1].startsWith(p))) found.push(`${tool} ${table} ${m[1]}`);
    }
  }
  return found;
}

/** Mount points at or under any of roots (deepest first). */
export function mountsUnder(roots) {
  const points = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter(Boolean)
    .map((p) => p.replace(/\\040/g, ' '));
  return [...new Set(points.filter((p) => roots.some((r) => p === r || p.startsWith(`${r}/`))))].sort(
    (a, b) => b.length - a.length,
  );
}

/** The host's state before k8s:up touched it. */
export function takeSnapshot() {
  const sysctls = {};
  for (const k of SYSCTLS) sysctls[k] = readSysctl(k);
  return {
    takenAt: new Date().toISOString(),
    sysctls,
    netns: netnsNames(),
    links: linkNames(),
    iptables: iptablesRules(),
    paths: Object.fromEntries(HOST_PATHS.map((p) => [p, existsSync(p)])),
  };
}

export function saveSnapshotOnce(file) {
  if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8'));
  const snap = takeSnapshot();
  writeFileSync(file, JSON.stringify(snap, null, 2));
  return snap;
}

function procs() {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map(Number)
    .filter((pid) => pid !== process.pid);
}

function procInfo(pid) {
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
    let exe = '';
    try {
      exe = readlinkSync(`/proc/${pid}/exe`);
    } catch {
      // kernel thread or gone
    }
    const cgroup = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
    return { pid, cmdline, exe, cgroup };
  } catch {
    return undefined;
  }
}

/**
 * Processes that belong to the node: anything in a kubepods cgroup (containers, pause),
 * containerd shims of our containerd, and processes whose executable or arguments name one
 * of our directories or binaries.
 */
export function nodeProcesses({ markers }) {
  const found = [];
  for (const pid of procs()) {
    const p = procInfo(pid);
    if (!p) continue;
    const text = [p.exe, ...p.cmdline].join(' ');
    if (/\/kubepods[/.\n]/.test(p.cgroup) || markers.some((m) => text.includes(m))) found.push(p);
  }
  return found;
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const sleepSync = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

export function killAll(pids, graceMs) {
  for (const pid of pids)
    if (alive(pid))
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        /* gone */
      }
  const deadline = Date.now() + graceMs;
  while (pids.some(alive) && Date.now() < deadline) sleepSync(100);
  for (const pid of pids)
    if (alive(pid))
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
  const hard = Date.now() + 10_000;
  while (pids.some(alive) && Date.now() < hard) sleepSync(50);
}

/** Removes the kubepods cgroups (deepest first) in every hierarchy. */
export function removeCgroups() {
  const roots = [];
  for (const h of readdirSync('/sys/fs/cgroup')) {
    const p = join('/sys/fs/cgroup', h, 'kubepods');
    if (existsSync(p)) roots.push(p);
    if (existsSync(join('/sys/fs/cgroup', h, 'kubepods.slice')))
      roots.push(join('/sys/fs/cgroup', h, 'kubepods.slice'));
  }
  if (existsSync('/sys/fs/cgroup/kubepods')) roots.push('/sys/fs/cgroup/kubepods');
  const left = [];
  const walk = (dir) => {
    let entries = [];
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) if (e.isDirectory()) walk(join(dir, e.name));
    for (let i = 0; i < 20; i++) {
      try {
        rmdirSync(dir);
        return;
      } catch (err) {
        if (err.code === 'ENOENT') return;
        sleepSync(100);
      }
    }
    left.push(dir);
  };
  for (const r of roots) walk(r);
  return left;
}

export function leftoverCgroups() {
  const found = [];
  for (const h of readdirSync('/sys/fs/cgroup')) {
    for (const name of ['kubepods', 'kubepods.slice'])
      if (existsSync(join('/sys/fs/cgroup', h, name))) found.push(join(h, name));
  }
  return found;
}

/** Deletes our chains (and the jumps to them) from every table, ipv4 and ipv6. */
export function removeChains() {
  for (const [save, restore] of [
    ['iptables-save', 'iptables-restore'],
    ['ip6tables-save', 'ip6tables-restore'],
  ]) {
    const text = run(save, []);
    const tables = new Map();
    let table = '';
    for (const line of text.split('\n')) {
      if (line.startsWith('*')) {
        table = line.slice(1);
        tables.set(table, { ours: [], jumps: [] });
        continue;
      }
      const t = tables.get(table);
      if (!t) continue;
      const chain = /^:(\S+)/.exec(line)?.[1];
      if (chain && CHAIN_PREFIXES.some((p) => chain.startsWith(p))) t.ours.push(chain);
      const rule = /^-A (\S+) (.*)$/.exec(line);
      if (
        rule &&
        !CHAIN_PREFIXES.some((p) => rule[1].startsWith(p)) &&
        CHAIN_PREFIXES.some((p) => rule[2].includes(`-j ${p}`) || rule[2].includes(`-g ${p}`))
      ) {
        t.jumps.push(`-D ${rule[1]} ${rule[2]}`);
      }
    }
    const lines = [];
    for (const [name, t] of tables) {
      if (t.ours.length === 0 && t.jumps.length === 0) continue;
      lines.push(
        `*${name}`,
        ...t.ours.map((c) => `:${c} - [0:0]`),
        ...t.jumps,
        ...t.ours.map((c) => `-X ${c}`),
        'COMMIT',
      );
    }
    if (lines.length > 0) run(restore, ['--noflush'], { input: `${lines.join('\n')}\n`, check: true });
  }
}

/**
 * Puts the host back: processes, mounts, netns, veths and the bridge, chains, cgroups,
 * sysctls, files. dirs: the node's own directories (removed); bridge: its name.
 * Returns a list of what could not be restored (empty when all is well).
 */
export function restoreHost({ snapshotFile, dirs, bridge, markers, log = () => {} }) {
  const problems = [];
  const snap = existsSync(snapshotFile) ? JSON.parse(readFileSync(snapshotFile, 'utf8')) : undefined;
  // 1. processes: the kubelet first (it would restart containers), then everything else.
  const all = nodeProcesses({ markers });
  const kubelets = all.filter((p) => p.cmdline.some((a) => a.endsWith('/kubelet'))).map((p) => p.pid);
  if (kubelets.length) killAll(kubelets, 10_000);
  const rest = nodeProcesses({ markers }).map((p) => p.pid);
  if (rest.length) log(`stopping ${rest.length} processes`);
  killAll(rest, 10_000);
  // 2. mounts under our directories and the CNI network namespaces.
  const ownNetns = netnsNames().filter((n) => n.startsWith('cni-') && !(snap?.netns ?? []).includes(n));
  const roots = [...dirs, ...ownNetns.map((n) => `/run/netns/${n}`)];
  for (const m of mountsUnder(roots)) {
    if (spawnSync('umount', [m]).status !== 0) spawnSync('umount', ['-l', m]);
  }
  for (const n of ownNetns) {
    spawnSync('ip', ['netns', 'delete', n]);
    rmSync(`/run/netns/${n}`, { force: true });
  }
  // 3. veths still on the bridge, then the bridge.
  if (linkNames().includes(bridge)) {
    const ports = run('ip', ['-o', 'link', 'show', 'master', bridge])
      .split('\n')
      .map((l) => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1])
      .filter(Boolean);
    for (const p of ports) spawnSync('ip', ['link', 'delete', p]);
    spawnSync('ip', ['link', 'delete', bridge]);
  }
  for (const l of linkNames()) {
    if (l.startsWith('veth') && snap && !snap.links.includes(l)) spawnSync('ip', ['link', 'delete', l]);
  }
  // 4. iptables chains and cgroups.
  try {
    removeChains();
  } catch (err) {
    problems.push(`iptables: ${err.message}`);
  }
  for (const c of removeCgroups()) problems.push(`cgroup left: ${c}`);
  // 5. sysctls back to their values before k8s:up.
  if (snap) {
    for (const [k, v] of Object.entries(snap.sysctls)) {
      if (v === undefined || readSysctl(k) === v) continue;
      try {
        writeFileSync(sysctlPath(k), v);
      } catch (err) {
        problems.push(`sysctl ${k}: ${err.message}`);
      }
    }
  }
  // 6. files: ours, and host paths that did not exist before.
  const stillMounted = mountsUnder(dirs);
  if (stillMounted.length) problems.push(`still mounted: ${stillMounted.join(', ')}`);
  else for (const d of dirs) if (d !== snapshotDirOf(snapshotFile)) rmSync(d, { recursive: true, force: true });
  if (snap) {
    for (const [p, existed] of Object.entries(snap.paths)) {
      if (existed || !existsSync(p)) continue;
      if (mountsUnder([p]).length === 0) rmSync(p, { recursive: true, force: true });
    }
  }
  return problems;
}

function snapshotDirOf(file) {
  return file.slice(0, file.lastIndexOf('/'));
}

/** What differs from the snapshot (for the k8s:down test and `k8s:down --check`). */
export function hostDiff(snap, { dirs, bridge, markers }) {
  const diff = [];
  const procsLeft = nodeProcesses({ markers });
  for (const p of procsLeft) diff.push(`process ${p.pid}: ${p.cmdline.join(' ').slice(0, 120)}`);
  for (const m of mountsUnder([...dirs, '/run/netns'])) diff.push(`mount ${m}`);
  for (const n of netnsNames()) if (!snap.netns.includes(n)) diff.push(`netns ${n}`);
  for (const l of linkNames()) if (!snap.links.includes(l)) diff.push(`link ${l}`);
  if (linkNames().includes(bridge)) diff.push(`bridge ${bridge}`);
  for (const c of leftoverChains()) diff.push(`chain ${c}`);
  const rules = iptablesRules();
  for (const tool of Object.keys(rules)) {
    const before = new Set(snap.iptables[tool].split('\n').filter((l) => l.startsWith('-A')));
    for (const l of rules[tool].split('\n')) if (l.startsWith('-A') && !before.has(l)) diff.push(`${tool} rule ${l}`);
  }
  for (const [k, v] of Object.entries(snap.sysctls))
    if (readSysctl(k) !== v) diff.push(`sysctl ${k}=${readSysctl(k)} (was ${v})`);
  for (const c of leftoverCgroups()) diff.push(`cgroup ${c}`);
  for (const d of dirs)
    if (existsSync(d) && statSync(d).isDirectory() && readdirSync(d).length > 0) diff.push(`dir ${d}`);
  for (const [p, existed] of Object.entries(snap.paths)) if (!existed && existsSync(p)) diff.push(`path ${p}`);
  return diff;
}

export { execFileSync };
