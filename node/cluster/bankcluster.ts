// The BankCluster resource: one set of types, defaults and validation rules shared by the
// operator (whose CRD schema and CEL rules must say the same, checked by a test) and by
// the local runtime (`shardbank up -f manifest.yaml`). Messages name the field.
import type { Topology } from './topology.js';

export const API_GROUP = 'shardbank.io';
export const API_VERSION = 'v1alpha1';
export const KIND = 'BankCluster';

export const LIMITS = {
  shardsMax: 64,
  clientsMax: 64,
  clientNameLengthMax: 63,
  secretNamePrefixLengthMax: 200,
  replicasPerShardMax: 7,
  itemsPerShardMax: 1_000_000,
  initialBalanceMax: 1_000_000_000_000,
  maxTransferAmountMax: 1_000_000_000_000,
} as const;

export const IMAGE_PULL_POLICIES = ['Always', 'IfNotPresent', 'Never'] as const;
export type ImagePullPolicy = (typeof IMAGE_PULL_POLICIES)[number];

export interface StorageSpec {
  size: string;
  storageClassName?: string;
  retainOnDelete: boolean;
}

export interface NatsSpec {
  /** An existing NATS; empty means the operator (or `shardbank up`) runs one. */
  url?: string;
  managed: boolean;
  /**
   * With `url` (the operator only): the Secret holding that NATS's CA (`ca.crt`) and the two
   * users' credentials files (`replica.json`, `watcher.json`; docs/SECURITY.md, "NATS").
   * Ignored by `shardbank up -f`, which has its own NATS files.
   */
  credentialsSecret?: string;
}

/**
 * Certificates the user provides (cert-manager compatible): one Secret per replica, named
 * `<secretNamePrefix>-s<shard>-<ordinal>`, each with `ca.crt`, `tls.crt` and `tls.key`; the
 * certificate names the replica's identity as its one shardbank SAN URI. Without spec.tls the
 * operator runs its own CA and issues every certificate (docs/SECURITY.md).
 */
export interface TlsSpec {
  secretNamePrefix: string;
}

export const CLIENT_ROLES = ['read', 'transfer'] as const;
export type ClientRoleName = (typeof CLIENT_ROLES)[number];

/** An application the operator issues a client certificate for (Secret `<cluster>-client-<name>`). */
export interface ClientSpec {
  name: string;
  role: ClientRoleName;
}

