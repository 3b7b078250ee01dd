// A single-node Kubernetes from upstream parts for `npm run k8s:up`: the control plane of
// control-plane.mjs (etcd + kube-apiserver, here bound to the node address with Node+RBAC),
// kube-controller-manager, kube-scheduler, containerd + runc, the CNI bridge, kubelet,
// kube-proxy (iptables), CoreDNS (no upstream) and local-path-provisioner.
//
// Networking stays on this machine: the node address, the pod range and the service range
// all live on one bridge (BRIDGE); no masquerade; an iptables guard drops anything for those
// ranges that would leave through another interface; CoreDNS answers cluster names only.
// Everything the node changes on the host is undone by host.mjs (k8s:down).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { binaries, cacheDir } from './binaries.mjs';
import { kubeconfigYaml, launch, sleep, startControlPlane, waitFor } from './control-plane.mjs';

export const NODE_NAME = 'shardbank-node';
export const BRIDGE = 'sbk0';
export const NODE_IP = '10.213.0.1';
export const POD_CIDR = '10.213.0.0/24';
export const SERVICE_CIDR = '10.213.1.0/24';
export const SERVICE_IP = '10.213.1.1';
/** Both ranges: the egress guard drops them on any interface but the bridge and loopback. */
export const GUARDED_RANGE = '10.213.0.0/23';
export const APISERVER_PORT = 6443;
export const PAUSE_IMAGE = 'shardbank.local/pause:1';
export const HELPER_IMAGE = 'shardbank.local/base:2';
const CONTAINERD = '/usr/bin/containerd';
const RUNC = '/usr/sbin/runc';
const CNI_BIN = '/usr/lib/cni';

/** Where the node keeps its files: state (certs, logs, data) and run (sockets, containerd state). */
export function nodeDirs() {
  const base = process.env.SHARDBANK_K8S_DIR || join(cacheDir(), 'k8s');
  return {
    base,
    state: join(base, 'node'),
    run: process.env.SHARDBANK_K8S_RUN_DIR || '/run/shardbank-k8s',
    snapshot: join(base, 'host-snapshot.json'),
    stateFile: join(base, 'node', 'state.json'),
    images: join(cacheDir(), 'images'),
  };
}

export function containerdSocket(dirs = nodeDirs()) {
  return join(dirs.run, 'containerd', 'containerd.sock');
}

/** Missing host programs, with the apt package that provides each. */
export function missingHostTools() {
  const need = {
    [CONTAINERD]: 'containerd',
    [RUNC]: 'runc',
    [`${CNI_BIN}/bridge`]: 'containernetworking-plugins',
    '/usr/sbin/iptables': 'iptables',
    '/usr/sbin/conntrack': 'conntrack',
    '/usr/bin/buildah': 'buildah',
  };
  return Object.entries(need)
    .filter(([p]) => !existsSync(p))
    .map(([p, pkg]) => `${p} (apt package ${pkg})`);
}

function sh(cmd, args, opts = {}) {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], ...opts });
}

function writeSysctl(key, value) {
  writeFileSync(join('/proc/sys', ...key.split('.')), value);
}

/** The bridge with the node address, the service route and the egress guard. */
export function setUpNetwork() {
  if (spawnSync('ip', ['link', 'show', BRIDGE], { stdio: 'ignore' }).status !== 0) {
    sh('ip', ['link', 'add', BRIDGE, 'type', 'bridge']);
  }
  if (!sh('ip', ['-4', '-o', 'addr', 'show', 'dev', BRIDGE]).includes(`${NODE_IP}/`)) {
    sh('ip', ['addr', 'add', `${NODE_IP}/24`, 'dev', BRIDGE]);
  }
  sh('ip', ['link', 'set', BRIDGE, 'up']);
  sh('ip', ['route', 'replace', SERVICE_CIDR, 'dev', BRIDGE, 'src', NODE_IP]);
  // Pods reach each other and the node across the bridge; forwarding is needed for service
  // traffic the node DNATs, nothing leaves (guard below).
  writeSysctl('net.ipv4.ip_forward', '1');
  const rules = [
    `-o ${BRIDGE} -j RETURN`,
    '-o lo -j RETURN',
    `-s ${GUARDED_RANGE} -j DROP`,
    `-d ${GUARDED_RANGE} -j DROP`,
  ];
  const restore = [
    '*filter',
    ':SHARDBANK-EGRESS - [0:0]',
    ...rules.map((r) => `-A SHARDBANK-EGRESS ${r}`),
    'COMMIT',
    '',
  ].join('\n');
  sh('iptables-restore', ['--noflush'], { input: restore });
  for (const chain of ['FORWARD', 'OUTPUT']) {
    if (spawnSync('iptables', ['-C', chain, '-j', 'SHARDBANK-EGRESS'], { stdio: 'ignore' }).status !== 0) {
      sh('iptables', ['-I', chain, '1', '-j', 'SHARDBANK-EGRESS']);
    }
  }
}

