// Starts etcd + kube-apiserver on loopback (free ports, local certificates, RBAC with an
// admin client certificate), writes a kubeconfig and installs the BankCluster CRD.
// Used by `npm run controlplane:up` (detached), by test/operator/support (attached) and, with
// `node`, by `npm run k8s:up` (node.mjs): then the API server binds the node address with
// Node+RBAC authorization, NodeRestriction, ServiceAccount tokens and a kubelet client cert.
import { spawn } from 'node:child_process';
import { mkdirSync, openSync, readFileSync, writeFileSync, closeSync } from 'node:fs';
import https from 'node:https';
import http from 'node:http';
import net from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { binaries } from './binaries.mjs';
import { makeCertificates } from './certs.mjs';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CRD_FILE = join(repoRoot, 'deploy', 'crd', 'bankclusters.shardbank.io.yaml');
const STARTUP_DEADLINE_MS = 180_000;

export function freePort(host = '127.0.0.1') {
  return new Promise((res, rej) => {
    const server = net.createServer();
    server.unref();
    server.on('error', rej);
    server.listen(0, host, () => {
      const { port } = server.address();
      server.close(() => res(port));
    });
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Starts a process with stdout and stderr appended to logFile; detached ones outlive us. */
export function launch(command, args, logFile, detached, env = process.env) {
  const fd = openSync(logFile, 'a');
  const child = spawn(command, args, { stdio: ['ignore', fd, fd], detached, env });
  closeSync(fd);
  if (detached) child.unref();
  return child;
}

/** Sends one HTTPS request with the admin client certificate; resolves {status, body}. */
export function adminRequest(cp, method, path, body, contentType = 'application/json') {
  const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
  return new Promise((res, rej) => {
    const req = https.request(
      {
        host: cp.host,
        port: cp.apiserverPort,
        method,
        path,
        ca: cp.pem.ca,
        cert: cp.pem.cert,
        key: cp.pem.key,
        headers: payload ? { 'content-type': contentType, 'content-length': Buffer.byteLength(payload) } : {},
        timeout: 30_000,
      },
      (resp) => {
        let data = '';
        resp.setEncoding('utf8');
        resp.on('data', (c) => (data += c));
        resp.on('end', () => res({ status: resp.statusCode ?? 0, body: data }));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: timed out`)));
    req.on('error', rej);
    req.end(payload);
  });
}

/** Polls probe until it resolves true; fails early if child exits, naming its log. */
export async function waitFor(what, probe, child, logFile, deadlineMs = STARTUP_DEADLINE_MS) {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    if (child && child.exitCode !== null) {
      throw new Error(`${what} exited with code ${child.exitCode}; log: ${logFile}\n${tail(logFile)}`);
    }
    try {
      if (await probe()) return;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline)
      throw new Error(`${what} not ready after ${deadlineMs} ms; log: ${logFile}\n${tail(logFile)}`);
    await sleep(250);
  }
}

export function tail(file) {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-25).join('\n');
  } catch {
    return '';
  }
}

function httpOk(port, path) {
  return new Promise((res) => {
    const req = http.get({ host: '127.0.0.1', port, path, timeout: 2000 }, (r) => {
      r.resume();
      res(r.statusCode === 200);
    });
    req.on('error', () => res(false));
    req.on('timeout', () => req.destroy());
  });
}

/** A kubeconfig for the client certificate <user>.crt/.key in the control plane's dir. */
export function kubeconfigYaml(cp, user = 'admin') {
  const b64 = (s) => Buffer.from(s).toString('base64');
  const cert = readFileSync(join(cp.dir, `${user}.crt`), 'utf8');
  const key = readFileSync(join(cp.dir, `${user}.key`), 'utf8');
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '- name: shardbank',
    '  cluster:',
    `    server: ${cp.server}`,
    `    certificate-authority-data: ${b64(cp.pem.ca)}`,
    'users:',
    `- name: ${user}`,
    '  user:',
    `    client-certificate-data: ${b64(cert)}`,
    `    client-key-data: ${b64(key)}`,
    'contexts:',
    '- name: shardbank',
    '  context:',
    '    cluster: shardbank',
    `    user: ${user}`,
    '    namespace: default',
    'current-context: shardbank',
    '',
  ].join('\n');
}

/** The API server flags that let a kubelet join (k8s:up); loopback-only otherwise. */
function nodeApiserverArgs(dir, node) {
  if (!node) {
    return [
      '--bind-address=127.0.0.1',
      '--advertise-address=127.0.0.1',
      '--service-cluster-ip-range=10.0.0.0/24',
      '--authorization-mode=RBAC',
      '--disable-admission-plugins=ServiceAccount',
      '--endpoint-reconciler-type=none',
    ];
  }
  return [
    `--bind-address=${node.ip}`,
    `--advertise-address=${node.ip}`,
    `--service-cluster-ip-range=${node.serviceCidr}`,
    '--authorization-mode=Node,RBAC',
    '--enable-admission-plugins=NodeRestriction',
    `--kubelet-client-certificate=${dir}/apiserver-kubelet-client.crt`,
    `--kubelet-client-key=${dir}/apiserver-kubelet-client.key`,
    `--kubelet-certificate-authority=${dir}/ca.crt`,
    '--kubelet-preferred-address-types=InternalIP',
    '--endpoint-reconciler-type=lease',
  ];
}

function apiserverArgs(dir, etcdPort, port, node) {
  return [
    `--etcd-servers=http://127.0.0.1:${etcdPort}`,
    ...nodeApiserverArgs(dir, node),
    `--secure-port=${port}`,
    `--cert-dir=${dir}`,
    `--tls-cert-file=${dir}/apiserver.crt`,
    `--tls-private-key-file=${dir}/apiserver.key`,
    `--client-ca-file=${dir}/ca.crt`,
    '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
    `--service-account-key-file=${dir}/sa.pub`,
    `--service-account-signing-key-file=${dir}/sa.key`,
    '--enable-priority-and-fairness=false',
    '--profiling=false',
    '--v=1',
  ];
}

/** Installs (server-side apply) the CRD and waits until it is Established. */
export async function installCrd(cp, crdYaml = readFileSync(CRD_FILE, 'utf8')) {
  const name = 'bankclusters.shardbank.io';
  const path = `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}?fieldManager=shardbank-controlplane&force=true`;
  const r = await adminRequest(cp, 'PATCH', path, crdYaml, 'application/apply-patch+yaml');
  if (r.status >= 300) throw new Error(`installing the CRD failed (${r.status}): ${r.body}`);
  await waitFor('CRD Established', async () => {
    const g = await adminRequest(cp, 'GET', `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`);
    const conds = JSON.parse(g.body).status?.conditions ?? [];
    return conds.some((c) => c.type === 'Established' && c.status === 'True');
  });
}

/**
 * Starts a control plane in stateDir. detached: processes outlive this Node process
 * (controlplane:up). extraApiserverArgs: more kube-apiserver flags (tests).
 * node: { ip, serviceCidr, serviceIp, apiserverPort?, certs: {clients, servers} } for k8s:up.
 * onLaunch(pid): called as each process starts (so a killed run can still be cleaned up).
 * Returns {kubeconfigPath, server, apiserverPort, pids, stop()}.
 */
export async function startControlPlane({
  stateDir,
  detached = false,
  installCrd: withCrd = true,
  extraApiserverArgs = [],
  node,
  onLaunch = () => {},
} = {}) {
  const bin = binaries();
  const dir = resolve(stateDir);
  mkdirSync(join(dir, 'etcd'), { recursive: true });
  makeCertificates(dir, node ? { serverIps: [node.ip, node.serviceIp], ...node.certs } : {});
  const host = node ? node.ip : '127.0.0.1';
  const [etcdPort, etcdPeerPort, apiserverPort] = [
    await freePort(),
    await freePort(),
    node?.apiserverPort ?? (await freePort(host)),
  ];
  const etcdLog = join(dir, 'etcd.log');
  const etcd = launch(
    bin.etcd,
    [
      '--name=default',
      `--data-dir=${dir}/etcd`,
      `--listen-client-urls=http://127.0.0.1:${etcdPort}`,
      `--advertise-client-urls=http://127.0.0.1:${etcdPort}`,
      `--listen-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
      `--initial-cluster=default=http://127.0.0.1:${etcdPeerPort}`,
      '--unsafe-no-fsync=true',
      '--log-level=warn',
    ],
    etcdLog,
    detached,
  );
  onLaunch(etcd.pid);
  const children = [etcd];
  const cp = {
    dir,
    host,
    apiserverPort,
    etcdPort,
    server: `https://${host}:${apiserverPort}`,
    kubeconfigPath: join(dir, 'kubeconfig'),
    pem: {
      ca: readFileSync(join(dir, 'ca.crt'), 'utf8'),
      cert: readFileSync(join(dir, 'admin.crt'), 'utf8'),
      key: readFileSync(join(dir, 'admin.key'), 'utf8'),
    },
    pids: () => children.map((c) => c.pid),
    stop: () => stopChildren(children),
  };
  try {
    await waitFor('etcd', () => httpOk(etcdPort, '/health'), etcd, etcdLog);
    const apiLog = join(dir, 'kube-apiserver.log');
    const apiserver = launch(
      bin['kube-apiserver'],
      [...apiserverArgs(dir, etcdPort, apiserverPort, node), ...extraApiserverArgs],
      apiLog,
      detached,
    );
    onLaunch(apiserver.pid);
    children.push(apiserver);
    await waitFor(
      'kube-apiserver',
      async () => (await adminRequest(cp, 'GET', '/readyz')).status === 200,
      apiserver,
      apiLog,
    );
    writeFileSync(cp.kubeconfigPath, kubeconfigYaml(cp), { mode: 0o600 });
    if (withCrd) await installCrd(cp);
    writeFileSync(
      join(dir, 'state.json'),
      JSON.stringify({ pids: cp.pids(), kubeconfig: cp.kubeconfigPath, server: cp.server }),
    );
    return cp;
  } catch (err) {
    await stopChildren(children);
    throw err;
  }
}

/** SIGTERM, then SIGKILL after a grace period, for each child this module started. */
export async function stopChildren(children) {
  for (const c of [...children].reverse()) {
    if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
  }
  const deadline = Date.now() + 15_000;
  while (children.some((c) => c.exitCode === null && c.signalCode === null) && Date.now() < deadline) await sleep(100);
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}