export interface PodTemplateOverrides {
  affinity?: Record<string, unknown>;
  tolerations?: Record<string, unknown>[];
  nodeSelector?: Record<string, string>;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export interface BankClusterSpec {
  shards: number;
  replicasPerShard: number;
  itemsPerShard: number;
  initialBalance: number;
  maxTransferAmount: number;
  image: string;
  imagePullPolicy: ImagePullPolicy;
  resources?: Record<string, unknown>;
  storage: StorageSpec;
  nats: NatsSpec;
  tls?: TlsSpec;
  clients: ClientSpec[];
  podTemplate?: PodTemplateOverrides;
  paused: boolean;
}

export interface BankClusterMetadata {
  name: string;
  namespace?: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export interface BankCluster {
  apiVersion: string;
  kind: string;
  metadata: BankClusterMetadata;
  spec: BankClusterSpec;
  status?: Record<string, unknown>;
}

export const DEFAULT_SPEC: BankClusterSpec = {
  shards: 3,
  replicasPerShard: 3,
  itemsPerShard: 3000,
  initialBalance: 10,
  maxTransferAmount: 1_000_000_000,
  image: 'shardbank/node:0.1.0',
  imagePullPolicy: 'IfNotPresent',
  storage: { size: '1Gi', retainOnDelete: true },
  nats: { managed: true },
  clients: [],
  paused: false,
};

/**
 * Messages for the rules the CRD also enforces with CEL (operator/crd/ generates the CRD
 * from these), so `kubectl apply` and `shardbank up -f` say the same thing.
 */
export const RULE_MESSAGES = {
  replicasPerShardOdd: 'must be odd (1, 3, 5 or 7; 1 for development only)',
  shardsImmutable: 'is immutable: resharding a running cluster is not supported',
  itemsPerShardImmutable: 'is immutable: it decides which shard owns each item',
  initialBalanceImmutable: 'is immutable: it defines the money the cluster holds',
  storageSize: 'must be a quantity such as 1Gi',
  storageSizePositive: 'must be greater than zero',
  storageImmutable: 'is immutable: a StatefulSet cannot change its volume claim template',
  natsUrl: 'must be a nats:// or tls:// URL',
  natsCredentialsSecret: 'must be a Secret name (a lowercase DNS name of at most 253 characters)',
  natsCredentialsSecretRequired:
    "is required with spec.nats.url: a Secret with that NATS's ca.crt and the credentials files replica.json and watcher.json (docs/SECURITY.md)",
  natsCredentialsSecretWithoutUrl:
    'is only for an external NATS (spec.nats.url); the operator makes the credentials of the NATS it runs itself',
  metadataName: 'must be a lowercase DNS label of at most 40 characters',
  tlsSecretName:
    'is replaced by spec.tls.secretNamePrefix: each replica needs its own certificate, in Secret <secretNamePrefix>-s<shard>-<ordinal>',
  tlsSecretNamePrefix: 'must be a lowercase DNS name prefix of at most 200 characters',
  clientName: 'must be a lowercase DNS label of at most 63 characters',
  clientNamesUnique: 'client names must be unique',
  clientsWithUserTls:
    'the operator issues client certificates only with its own CA (without spec.tls); with spec.tls, issue them from the same issuer as the replicas',
} as const;

/** The patterns behind RULE_MESSAGES (the CRD uses the same source text). */
export const RULE_PATTERNS = {
  name: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$',
  nameLengthMax: 40,
  quantity: '^[0-9]+(\\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$',
  natsUrl: '^(nats|tls)://',
  zeroQuantity: '^0+(\\.0+)?[A-Za-z]*$',
  clientName: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$',
  secretNamePrefix: '^[a-z0-9]([-.a-z0-9]*[a-z0-9])?$',
} as const;

export class ManifestError extends Error {
  override name = 'ManifestError';
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
  }
}

export type Validated<T> = { ok: true; value: T } | { ok: false; errors: ManifestError[] };

const NAME_PATTERN = new RegExp(RULE_PATTERNS.name);
const QUANTITY_PATTERN = new RegExp(RULE_PATTERNS.quantity);
const NATS_URL_PATTERN = new RegExp(RULE_PATTERNS.natsUrl);
const ZERO_QUANTITY_PATTERN = new RegExp(RULE_PATTERNS.zeroQuantity);
const CLIENT_NAME_PATTERN = new RegExp(RULE_PATTERNS.clientName);
const SECRET_PREFIX_PATTERN = new RegExp(RULE_PATTERNS.secretNamePrefix);

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function integerField(
  spec: Record<string, unknown>,
  key: string,
  fallback: number,
  min: number,
  max: number,
  errors: ManifestError[],
): number {
  const value = spec[key];
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    errors.push(
      new ManifestError(`spec.${key}`, `must be an integer from ${min} to ${max}, got ${JSON.stringify(value)}`),
    );
    return fallback;
  }
  return value;
}

/**
 * The fields a manifest may set, per object (the CRD's schema; free-form parts such as
 * metadata, resources and podTemplate.affinity are not checked). The API server prunes unknown
 * fields of a stored BankCluster; a manifest file given to `shardbank up -f` is checked here
 * instead, so that a typo (`replicaPerShard`) is an error, not a silent default.
 */
const KNOWN_FIELDS: Record<string, readonly string[]> = {
  '': ['apiVersion', 'kind', 'metadata', 'spec', 'status'],
  spec: [
    'shards',
    'replicasPerShard',
    'itemsPerShard',
    'initialBalance',
    'maxTransferAmount',
    'image',
    'imagePullPolicy',
    'resources',
    'storage',
    'nats',
    'tls',
    'clients',
    'podTemplate',
    'paused',
  ],
  'spec.storage': ['size', 'storageClassName', 'retainOnDelete'],
  'spec.nats': ['url', 'managed', 'credentialsSecret'],
  'spec.tls': ['secretNamePrefix'],
  'spec.podTemplate': ['affinity', 'tolerations', 'nodeSelector', 'labels', 'annotations'],
  'spec.resources': ['limits', 'requests'],
};

