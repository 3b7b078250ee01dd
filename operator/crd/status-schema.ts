// OpenAPI schema of BankCluster.status (see operator/status/bankcluster-status.ts for the type).
type Schema = Record<string, unknown>;

const condition: Schema = {
  type: 'object',
  required: ['type', 'status', 'lastTransitionTime', 'reason', 'message'],
  properties: {
    type: { type: 'string', maxLength: 316 },
    status: { type: 'string', enum: ['True', 'False', 'Unknown'] },
    observedGeneration: { type: 'integer', format: 'int64', minimum: 0 },
    lastTransitionTime: { type: 'string', format: 'date-time' },
    reason: { type: 'string', maxLength: 1024, minLength: 1 },
    message: { type: 'string', maxLength: 32768 },
  },
};

const shardStatus: Schema = {
  type: 'object',
  required: ['shard'],
  properties: {
    shard: { type: 'integer' },
    replicas: { type: 'integer' },
    readyReplicas: { type: 'integer' },
    leader: {
      type: 'object',
      nullable: true,
      properties: {
        ordinal: { type: 'integer' },
        pod: { type: 'string' },
        address: { type: 'string' },
        ballot: {
          type: 'object',
          properties: { round: { type: 'integer', format: 'int64' }, ordinal: { type: 'integer' } },
        },
      },
    },
    voters: {
      type: 'array',
      items: { type: 'integer' },
      description: 'member ids of the newest chosen configuration that vote',
    },
    learners: {
      type: 'array',
      items: { type: 'integer' },
      description: 'member ids that receive the log and do not vote (catching up before promotion)',
    },
    members: {
      type: 'array',
      items: { type: 'string' },
      description: 'each member as <id>:<pod> (a replaced member has a new id on its old pod)',
    },
  },
};

export function statusSchema(): Schema {
  return {
    type: 'object',
    properties: {
      observedGeneration: { type: 'integer', format: 'int64' },
      phase: { type: 'string', enum: ['Pending', 'Progressing', 'Ready', 'Degraded', 'Paused'] },
      ready: { type: 'string', description: 'ready replicas / desired replicas, for kubectl get' },
      leaders: { type: 'string', description: 'shards with a known leader / shards, for kubectl get' },
      readyReplicas: { type: 'integer' },
      incarnation: { type: 'string' },
      foundingReplicasPerShard: {
        type: 'integer',
        description:
          'spec.replicasPerShard when the cluster was created: the founding members (ids 0..n-1) of every shard; never changes',
      },
      conditions: {
        type: 'array',
        items: condition,
        'x-kubernetes-list-type': 'map',
        'x-kubernetes-list-map-keys': ['type'],
      },
      shards: {
        type: 'array',
        items: shardStatus,
        'x-kubernetes-list-type': 'map',
        'x-kubernetes-list-map-keys': ['shard'],
      },
    },
  };
}
