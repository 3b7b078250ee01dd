// BankCluster.status, computed from what the operator observed: a pure function.
import type { BankCluster } from '../../node/cluster/bankcluster.js';
import { names } from '../../node/cluster/bankcluster.js';
import { quorumSize } from '../builders/pod-disruption-budget.js';
import { removeCondition, setCondition, type Condition } from './conditions.js';

export const CONDITION = {
  ready: 'Ready',
  progressing: 'Progressing',
  degraded: 'Degraded',
  quorumProtected: 'QuorumProtected',
  certificatesReady: 'CertificatesReady',
  natsReady: 'NatsReady',
  membershipChanging: 'MembershipChanging',
} as const;

export const PHASE = {
  pending: 'Pending',
  progressing: 'Progressing',
  ready: 'Ready',
  degraded: 'Degraded',
  paused: 'Paused',
} as const;
export type Phase = (typeof PHASE)[keyof typeof PHASE];

export interface ShardLeaderStatus {
  ordinal: number;
  pod: string;
  address: string;
  ballot: { round: number; ordinal: number };
}

export interface ShardStatus {
  shard: number;
  replicas: number;
  readyReplicas: number;
  leader?: ShardLeaderStatus;
  /** Member ids of the newest chosen configuration (absent: no replica answered). */
  voters?: number[];
  learners?: number[];
  /** The pod of each member, `<id>:<pod>` (a member added later has a new id on an old pod). */
  members?: string[];
}

export interface BankClusterStatus {
  observedGeneration?: number;
  phase: Phase;
  ready: string;
  leaders: string;
  readyReplicas: number;
  incarnation?: string;
  conditions: Condition[];
  shards: ShardStatus[];
  /** spec.replicasPerShard when the cluster was created: fixes each shard's founding members forever. */
  foundingReplicasPerShard?: number;
}

/** What the operator saw of one shard's StatefulSet (undefined fields: not reported yet). */
export interface ObservedShard {
  exists: boolean;
  generation?: number;
  observedGeneration?: number;
  replicas?: number;
  readyReplicas?: number;
  updatedReplicas?: number;
  currentRevision?: string;
  updateRevision?: string;
  leader?: { ordinal: number; address: string; ballot: { round: number; ordinal: number } };
  /** What the operator's rolling update of this shard is doing (operator/reconcile/rollout.ts). */
  rollout?: string;
  /** The leader's pod ordinal (its member id may differ). */
  leaderPod?: number;
  /** The shard's configuration as read by the membership driver. */
  membership?: { voters: number[]; learners: number[]; pods: Record<number, number> };
}

export interface StatusInput {
  cluster: BankCluster;
  shards: ObservedShard[];
  previous?: Partial<BankClusterStatus>;
  /** False when the cluster has no NATS: leaders cannot be known, so Ready needs only majorities. */
  leadersKnowable: boolean;
  /** A reconcile step failed with this message. */
  reconcileError?: string;
  /** What the certificate step found (operator/reconcile/certificates.ts). */
  certificates?: { ready: boolean; source: 'operator' | 'user'; problems: string[] };
  /** What the NATS step found (operator/reconcile/nats.ts). */
  nats?: { mode: 'managed' | 'external' | 'none'; ready: boolean; problems: string[] };
  /** The founding size to record (never changes once recorded). */
  foundingReplicasPerShard?: number;
  /**
   * What the membership driver does (undefined: it did not run; null: no change runs).
   * reconcile/membership-driver.ts.
   */
  membershipChange?: { shard: number; message: string; retrying?: string } | null;
  /** Shards whose configuration the driver could not read (no replica answered yet). */
  membershipUnread?: number[];
  now: string;
}

function rolledOut(cluster: BankCluster, s: ObservedShard): boolean {
  const desired = cluster.spec.replicasPerShard;
  return (
    s.exists &&
    s.observedGeneration !== undefined &&
    s.generation !== undefined &&
    s.observedGeneration >= s.generation &&
    (s.updatedReplicas ?? 0) === desired &&
    (s.replicas ?? 0) === desired &&
    s.rollout === undefined
  );
}