/** Every field of `input` the BankCluster schema does not have, as errors naming the field. */
export function unknownBankClusterFields(input: unknown): ManifestError[] {
  const errors: ManifestError[] = [];
  const visit = (value: unknown, path: string) => {
    const known = KNOWN_FIELDS[path];
    if (known === undefined || !isRecord(value)) return;
    for (const key of Object.keys(value)) {
      const field = path === '' ? key : `${path}.${key}`;
      if (!known.includes(key)) {
        const close = known.find(
          (candidate) =>
            candidate.toLowerCase() === key.toLowerCase() ||
            editDistanceAtMost1(candidate, key) ||
            editDistanceAtMost1(candidate.toLowerCase(), key.toLowerCase()),
        );
        errors.push(
          new ManifestError(
            field,
            `unknown field${close ? ` (did you mean ${path === '' ? close : `${path}.${close}`}?)` : ''}; known fields here: ${known.join(', ')}`,
          ),
        );
      } else visit(value[key], field);
    }
  };
  visit(input, '');
  return errors;
}

function editDistanceAtMost1(a: string, b: string): boolean {
  if (a === b) return true;
  if (Math.abs(a.length - b.length) > 1) return false;
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i += 1;
  if (a.length === b.length) return a.slice(i + 1) === b.slice(i + 1);
  return a.length > b.length ? a.slice(i + 1) === b.slice(i) : a.slice(i) === b.slice(i + 1);
}

/** Applies defaults and checks a parsed manifest object; never throws on bad input. */
export function validateBankCluster(input: unknown): Validated<BankCluster> {
  const errors: ManifestError[] = [];
  if (!isRecord(input)) return { ok: false, errors: [new ManifestError('(root)', 'must be a YAML/JSON object')] };
  if (input.kind !== undefined && input.kind !== KIND) {
    errors.push(new ManifestError('kind', `must be ${KIND}, got ${JSON.stringify(input.kind)}`));
  }
  const apiVersion = input.apiVersion ?? `${API_GROUP}/${API_VERSION}`;
  if (apiVersion !== `${API_GROUP}/${API_VERSION}`) {
    errors.push(
      new ManifestError('apiVersion', `must be ${API_GROUP}/${API_VERSION}, got ${JSON.stringify(apiVersion)}`),
    );
  }
  const metadata = isRecord(input.metadata) ? input.metadata : {};
  const name = metadata.name;
  if (
    typeof name !== 'string' ||
    name.length === 0 ||
    name.length > RULE_PATTERNS.nameLengthMax ||
    !NAME_PATTERN.test(name)
  ) {
    errors.push(new ManifestError('metadata.name', RULE_MESSAGES.metadataName));
  }
  const raw = input.spec === undefined ? {} : input.spec;
  if (!isRecord(raw)) return { ok: false, errors: [...errors, new ManifestError('spec', 'must be an object')] };
  const spec = buildSpec(raw, errors);
  if (errors.length > 0) return { ok: false, errors };
  const namespace = typeof metadata.namespace === 'string' ? metadata.namespace : undefined;
  return {
    ok: true,
    value: {
      apiVersion: `${API_GROUP}/${API_VERSION}`,
      kind: KIND,
      metadata: {
        ...(metadata as unknown as BankClusterMetadata),
        name: name as string,
        ...(namespace ? { namespace } : {}),
      },
      spec,
    },
  };
}

