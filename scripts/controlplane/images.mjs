#!/usr/bin/env node
// `npm run images`: builds the node and operator images from deploy/docker with buildah (no
// registry: --pull=never on a locally made stand-in for the node:24-bookworm-slim base, i.e.
// Debian minbase from debootstrap plus this machine's Node, npm and CA bundle), a NATS image
// (the machine's nats-server on the same base, under the name the operator runs for each BankCluster), saves each as an archive in
// ${SHARDBANK_CACHE}/images (k8s:up imports them all) and imports them into the running
// node's containerd (those that changed; --import-all: every one). Images are cached in
// buildah's storage under ${SHARDBANK_CACHE}/buildah.
import { execFileSync, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cacheDir } from './binaries.mjs';
import { buildahArgs, containerdSocket, HELPER_IMAGE, importImage, nodeDirs } from './node.mjs';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const version = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')).version;
export const BASE_IMAGE = 'node:24-bookworm-slim';
export const NODE_IMAGE = `shardbank/node:${version}`;
export const OPERATOR_IMAGE = `shardbank/operator:${version}`;
// NATS: the machine's nats-server on the base, under the name deploy/operator.yaml and the chart
// use by default, so `kubectl apply -k deploy/` and `helm install` work here as typed (a local
// stand-in, like the base image; no registry).
export const NATS_IMAGE = 'nats:2.10-alpine';
const log = (m) => console.error(`images: ${m}`);
if (Number(process.versions.node.split('.')[0]) < 24) {
  // The images carry the node that runs this script: never an older one under the Node 24 name.
  console.error(
    `images: Node 24 or later must run this (found ${process.version}); source scripts/node-runtime.sh first`,
  );
  process.exit(2);
}
const b = buildahArgs();

function buildah(args, opts = {}) {
  return execFileSync('buildah', [...b, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], ...opts });
}

function haveImage(name) {
  return spawnSync('buildah', [...b, 'inspect', '--type', 'image', name], { stdio: 'ignore' }).status === 0;
}

/** The Debian mirror apt uses on this machine (read, not hard-coded). */
function debianMirror() {
  const files = [
    '/etc/apt/sources.list',
    ...(existsSync('/etc/apt/sources.list.d')
      ? readdirSync('/etc/apt/sources.list.d').map((f) => `/etc/apt/sources.list.d/${f}`)
      : []),
  ];
  for (const f of files) {
    if (!existsSync(f)) continue;
    for (const line of readFileSync(f, 'utf8').split('\n')) {
      const m = /^(?:URIs:\s*|deb\s+(?:\[[^\]]*\]\s+)?)(\S+\/debian)\/?(\s|$)/.exec(line.trim());
      if (m) return m[1];
    }
  }
  throw new Error('no Debian mirror found in /etc/apt/sources.list{,.d}');
}

