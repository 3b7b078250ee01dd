// The BankCluster CustomResourceDefinition, generated from the shared TypeScript rules in
// node/cluster/bankcluster.ts so the API server and `shardbank up -f` enforce the same
// defaults, ranges and messages. deploy/ and charts/ hold the rendered YAML; a test checks
// that they are current (regenerate with `npm run crd:generate`).
import {
  API_GROUP,
  API_VERSION,
  CLIENT_ROLES,
  DEFAULT_SPEC,
  IMAGE_PULL_POLICIES,
  KIND,
  LIMITS,
  RULE_MESSAGES,
  RULE_PATTERNS,
} from '../../node/cluster/bankcluster.js';
import { statusSchema } from './status-schema.js';

type Schema = Record<string, unknown>;

export const CRD_NAME = `bankclusters.${API_GROUP}`;
export const PLURAL = 'bankclusters';

/** A regular expression as a single-quoted CEL string literal body. */
function celString(source: string): string {
  return source.replaceAll('\\', '\\\\').replaceAll("'", "\\'");
}

function immutable(message: string): Schema[] {
  return [{ rule: 'self == oldSelf', message }];
}

function integer(min: number, max: number, fallback: number, extra: Schema = {}): Schema {
  return { type: 'integer', format: 'int64', minimum: min, maximum: max, default: fallback, ...extra };
}

const stringMap: Schema = { type: 'object', additionalProperties: { type: 'string' } };
const freeForm: Schema = { type: 'object', 'x-kubernetes-preserve-unknown-fields': true };
const quantityMap: Schema = {
  type: 'object',
  additionalProperties: { 'x-kubernetes-int-or-string': true, anyOf: [{ type: 'integer' }, { type: 'string' }] },
};

function storageSchema(): Schema {
  const d = DEFAULT_SPEC.storage;
  return {
    type: 'object',
    default: {},
    description: 'Persistent volume for each replica (the ledger lives here).',
    properties: {
      size: {
        type: 'string',
        maxLength: 32,
        default: d.size,
        'x-kubernetes-validations': [
          { rule: `self.matches('${celString(RULE_PATTERNS.quantity)}')`, message: RULE_MESSAGES.storageSize },
          {
            rule: `!self.matches('${celString(RULE_PATTERNS.zeroQuantity)}')`,
            message: RULE_MESSAGES.storageSizePositive,
          },
          ...immutable(RULE_MESSAGES.storageImmutable),
        ],
      },
      storageClassName: { type: 'string', minLength: 1, maxLength: 253 },
      retainOnDelete: {
        type: 'boolean',
        default: d.retainOnDelete,
        description: 'Keep the PVCs (the money) when the BankCluster is deleted.',
      },
    },
    'x-kubernetes-validations': [
      {
        rule: 'has(self.storageClassName) == has(oldSelf.storageClassName) && (!has(self.storageClassName) || self.storageClassName == oldSelf.storageClassName)',
        message: RULE_MESSAGES.storageImmutable,
        fieldPath: '.storageClassName',
      },
    ],
  };
}