function buildSpec(raw: Record<string, unknown>, errors: ManifestError[]): BankClusterSpec {
  const d = DEFAULT_SPEC;
  const shards = integerField(raw, 'shards', d.shards, 1, LIMITS.shardsMax, errors);
  const replicasPerShard = integerField(
    raw,
    'replicasPerShard',
    d.replicasPerShard,
    1,
    LIMITS.replicasPerShardMax,
    errors,
  );
  if (replicasPerShard % 2 === 0) {
    errors.push(
      new ManifestError('spec.replicasPerShard', `${RULE_MESSAGES.replicasPerShardOdd}, got ${replicasPerShard}`),
    );
  }
  const itemsPerShard = integerField(raw, 'itemsPerShard', d.itemsPerShard, 1, LIMITS.itemsPerShardMax, errors);
  const initialBalance = integerField(raw, 'initialBalance', d.initialBalance, 0, LIMITS.initialBalanceMax, errors);
  const maxTransferAmount = integerField(
    raw,
    'maxTransferAmount',
    d.maxTransferAmount,
    1,
    LIMITS.maxTransferAmountMax,
    errors,
  );
  const image = raw.image ?? d.image;
  if (typeof image !== 'string' || image.length === 0)
    errors.push(new ManifestError('spec.image', 'must be a non-empty string'));
  const imagePullPolicy = raw.imagePullPolicy ?? d.imagePullPolicy;
  if (!IMAGE_PULL_POLICIES.includes(imagePullPolicy as ImagePullPolicy)) {
    errors.push(new ManifestError('spec.imagePullPolicy', `must be one of ${IMAGE_PULL_POLICIES.join(', ')}`));
  }
  const storage = buildStorage(raw.storage, errors);
  const nats = buildNats(raw.nats, errors);
  const paused = raw.paused ?? false;
  if (typeof paused !== 'boolean') errors.push(new ManifestError('spec.paused', 'must be true or false'));
  const spec: BankClusterSpec = {
    shards,
    replicasPerShard,
    itemsPerShard,
    initialBalance,
    maxTransferAmount,
    image: image as string,
    imagePullPolicy: imagePullPolicy as ImagePullPolicy,
    storage,
    nats,
    clients: buildClients(raw.clients, errors),
    paused: paused as boolean,
  };
  if (raw.resources !== undefined) {
    if (isRecord(raw.resources)) spec.resources = raw.resources;
    else errors.push(new ManifestError('spec.resources', 'must be an object'));
  }
  if (raw.tls !== undefined) {
    const tls = buildTls(raw.tls, errors);
    if (tls) spec.tls = tls;
    if (tls && spec.clients.length > 0)
      errors.push(new ManifestError('spec.clients', RULE_MESSAGES.clientsWithUserTls));
  }
  if (raw.podTemplate !== undefined) {
    if (isRecord(raw.podTemplate)) spec.podTemplate = raw.podTemplate as PodTemplateOverrides;
    else errors.push(new ManifestError('spec.podTemplate', 'must be an object'));
  }
  return spec;
}

function buildTls(raw: unknown, errors: ManifestError[]): TlsSpec | undefined {
  if (!isRecord(raw)) {
    errors.push(new ManifestError('spec.tls', 'must be an object'));
    return undefined;
  }
  if (raw.secretName !== undefined) {
    errors.push(new ManifestError('spec.tls.secretName', RULE_MESSAGES.tlsSecretName));
    return undefined;
  }
  const prefix = raw.secretNamePrefix;
  if (
    typeof prefix !== 'string' ||
    prefix.length > LIMITS.secretNamePrefixLengthMax ||
    !SECRET_PREFIX_PATTERN.test(prefix)
  ) {
    errors.push(
      new ManifestError(
        'spec.tls.secretNamePrefix',
        `${RULE_MESSAGES.tlsSecretNamePrefix}, got ${JSON.stringify(prefix)}`,
      ),
    );
    return undefined;
  }
  return { secretNamePrefix: prefix };
}