function containerdConfig(dirs) {
  return `version = 2
root = "${dirs.state}/containerd/root"
state = "${dirs.run}/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "${containerdSocket(dirs)}"

[ttrpc]
  address = "${dirs.run}/containerd/containerd.sock.ttrpc"

[debug]
  level = "warn"

[plugins."io.containerd.internal.v1.opt"]
  path = "${dirs.state}/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "${RUNC}"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "${CNI_BIN}"
    conf_dir = "${dirs.state}/cni/net.d"
`;
}

function cniConfig(dirs) {
  return JSON.stringify(
    {
      cniVersion: '0.4.0',
      name: 'shardbank',
      plugins: [
        {
          type: 'bridge',
          bridge: BRIDGE,
          isGateway: true,
          ipMasq: false,
          hairpinMode: true,
          ipam: {
            type: 'host-local',
            dataDir: `${dirs.state}/cni/ipam`,
            ranges: [[{ subnet: POD_CIDR, rangeStart: '10.213.0.10', rangeEnd: '10.213.0.250', gateway: NODE_IP }]],
            routes: [{ dst: '0.0.0.0/0' }],
          },
        },
      ],
    },
    null,
    2,
  );
}

function kubeletConfig(dirs) {
  const d = dirs.state;
  return `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: ${NODE_IP}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: ${d}/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: ${d}/kubelet-serving.crt
tlsPrivateKeyFile: ${d}/kubelet-serving.key
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://${containerdSocket(dirs)}
clusterDNS: [${NODE_IP}]
clusterDomain: cluster.local
resolvConf: ${d}/resolv.conf
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
maxPods: 60
protectKernelDefaults: false
rotateCertificates: false
serverTLSBootstrap: false
shutdownGracePeriod: 0s
containerLogMaxSize: 10Mi
`;
}

function kubeProxyConfig(dirs) {
  return `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: ${dirs.state}/kube-proxy.kubeconfig}
mode: iptables
clusterCIDR: ${POD_CIDR}
bindAddress: ${NODE_IP}
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
hostnameOverride: ${NODE_NAME}
nodePortAddresses: [${NODE_IP}/32]
iptables: {localhostNodePorts: false, masqueradeAll: false, minSyncPeriod: 0s, syncPeriod: 30s}
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
`;
}

function corefile(dirs) {
  return `.:53 {
    bind ${NODE_IP}
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig ${dirs.state}/coredns.kubeconfig shardbank
        pods insecure
        ttl 1
    }
}
`;
}

/** Cluster objects the host-run add-ons need: RBAC for CoreDNS and the provisioner, the storage class. */
function addonsYaml() {
  return `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "shardbank:coredns"}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "shardbank:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "shardbank:coredns"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "shardbank:coredns"}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "shardbank:local-path-provisioner"}
rules:
- apiGroups: [""]
  resources: [nodes, configmaps]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [get, list, watch, update, patch]
- apiGroups: [""]
  resources: [persistentvolumes]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [""]
  resources: [pods, pods/log]
  verbs: [get, list, watch, create, delete]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch, update]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch, update]
- apiGroups: [storage.k8s.io]
  resources: [storageclasses]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "shardbank:local-path-provisioner"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "shardbank:local-path-provisioner"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "shardbank:local-path-provisioner"}]
---
apiVersion: v1
kind: Namespace
metadata: {name: local-path-storage}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: local-path-provisioner, namespace: local-path-storage}
automountServiceAccountToken: false
---
apiVersion: v1
kind: ConfigMap
metadata: {name: local-path-config, namespace: local-path-storage}
data:
  setup: |-
    #!/bin/sh
    set -eu
    # world-writable so the non-root replicas can write their ledger
    mkdir -m 0777 -p "$VOL_DIR"
  teardown: |-
    #!/bin/sh
    set -eu
    rm -rf "$VOL_DIR"
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: local-path
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: shardbank.local/local-path
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Delete
`;
}