function shardStatus(cluster: BankCluster, shard: number, s: ObservedShard): ShardStatus {
  const out: ShardStatus = { shard, replicas: cluster.spec.replicasPerShard, readyReplicas: s.readyReplicas ?? 0 };
  if (s.leader) {
    out.leader = { ...s.leader, pod: names.pod(cluster.metadata.name, shard, s.leaderPod ?? s.leader.ordinal) };
  }
  if (s.membership) {
    const m = s.membership;
    out.voters = m.voters;
    out.learners = m.learners;
    out.members = [...m.voters, ...m.learners]
      .sort((a, b) => a - b)
      .map((id) => `${id}:${m.pods[id] === undefined ? '?' : names.pod(cluster.metadata.name, shard, m.pods[id])}`);
  }
  return out;
}

export function computeStatus(input: StatusInput): BankClusterStatus {
  const { cluster, now } = input;
  const generation = cluster.metadata.generation;
  const desired = cluster.spec.replicasPerShard;
  const quorum = quorumSize(desired);
  const shards = input.shards.map((s, shard) => shardStatus(cluster, shard, s));
  const readyReplicas = shards.reduce((sum, s) => sum + s.readyReplicas, 0);
  const leaders = shards.filter((s) => s.leader !== undefined).length;
  const pending = input.shards.filter((s) => !rolledOut(cluster, s) || (s.readyReplicas ?? 0) < desired).length;
  const belowQuorumSettled = input.shards.filter(
    (s) => rolledOut(cluster, s) && (s.readyReplicas ?? 0) < quorum,
  ).length;
  const majorities = input.shards.every((s) => (s.readyReplicas ?? 0) >= quorum);
  const serving = majorities && (!input.leadersKnowable || leaders === shards.length);
  let conditions = input.previous?.conditions ?? [];
  const set = (c: Parameters<typeof setCondition>[1]) => (conditions = setCondition(conditions, c, generation, now));

  if (cluster.spec.paused) {
    set({
      type: CONDITION.progressing,
      status: 'False',
      reason: 'Paused',
      message: 'spec.paused is true: the operator leaves the workloads as they are',
    });
  } else if (pending > 0) {
    const steps = input.shards.flatMap((s, shard) => (s.rollout ? [`shard ${shard}: ${s.rollout}`] : []));
    set({
      type: CONDITION.progressing,
      status: 'True',
      reason: steps.length > 0 ? 'RollingUpdate' : 'RollingOut',
      message: `${pending} of ${shards.length} shards are not fully rolled out and ready${steps.length > 0 ? `; ${steps.join('; ')}` : ''}`,
    });
  } else {
    set({
      type: CONDITION.progressing,
      status: 'False',
      reason: 'RolledOut',
      message: 'every StatefulSet is up to date and ready',
    });
  }
  const certs = input.certificates;
  if (certs) {
    set(
      certs.ready
        ? {
            type: CONDITION.certificatesReady,
            status: 'True',
            reason: certs.source === 'operator' ? 'IssuedByOperator' : 'ProvidedSecretsValid',
            message:
              certs.source === 'operator'
                ? 'every replica and client certificate is issued by the operator CA and current'
                : 'every spec.tls Secret holds a valid certificate for its replica',
          }
        : {
            type: CONDITION.certificatesReady,
            status: 'False',
            reason: 'InvalidTLSSecrets',
            message: certs.problems.join('; '),
          },
    );
  }
  const nats = input.nats;
  if (nats?.mode === 'none') {
    set({
      type: CONDITION.natsReady,
      status: 'False',
      reason: 'NoNats',
      message: 'no NATS (spec.nats.managed is false and no spec.nats.url): leaders are found by probing',
    });
  } else if (nats) {
    set(
      nats.ready
        ? {
            type: CONDITION.natsReady,
            status: 'True',
            reason: nats.mode === 'managed' ? 'ManagedByOperator' : 'CredentialsSecretValid',
            message:
              nats.mode === 'managed'
                ? `NATS ${names.nats(cluster.metadata.name)} run by the operator: TLS from the cluster CA, users replica and watcher`
                : "spec.nats.credentialsSecret holds the NATS CA and both users' credentials",
          }
        : {
            type: CONDITION.natsReady,
            status: 'False',
            reason: 'InvalidNatsSecret',
            message: nats.problems.join('; '),
          },
    );
  }
  if (input.reconcileError) {
    set({ type: CONDITION.degraded, status: 'True', reason: 'ReconcileFailed', message: input.reconcileError });
  } else if (nats && !nats.ready) {
    set({
      type: CONDITION.degraded,
      status: 'True',
      reason: 'NatsCredentialsInvalid',
      message: `StatefulSets left as they are until the NATS credentials are usable: ${nats.problems.join('; ')}`,
    });
  } else if (certs && !certs.ready) {
    set({
      type: CONDITION.degraded,
      status: 'True',
      reason: 'CertificatesInvalid',
      message: `StatefulSets left as they are until the spec.tls Secrets are usable: ${certs.problems.join('; ')}`,
    });
  } else if (belowQuorumSettled > 0) {
    set({
      type: CONDITION.degraded,
      status: 'True',
      reason: 'QuorumLost',
      message: `${belowQuorumSettled} shards have fewer than ${quorum} ready replicas`,
    });
  } else {
    set({ type: CONDITION.degraded, status: 'False', reason: 'AsExpected', message: 'no shard is below its majority' });
  }
  set(
    serving
      ? {
          type: CONDITION.ready,
          status: 'True',
          reason: 'AllShardsServing',
          message: input.leadersKnowable
            ? 'every shard has a ready majority and a leader'
            : 'every shard has a ready majority (no NATS: leaders unknown)',
        }
      : {
          type: CONDITION.ready,
          status: 'False',
          reason: 'ShardsNotServing',
          message: `${leaders} of ${shards.length} shards have a known leader; ${readyReplicas} of ${shards.length * desired} replicas ready`,
        },
  );
  const change = input.membershipChange;
  if (change) {
    set({
      type: CONDITION.membershipChanging,
      status: 'True',
      reason: change.retrying ? 'StepRetrying' : 'Changing',
      message: change.retrying ? `${change.message}; ${change.retrying}` : change.message,
    });
  } else if (change === null) {
    const unread = input.membershipUnread ?? [];
    set(
      unread.length === 0
        ? {
            type: CONDITION.membershipChanging,
            status: 'False',
            reason: 'Settled',
            message: `every shard has its ${desired} voters, one per pod`,
          }
        : {
            type: CONDITION.membershipChanging,
            status: 'False',
            reason: 'NotObserved',
            message: `no change asked for (every shard has its ${desired} pods); no replica of shards ${unread.join(', ')} answered GetMembership yet`,
          },
    );
  }
  if (desired === 1) {
    set({
      type: CONDITION.quorumProtected,
      status: 'False',
      reason: 'SingleReplica',
      message: 'replicasPerShard is 1: no PodDisruptionBudget; a node drain stops each shard (development only)',
    });
  } else {
    conditions = removeCondition(conditions, CONDITION.quorumProtected);
  }

  const degraded = conditions.find((c) => c.type === CONDITION.degraded)?.status === 'True';
  const phase: Phase = cluster.spec.paused
    ? PHASE.paused
    : degraded
      ? PHASE.degraded
      : serving && pending === 0
        ? PHASE.ready
        : input.shards.some((s) => s.exists)
          ? PHASE.progressing
          : PHASE.pending;
  return {
    ...(generation !== undefined ? { observedGeneration: generation } : {}),
    phase,
    ready: `${readyReplicas}/${shards.length * desired}`,
    leaders: `${leaders}/${shards.length}`,
    readyReplicas,
    ...(cluster.metadata.uid ? { incarnation: cluster.metadata.uid } : {}),
    conditions,
    shards,
    ...(input.foundingReplicasPerShard !== undefined
      ? { foundingReplicasPerShard: input.previous?.foundingReplicasPerShard ?? input.foundingReplicasPerShard }
      : {}),
  };
}