function buildClients(raw: unknown, errors: ManifestError[]): ClientSpec[] {
  if (raw === undefined) return [];
  if (!Array.isArray(raw)) {
    errors.push(new ManifestError('spec.clients', 'must be a list of {name, role}'));
    return [];
  }
  if (raw.length > LIMITS.clientsMax) {
    errors.push(new ManifestError('spec.clients', `must have at most ${LIMITS.clientsMax} entries, got ${raw.length}`));
    return [];
  }
  const out: ClientSpec[] = [];
  raw.forEach((entry: unknown, i) => {
    const field = `spec.clients[${i}]`;
    if (!isRecord(entry)) {
      errors.push(new ManifestError(field, 'must be an object with name and role'));
      return;
    }
    for (const key of Object.keys(entry)) {
      if (key !== 'name' && key !== 'role')
        errors.push(new ManifestError(`${field}.${key}`, 'unknown field; known fields here: name, role'));
    }
    const { name, role } = entry;
    let ok = true;
    if (typeof name !== 'string' || name.length > LIMITS.clientNameLengthMax || !CLIENT_NAME_PATTERN.test(name)) {
      errors.push(new ManifestError(`${field}.name`, `${RULE_MESSAGES.clientName}, got ${JSON.stringify(name)}`));
      ok = false;
    } else if (out.some((c) => c.name === name)) {
      errors.push(new ManifestError('spec.clients', `${RULE_MESSAGES.clientNamesUnique}, ${name} is listed twice`));
      ok = false;
    }
    if (!CLIENT_ROLES.includes(role as ClientRoleName)) {
      errors.push(
        new ManifestError(`${field}.role`, `must be one of ${CLIENT_ROLES.join(', ')}, got ${JSON.stringify(role)}`),
      );
      ok = false;
    }
    if (ok) out.push({ name: name as string, role: role as ClientRoleName });
  });
  return out;
}

function buildStorage(raw: unknown, errors: ManifestError[]): StorageSpec {
  const d = DEFAULT_SPEC.storage;
  if (raw === undefined) return { ...d };
  if (!isRecord(raw)) {
    errors.push(new ManifestError('spec.storage', 'must be an object'));
    return { ...d };
  }
  const size = raw.size ?? d.size;
  if (typeof size !== 'string' || !QUANTITY_PATTERN.test(size)) {
    errors.push(new ManifestError('spec.storage.size', `${RULE_MESSAGES.storageSize}, got ${JSON.stringify(size)}`));
  } else if (ZERO_QUANTITY_PATTERN.test(size)) {
    errors.push(new ManifestError('spec.storage.size', RULE_MESSAGES.storageSizePositive));
  }
  const retainOnDelete = raw.retainOnDelete ?? d.retainOnDelete;
  if (typeof retainOnDelete !== 'boolean')
    errors.push(new ManifestError('spec.storage.retainOnDelete', 'must be true or false'));
  const storage: StorageSpec = { size: size as string, retainOnDelete: retainOnDelete as boolean };
  if (raw.storageClassName !== undefined) {
    if (typeof raw.storageClassName === 'string') storage.storageClassName = raw.storageClassName;
    else errors.push(new ManifestError('spec.storage.storageClassName', 'must be a string'));
  }
  return storage;
}

function buildNats(raw: unknown, errors: ManifestError[]): NatsSpec {
  if (raw === undefined) return { ...DEFAULT_SPEC.nats };
  if (!isRecord(raw)) {
    errors.push(new ManifestError('spec.nats', 'must be an object'));
    return { ...DEFAULT_SPEC.nats };
  }
  const nats: NatsSpec = { managed: true };
  if (raw.url !== undefined) {
    if (typeof raw.url !== 'string' || !NATS_URL_PATTERN.test(raw.url)) {
      errors.push(new ManifestError('spec.nats.url', RULE_MESSAGES.natsUrl));
    } else {
      nats.url = raw.url;
      nats.managed = false;
    }
  }
  if (raw.managed !== undefined) {
    if (typeof raw.managed !== 'boolean') errors.push(new ManifestError('spec.nats.managed', 'must be true or false'));
    else nats.managed = raw.managed;
  }
  if (raw.credentialsSecret !== undefined) {
    const name = raw.credentialsSecret;
    if (typeof name !== 'string' || name.length > 253 || !SECRET_PREFIX_PATTERN.test(name))
      errors.push(new ManifestError('spec.nats.credentialsSecret', RULE_MESSAGES.natsCredentialsSecret));
    else if (raw.url === undefined)
      errors.push(new ManifestError('spec.nats.credentialsSecret', RULE_MESSAGES.natsCredentialsSecretWithoutUrl));
    else nats.credentialsSecret = name;
  }
  return nats;
}