function helperPodYaml() {
  return `apiVersion: v1
kind: Pod
metadata: {name: helper-pod}
spec:
  automountServiceAccountToken: false
  containers:
  - name: helper-pod
    image: ${HELPER_IMAGE}
    imagePullPolicy: Never
`;
}

function localPathConfig(dirs) {
  return JSON.stringify({
    nodePathMap: [{ node: 'DEFAULT_PATH_FOR_NON_LISTED_NODES', paths: [`${dirs.state}/local-path`] }],
  });
}

/** Imports an image archive (docker or OCI) into the node's containerd. */
export function importImage(archive, dirs = nodeDirs()) {
  sh('ctr', ['--address', containerdSocket(dirs), '-n', 'k8s.io', 'images', 'import', archive]);
}

/** The pause image: the static pause binary as the only file, made with buildah (no registry). */
export function ensurePauseImage(dirs = nodeDirs()) {
  const archive = join(dirs.images, 'pause-1.tar');
  if (existsSync(archive)) return archive;
  mkdirSync(dirs.images, { recursive: true });
  const b = buildahArgs();
  const ctr = sh('buildah', [...b, 'from', 'scratch']).trim();
  try {
    sh('buildah', [...b, 'copy', ctr, binaries().pause, '/pause']);
    sh('buildah', [...b, 'config', '--entrypoint', '["/pause"]', '--user', '65535:65535', ctr]);
    sh('buildah', [...b, 'commit', '--rm', ctr, `oci-archive:${archive}.tmp:${PAUSE_IMAGE}`]);
  } catch (err) {
    spawnSync('buildah', [...b, 'rm', ctr]);
    throw err;
  }
  execFileSync('mv', [`${archive}.tmp`, archive]);
  return archive;
}

/** buildah with its storage in the cache (not the host's /var/lib/containers). */
export function buildahArgs() {
  const root = join(cacheDir(), 'buildah');
  return ['--root', join(root, 'storage'), '--runroot', '/run/shardbank-buildah', '--storage-driver', 'overlay'];
}

/**
 * Starts the node. onLaunch(pid) records each process as soon as it runs.
 * Returns { kubeconfig, server, pids }.
 */
