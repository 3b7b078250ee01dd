#!/usr/bin/env node
// `npm run k8s:up` / `k8s:down`: a single-node Kubernetes on this machine (node.mjs), and
// putting the host back exactly as it was (host.mjs), also after a killed run; idempotent.
// `up` prints KUBECONFIG=<path> as its last line. `down --check` exits 1 if anything is left.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { binaries, MissingBinariesError } from './binaries.mjs';
import { hostDiff, restoreHost, saveSnapshotOnce } from './host.mjs';
import { BRIDGE, missingHostTools, nodeDirs, startNode } from './node.mjs';

const dirs = nodeDirs();
const log = (m) => console.error(`k8s: ${m}`);
const NODE_BINARIES = [
  'etcd',
  'kube-apiserver',
  'kube-controller-manager',
  'kube-scheduler',
  'kubelet',
  'kube-proxy',
  'kubectl',
  'helm',
  'coredns',
  'local-path-provisioner',
  'pause',
];

/** Strings found in the command line of every process the node starts (and of no other). */
export const markers = () => [dirs.state, dirs.run];

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function readState() {
  return existsSync(dirs.stateFile) ? JSON.parse(readFileSync(dirs.stateFile, 'utf8')) : undefined;
}

function ensureBinaries() {
  const tools = missingHostTools();
  if (tools.length)
    throw new Error(
      `missing host programs: ${tools.join(', ')}; install them with apt-get (CI: scripts/ci.d/30-k8s.sh)`,
    );
  try {
    binaries({ need: NODE_BINARIES });
  } catch (err) {
    if (!(err instanceof MissingBinariesError)) throw err;
    log('building the node binaries once (cached outside the repo)');
    const script = join(dirname(fileURLToPath(import.meta.url)), 'build-binaries.sh');
    const r = spawnSync('bash', [script, 'etcd kubernetes helm coredns local-path-provisioner pause'], {
      stdio: ['ignore', 2, 2],
    });
    if (r.status !== 0) throw new Error(`building the node binaries failed (exit ${r.status})`);
  }
}

function down() {
  const problems = restoreHost({
    snapshotFile: dirs.snapshot,
    dirs: [dirs.state, dirs.run],
    bridge: BRIDGE,
    markers: markers(),
    log,
  });
  if (problems.length) {
    for (const p of problems) log(`not restored: ${p}`);
    throw new Error('the host is not fully restored (see above); run k8s:down again');
  }
  if (process.argv.includes('--check') && existsSync(dirs.snapshot)) {
    const diff = hostDiff(JSON.parse(readFileSync(dirs.snapshot, 'utf8')), {
      dirs: [dirs.state, dirs.run],
      bridge: BRIDGE,
      markers: markers(),
    });
    if (diff.length) {
      for (const d of diff) log(`left over: ${d}`);
      throw new Error('the host differs from before k8s:up');
    }
  }
  rmSync(dirs.snapshot, { force: true });
  console.log('k8s: stopped, host restored');
}

async function up() {
  const state = readState();
  if (state && state.ready && state.pids.every(alive)) {
    console.log(`k8s: already running at ${state.server}`);
    console.log(`KUBECONFIG=${state.kubeconfig}`);
    return;
  }
  ensureBinaries();
  if (state || existsSync(dirs.run)) {
    log('cleaning up a previous run first');
    down();
  }
  mkdirSync(dirs.state, { recursive: true });
  saveSnapshotOnce(dirs.snapshot);
  const pids = [];
  const started = Date.now();
  const save = (extra = {}) => writeFileSync(dirs.stateFile, JSON.stringify({ pids, ...extra }));
  try {
    const node = await startNode({
      onLaunch: (pid) => {
        pids.push(pid);
        save();
      },
      log,
    });
    save({ ready: true, kubeconfig: node.kubeconfig, server: node.server });
    console.log(
      `k8s: node Ready in ${((Date.now() - started) / 1000).toFixed(1)} s, API server ${node.server}, logs in ${dirs.state}`,
    );
    console.log(`KUBECONFIG=${node.kubeconfig}`);
  } catch (err) {
    log(`start-up failed, restoring the host: ${err.message}`);
    try {
      down();
    } catch (e) {
      log(e.message);
    }
    throw err;
  }
}

const command = process.argv[2];
const run = command === 'up' ? up : command === 'down' ? down : undefined;
if (!run) {
  console.error('usage: k8s.mjs up|down [--check]');
  process.exit(2);
}
Promise.resolve()
  .then(run)
  .catch((err) => {
    console.error(`k8s: ${err.message}`);
    process.exit(1);
  });