function specSchema(): Schema {
  const d = DEFAULT_SPEC;
  return {
    type: 'object',
    default: {},
    properties: {
      shards: integer(1, LIMITS.shardsMax, d.shards, {
        description: 'Number of shards (Paxos groups). Immutable.',
        'x-kubernetes-validations': immutable(RULE_MESSAGES.shardsImmutable),
      }),
      replicasPerShard: integer(1, LIMITS.replicasPerShardMax, d.replicasPerShard, {
        description:
          'Replicas (voters) per shard: 1 (development only), 3, 5 or 7. A change is made online, one voter at a time: the operator adds a pod, lets it catch up as a learner and promotes it, or demotes and removes the member on the highest pod before removing that pod (condition MembershipChanging).',
        'x-kubernetes-validations': [{ rule: 'self % 2 == 1', message: RULE_MESSAGES.replicasPerShardOdd }],
      }),
      itemsPerShard: integer(1, LIMITS.itemsPerShardMax, d.itemsPerShard, {
        description: 'Accounts per shard. Immutable.',
        'x-kubernetes-validations': immutable(RULE_MESSAGES.itemsPerShardImmutable),
      }),
      initialBalance: integer(0, LIMITS.initialBalanceMax, d.initialBalance, {
        description: 'Starting balance of every account. Immutable.',
        'x-kubernetes-validations': immutable(RULE_MESSAGES.initialBalanceImmutable),
      }),
      maxTransferAmount: integer(1, LIMITS.maxTransferAmountMax, d.maxTransferAmount),
      image: { type: 'string', minLength: 1, maxLength: 1024, default: d.image },
      imagePullPolicy: { type: 'string', enum: [...IMAGE_PULL_POLICIES], default: d.imagePullPolicy },
      resources: { type: 'object', properties: { limits: quantityMap, requests: quantityMap } },
      storage: storageSchema(),
      nats: {
        type: 'object',
        default: {},
        description:
          'NATS for leader announcements: an existing one (url, with credentialsSecret) or one the operator runs for this cluster (managed), with TLS and two users either way.',
        properties: {
          url: {
            type: 'string',
            maxLength: 1024,
            'x-kubernetes-validations': [
              { rule: `self.matches('${celString(RULE_PATTERNS.natsUrl)}')`, message: RULE_MESSAGES.natsUrl },
            ],
          },
          managed: { type: 'boolean' },
          credentialsSecret: {
            type: 'string',
            maxLength: 253,
            description:
              'With url: a Secret with the NATS server CA (ca.crt) and the credentials files of the two users, replica.json and watcher.json ({"user", "password", "inboxPrefix"}). Without url the operator runs a NATS for this cluster (TLS from the cluster CA, its own users) and makes these itself.',
            'x-kubernetes-validations': [
              {
                rule: `self.matches('${celString(RULE_PATTERNS.secretNamePrefix)}')`,
                message: RULE_MESSAGES.natsCredentialsSecret,
              },
            ],
          },
        },
        'x-kubernetes-validations': [
          {
            rule: '!has(self.url) || has(self.credentialsSecret)',
            message: RULE_MESSAGES.natsCredentialsSecretRequired,
            fieldPath: '.credentialsSecret',
          },
          {
            rule: 'has(self.url) || !has(self.credentialsSecret)',
            message: RULE_MESSAGES.natsCredentialsSecretWithoutUrl,
            fieldPath: '.credentialsSecret',
          },
        ],
      },
      tls: {
        type: 'object',
        description:
          'Certificates from your issuer (e.g. cert-manager): one Secret per replica, <secretNamePrefix>-s<shard>-<ordinal>, with ca.crt, tls.crt and tls.key, naming the replica identity shardbank://<namespace>/<cluster>/shard/<s>/replica/<o> as a SAN URI. Unset: the operator runs its own CA (Secret <cluster>-ca) and issues and renews every certificate.',
        properties: {
          secretNamePrefix: {
            type: 'string',
            maxLength: LIMITS.secretNamePrefixLengthMax,
            'x-kubernetes-validations': [
              {
                rule: `self.matches('${celString(RULE_PATTERNS.secretNamePrefix)}')`,
                message: RULE_MESSAGES.tlsSecretNamePrefix,
              },
            ],
          },
          // Kept in the schema (not pruned) so that an old manifest is refused, not silently
          // given the operator's certificates.
          secretName: {
            type: 'string',
            'x-kubernetes-validations': [{ rule: 'false', message: RULE_MESSAGES.tlsSecretName }],
          },
        },
        'x-kubernetes-validations': [
          {
            rule: 'has(self.secretNamePrefix)',
            message: RULE_MESSAGES.tlsSecretNamePrefix,
            fieldPath: '.secretNamePrefix',
          },
        ],
      },
      clients: {
        type: 'array',
        description:
          'Applications that get a client certificate from the operator, each in Secret <cluster>-client-<name> (ca.crt, tls.crt, tls.key). Only without spec.tls.',
        maxItems: LIMITS.clientsMax,
        items: {
          type: 'object',
          required: ['name', 'role'],
          properties: {
            name: {
              type: 'string',
              maxLength: LIMITS.clientNameLengthMax,
              'x-kubernetes-validations': [
                { rule: `self.matches('${celString(RULE_PATTERNS.clientName)}')`, message: RULE_MESSAGES.clientName },
              ],
            },
            role: {
              type: 'string',
              enum: [...CLIENT_ROLES],
              description: 'read: balances and status; transfer: also transfers (its own client ids).',
            },
          },
        },
        'x-kubernetes-validations': [
          { rule: 'self.all(c, self.exists_one(d, d.name == c.name))', message: RULE_MESSAGES.clientNamesUnique },
        ],
      },
      podTemplate: {
        type: 'object',
        properties: {
          affinity: freeForm,
          tolerations: { type: 'array', items: freeForm },
          nodeSelector: stringMap,
          labels: stringMap,
          annotations: stringMap,
        },
      },
      paused: { type: 'boolean', default: d.paused, description: 'Stop reconciling (workloads are left as they are).' },
    },
    'x-kubernetes-validations': [
      {
        rule: '!has(self.tls) || !has(self.clients) || size(self.clients) == 0',
        message: RULE_MESSAGES.clientsWithUserTls,
        fieldPath: '.clients',
      },
    ],
  };
}

export function bankClusterCrd(): Schema {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: CRD_NAME },
    spec: {
      group: API_GROUP,
      names: { kind: KIND, listKind: `${KIND}List`, plural: PLURAL, singular: 'bankcluster', shortNames: ['bank'] },
      scope: 'Namespaced',
      versions: [
        {
          name: API_VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: [
            { name: 'Shards', type: 'integer', jsonPath: '.spec.shards' },
            { name: 'Replicas', type: 'integer', jsonPath: '.spec.replicasPerShard' },
            { name: 'Ready', type: 'string', jsonPath: '.status.ready' },
            { name: 'Leaders', type: 'string', jsonPath: '.status.leaders' },
            { name: 'Phase', type: 'string', jsonPath: '.status.phase' },
            { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
          ],
          schema: {
            openAPIV3Schema: {
              type: 'object',
              description: 'A sharded, replicated bank ledger: one Multi-Paxos StatefulSet per shard.',
              properties: {
                apiVersion: { type: 'string' },
                kind: { type: 'string' },
                metadata: { type: 'object' },
                spec: specSchema(),
                status: statusSchema(),
              },
              'x-kubernetes-validations': [
                {
                  rule: `self.metadata.name.size() <= ${RULE_PATTERNS.nameLengthMax}`,
                  message: `metadata.name: ${RULE_MESSAGES.metadataName}`,
                },
              ],
            },
          },
        },
      ],
    },
  };
}