export async function startNode({ onLaunch = () => {}, log = () => {} } = {}) {
  const dirs = nodeDirs();
  const bin = binaries({
    need: [
      'etcd',
      'kube-apiserver',
      'kube-controller-manager',
      'kube-scheduler',
      'kubelet',
      'kube-proxy',
      'coredns',
      'local-path-provisioner',
      'pause',
    ],
  });
  const d = resolve(dirs.state);
  for (const sub of ['cni/net.d', 'cni/ipam', 'kubelet', 'local-path', 'containerd'])
    mkdirSync(join(d, sub), { recursive: true });
  mkdirSync(join(dirs.run, 'containerd'), { recursive: true });
  setUpNetwork();
  log('network: bridge, service route, egress guard');
  const pids = [];
  const record = (pid) => {
    pids.push(pid);
    onLaunch(pid);
  };
  const users = {
    kubelet: `/O=system:nodes/CN=system:node:${NODE_NAME}`,
    'controller-manager': '/CN=system:kube-controller-manager',
    scheduler: '/CN=system:kube-scheduler',
    'kube-proxy': '/CN=system:kube-proxy',
    'apiserver-kubelet-client': '/O=system:masters/CN=kube-apiserver-kubelet-client',
    coredns: '/CN=shardbank:coredns',
    'local-path-provisioner': '/CN=shardbank:local-path-provisioner',
  };
  // No CRD here: `helm install` of the chart or `kubectl apply -k deploy/` installs it, as for a user.
  const cp = await startControlPlane({
    stateDir: d,
    detached: true,
    onLaunch: record,
    installCrd: false,
    node: {
      ip: NODE_IP,
      serviceCidr: SERVICE_CIDR,
      serviceIp: SERVICE_IP,
      apiserverPort: APISERVER_PORT,
      certs: {
        clients: Object.entries(users).map(([name, subject]) => ({ name, subject })),
        servers: [{ name: 'kubelet-serving', subject: `/CN=${NODE_NAME}`, ips: [NODE_IP, '127.0.0.1'] }],
      },
    },
  });
  log(`kube-apiserver ${cp.server}`);
  for (const user of Object.keys(users))
    writeFileSync(join(d, `${user}.kubeconfig`), kubeconfigYaml(cp, user), { mode: 0o600 });
  const kubectl = (args, input) => sh(bin.kubectl, ['--kubeconfig', cp.kubeconfigPath, ...args], { input });

  const start = (name, command, args) => {
    const logFile = join(d, `${name}.log`);
    const child = launch(command, args, logFile, true);
    record(child.pid);
    return { child, logFile };
  };
  start('kube-controller-manager', bin['kube-controller-manager'], [
    `--kubeconfig=${d}/controller-manager.kubeconfig`,
    '--secure-port=0',
    '--leader-elect=false',
    '--use-service-account-credentials=true',
    `--service-account-private-key-file=${d}/sa.key`,
    `--root-ca-file=${d}/ca.crt`,
    `--cluster-signing-cert-file=${d}/ca.crt`,
    `--cluster-signing-key-file=${d}/ca.key`,
    '--cluster-name=shardbank',
    '--v=1',
  ]);
  start('kube-scheduler', bin['kube-scheduler'], [
    `--kubeconfig=${d}/scheduler.kubeconfig`,
    '--secure-port=0',
    '--leader-elect=false',
    '--v=1',
  ]);

  writeFileSync(join(d, 'containerd.toml'), containerdConfig(dirs));
  writeFileSync(join(d, 'cni/net.d/10-shardbank.conflist'), cniConfig(dirs));
  const containerd = start('containerd', CONTAINERD, ['--config', `${d}/containerd.toml`]);
  await waitFor(
    'containerd',
    async () => spawnSync('ctr', ['--address', containerdSocket(dirs), 'version'], { stdio: 'ignore' }).status === 0,
    containerd.child,
    containerd.logFile,
    60_000,
  );
  importImage(ensurePauseImage(dirs), dirs);
  for (const f of existsSync(dirs.images) ? readdirSync(dirs.images) : []) {
    if (f.endsWith('.tar') && f !== 'pause-1.tar') importImage(join(dirs.images, f), dirs);
  }
  log('containerd ready, images imported');

  writeFileSync(join(d, 'resolv.conf'), '# cluster DNS only: no upstream resolvers for pods\n');
  writeFileSync(join(d, 'kubelet.yaml'), kubeletConfig(dirs));
  const kubelet = start('kubelet', bin.kubelet, [
    `--config=${d}/kubelet.yaml`,
    `--kubeconfig=${d}/kubelet.kubeconfig`,
    `--root-dir=${d}/kubelet`,
    `--hostname-override=${NODE_NAME}`,
    `--node-ip=${NODE_IP}`,
    '--v=1',
  ]);
  writeFileSync(join(d, 'kube-proxy.yaml'), kubeProxyConfig(dirs));
  start('kube-proxy', bin['kube-proxy'], [`--config=${d}/kube-proxy.yaml`, '--v=1']);
  writeFileSync(join(d, 'Corefile'), corefile(dirs));
  start('coredns', bin.coredns, ['-conf', `${d}/Corefile`, '-dns.port', '53']);

  kubectl(['apply', '-f', '-'], addonsYaml());
  writeFileSync(join(d, 'local-path-config.json'), localPathConfig(dirs));
  writeFileSync(join(d, 'local-path-helper-pod.yaml'), helperPodYaml());
  start('local-path-provisioner', bin['local-path-provisioner'], [
    'start',
    `--kubeconfig=${d}/local-path-provisioner.kubeconfig`,
    '--namespace=local-path-storage',
    '--provisioner-name=shardbank.local/local-path',
    `--config=${d}/local-path-config.json`,
    `--helper-pod-file=${d}/local-path-helper-pod.yaml`,
    `--helper-image=${HELPER_IMAGE}`,
    '--service-account-name=local-path-provisioner',
    '--configmap-name=local-path-config',
  ]);

  await waitFor(
    'node Ready',
    async () => {
      const out = kubectl(['get', 'node', NODE_NAME, '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status}']);
      return out.trim() === 'True';
    },
    kubelet.child,
    kubelet.logFile,
  );
  await waitFor(
    'default service account',
    async () => {
      kubectl(['get', 'serviceaccount', 'default', '-n', 'default']);
      return true;
    },
    undefined,
    join(d, 'kube-controller-manager.log'),
  );
  log('node Ready');
  await sleep(0);
  return { kubeconfig: cp.kubeconfigPath, server: cp.server, pids };
}