/** Debian minbase + this machine's node, npm and CA bundle, committed as BASE_IMAGE and HELPER_IMAGE. */
function ensureBase() {
  if (haveImage(BASE_IMAGE) && haveImage(HELPER_IMAGE)) return;
  const work = mkdtempSync(join(cacheDir(), 'rootfs-'));
  const rootfs = join(work, 'rootfs');
  try {
    log(`debootstrap --variant=minbase bookworm (from ${debianMirror()})`);
    execFileSync('debootstrap', ['--variant=minbase', 'bookworm', rootfs, debianMirror()], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    rmSync(join(rootfs, 'var/cache/apt/archives'), { recursive: true, force: true });
    mkdirSync(join(rootfs, 'var/cache/apt/archives/partial'), { recursive: true });
    rmSync(join(rootfs, 'var/lib/apt/lists'), { recursive: true, force: true });
    // The node that runs this build (Node 24 LTS: .ci/run puts it first on PATH), not the
    // distribution's /usr/bin/node, which may be older.
    execFileSync('cp', ['-L', process.execPath, join(rootfs, 'usr/bin/node')]);
    mkdirSync(join(rootfs, 'usr/lib/node_modules'), { recursive: true });
    execFileSync('cp', ['-a', '/usr/lib/node_modules/npm', join(rootfs, 'usr/lib/node_modules/npm')]);
    execFileSync('ln', ['-sf', '../lib/node_modules/npm/bin/npm-cli.js', join(rootfs, 'usr/bin/npm')]);
    execFileSync('ln', ['-sf', '../lib/node_modules/npm/bin/npx-cli.js', join(rootfs, 'usr/bin/npx')]);
    mkdirSync(join(rootfs, 'etc/ssl/certs'), { recursive: true });
    // The machine's CA bundle (and any extra CAs Node is told to trust here, e.g. a TLS proxy's):
    // npm ci inside the build talks to the registry through the same network as this machine.
    const extra =
      process.env.NODE_EXTRA_CA_CERTS && existsSync(process.env.NODE_EXTRA_CA_CERTS)
        ? readFileSync(process.env.NODE_EXTRA_CA_CERTS, 'utf8')
        : '';
    writeFileSync(
      join(rootfs, 'etc/ssl/certs/ca-certificates.crt'),
      readFileSync('/etc/ssl/certs/ca-certificates.crt', 'utf8') + '\n' + extra,
    );
    const ctr = buildah(['from', 'scratch']).trim();
    try {
      const mnt = buildah(['mount', ctr]).trim();
      execFileSync('cp', ['-a', `${rootfs}/.`, `${mnt}/`]);
      buildah(['umount', ctr]);
      buildah([
        'config',
        '--env',
        'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
        '--env',
        'NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt',
        '--cmd',
        'node',
        ctr,
      ]);
      buildah(['commit', ctr, BASE_IMAGE]);
      buildah(['tag', BASE_IMAGE, HELPER_IMAGE]);
    } finally {
      spawnSync('buildah', [...b, 'rm', ctr], { stdio: 'ignore' });
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

function ensureNats() {
  if (haveImage(NATS_IMAGE)) return;
  const ctr = buildah(['from', '--pull=never', BASE_IMAGE]).trim();
  try {
    buildah(['copy', ctr, '/usr/sbin/nats-server', '/usr/local/bin/nats-server']);
    buildah(['config', '--entrypoint', '["/usr/local/bin/nats-server"]', '--cmd', '', '--user', '1000:1000', ctr]);
    buildah(['commit', ctr, NATS_IMAGE]);
  } finally {
    spawnSync('buildah', [...b, 'rm', ctr], { stdio: 'ignore' });
  }
}

function bud(dockerfile, tag) {
  log(`buildah bud ${dockerfile} -> ${tag}`);
  execFileSync(
    'buildah',
    [
      ...b,
      'bud',
      '--runtime',
      '/usr/sbin/runc',
      '--pull=never',
      '--network',
      'host',
      '--layers',
      '-f',
      join(repoRoot, 'deploy/docker', dockerfile),
      '-t',
      tag,
      repoRoot,
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
}

const savedFile = join(cacheDir(), 'images', 'saved.json');
const saved = existsSync(savedFile) ? JSON.parse(readFileSync(savedFile, 'utf8')) : {};
const changed = [];

/** Saves an image as a docker archive named after it (ctr import normalizes the name); skipped when unchanged. */
function save(name, file) {
  const dir = join(cacheDir(), 'images');
  mkdirSync(dir, { recursive: true });
  const out = join(dir, file);
  const id = buildah(['inspect', '--type', 'image', '--format', '{{.FromImageID}}', name]).trim();
  if (saved[file] === id && existsSync(out)) return out;
  rmSync(`${out}.tmp`, { force: true });
  buildah(['push', '--quiet', name, `docker-archive:${out}.tmp:${name}`]);
  renameSync(`${out}.tmp`, out);
  saved[file] = id;
  writeFileSync(savedFile, JSON.stringify(saved, null, 2));
  changed.push(out);
  return out;
}

// Until 2026-12: the NATS image was shardbank.local/nats:1 in nats-1.tar (k8s:up imports every archive).
rmSync(join(cacheDir(), 'images', 'nats-1.tar'), { force: true });
// Until 2026-12: the base (Node 20) was shardbank.local/base:1 in base-1.tar.
rmSync(join(cacheDir(), 'images', 'base-1.tar'), { force: true });
const started = Date.now();
const step = (what) => log(`${what} (${((Date.now() - started) / 1000).toFixed(0)} s)`);
ensureBase();
step('base ready');
ensureNats();
bud('node.Dockerfile', NODE_IMAGE);
step('node image built');
bud('operator.Dockerfile', OPERATOR_IMAGE);
step('operator image built');
const archives = [
  save(HELPER_IMAGE, 'base-2.tar'),
  save(NATS_IMAGE, 'nats.tar'),
  save(NODE_IMAGE, 'shardbank-node.tar'),
  save(OPERATOR_IMAGE, 'shardbank-operator.tar'),
];
step('archives saved');
const toImport = process.argv.includes('--import-all') ? archives : changed;
if (existsSync(containerdSocket())) {
  for (const a of toImport) importImage(a, nodeDirs());
  step("imported into the node's containerd");
} else {
  log('the node is not running: `npm run k8s:up` imports the archives when it starts');
}
writeFileSync(
  join(cacheDir(), 'images', 'images.json'),
  JSON.stringify({ node: NODE_IMAGE, operator: OPERATOR_IMAGE, nats: NATS_IMAGE, helper: HELPER_IMAGE }, null, 2),
);
console.log(`images: ${NODE_IMAGE} ${OPERATOR_IMAGE} ${NATS_IMAGE} ${HELPER_IMAGE}`);