/**
 * Changes the running system cannot make safely (mirrored by CEL rules in the CRD).
 * spec.replicasPerShard is not one of them: a change is an online membership change, one
 * voter at a time (docs/ARCHITECTURE.md, "Membership"; the operator's membership driver).
 */
export function validateBankClusterUpdate(previous: BankClusterSpec, next: BankClusterSpec): ManifestError[] {
  const errors: ManifestError[] = [];
  if (previous.shards !== next.shards) {
    errors.push(new ManifestError('spec.shards', RULE_MESSAGES.shardsImmutable));
  }
  if (previous.itemsPerShard !== next.itemsPerShard) {
    errors.push(new ManifestError('spec.itemsPerShard', RULE_MESSAGES.itemsPerShardImmutable));
  }
  if (previous.initialBalance !== next.initialBalance) {
    errors.push(new ManifestError('spec.initialBalance', RULE_MESSAGES.initialBalanceImmutable));
  }
  if (previous.storage.size !== next.storage.size) {
    errors.push(new ManifestError('spec.storage.size', RULE_MESSAGES.storageImmutable));
  }
  if (previous.storage.storageClassName !== next.storage.storageClassName) {
    errors.push(new ManifestError('spec.storage.storageClassName', RULE_MESSAGES.storageImmutable));
  }
  return errors;
}

export function topologyOf(spec: BankClusterSpec): Topology {
  return {
    shards: spec.shards,
    itemsPerShard: spec.itemsPerShard,
    replicasPerShard: spec.replicasPerShard,
    initialBalance: spec.initialBalance,
  };
}

export function defaultBankCluster(name = 'local'): BankCluster {
  return {
    apiVersion: `${API_GROUP}/${API_VERSION}`,
    kind: KIND,
    metadata: { name },
    spec: structuredClone(DEFAULT_SPEC),
  };
}

/** Kubernetes names for a shard's workloads (SPEC section 1). */
export const names = {
  statefulSet: (cluster: string, shard: number) => `${cluster}-s${shard}`,
  headlessService: (cluster: string, shard: number) => `${cluster}-s${shard}`,
  pod: (cluster: string, shard: number, ordinal: number) => `${cluster}-s${shard}-${ordinal}`,
  clientService: (cluster: string) => `${cluster}-client`,
  topologyConfigMap: (cluster: string) => `${cluster}-topology`,
  pdb: (cluster: string, shard: number) => `${cluster}-s${shard}`,
  networkPolicy: (cluster: string) => `${cluster}`,
  /** The operator's CA (without spec.tls). */
  caSecret: (cluster: string) => `${cluster}-ca`,
  /** A replica's certificate: the operator's, or `<spec.tls.secretNamePrefix>-s<shard>-<ordinal>`. */
  replicaTlsSecret: (cluster: string, shard: number, ordinal: number, prefix?: string) =>
    prefix === undefined ? `${cluster}-s${shard}-${ordinal}-tls` : `${prefix}-s${shard}-${ordinal}`,
  clientSecret: (cluster: string, client: string) => `${cluster}-client-${client}`,
  /** The NATS the operator runs for the cluster (spec.nats.managed): StatefulSet and Service. */
  nats: (cluster: string) => `${cluster}-nats`,
  /** Its server certificate: the operator's, or `<spec.tls.secretNamePrefix>-nats`. */
  natsTlsSecret: (cluster: string, prefix?: string) =>
    prefix === undefined ? `${cluster}-nats-tls` : `${prefix}-nats`,
  /** Its nats.conf (a Secret: it holds the users' passwords). */
  natsConfigSecret: (cluster: string) => `${cluster}-nats-config`,
  /**
   * Its NetworkPolicy. A dot, which no cluster name has: `<cluster>-nats` would be the
   * NetworkPolicy of a BankCluster named `<cluster>-nats`.
   */
  natsNetworkPolicy: (cluster: string) => `${cluster}.nats`,
  /** A NATS user's credentials (ca.crt, credentials.json): role `replica` or `watcher`. */
  natsCredentialsSecret: (cluster: string, role: string) => `${cluster}-nats-${role}`,
} as const;
