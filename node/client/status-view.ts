// Merges the per-replica answers of ClusterStatus(local_only) into one view of the
// cluster, and renders the stable `status --json` shape of SPEC section 7. Pure.
import { shardItemRange, type Topology } from '../cluster/topology.js';
import type { ReplicaStatus } from '../gen/shardbank/v1/bank.js';

export const ROLES = ['leader', 'follower', 'candidate', 'down'] as const;
export type Role = (typeof ROLES)[number];

export type BallotPair = [round: number, ordinal: number];

export interface ReplicaView {
  shard: number;
  ordinal: number;
  role: Role;
  ready: boolean;
  address: string;
  pid: number | null;
  commitIndex: number | null;
  appliedIndex: number | null;
  ballot: BallotPair | null;
  leaderOrdinal: number;
  inflightTransactions: number | null;
}

export interface LeaderView {
  ordinal: number;
  ballot: BallotPair;
  address: string;
}

export interface ShardView {
  shard: number;
  items: [first: number, last: number];
  leader: LeaderView | null;
  replicas: ReplicaView[];
  /** The highest count any answering replica reports (the leader's is authoritative). */
  inflightTransactions: number;
  /** Member ids of the newest configuration (docs/ARCHITECTURE.md, "Membership"), as the leader (else the most advanced replica) sees it. */
  voters: number[];
  learners: number[];
  membershipChangeInFlight: boolean;
}

export interface ClusterView {
  cluster: string;
  shards: ShardView[];
}

/** One replica's answer: its status, or undefined when it did not answer. */
export interface ReplicaProbe {
  shard: number;
  ordinal: number;
  address: string;
  status: ReplicaStatus | undefined;
  /** Known to the local runtime (address book) when the replica does not say. */
  pid?: number | null;
}

function normalizeRole(role: string): Role {
  return (ROLES as readonly string[]).includes(role) ? (role as Role) : 'candidate';
}

export function compareBallots(a: BallotPair, b: BallotPair): number {
  return a[0] !== b[0] ? a[0] - b[0] : a[1] - b[1];
}

function replicaView(probe: ReplicaProbe): ReplicaView {
  const status = probe.status;
  if (status === undefined) {
    return {
      shard: probe.shard,
      ordinal: probe.ordinal,
      role: 'down',
      ready: false,
      address: probe.address,
      pid: probe.pid ?? null,
      commitIndex: null,
      appliedIndex: null,
      ballot: null,
      leaderOrdinal: -1,
      inflightTransactions: null,
    };
  }
  return {
    shard: probe.shard,
    ordinal: probe.ordinal,
    role: normalizeRole(status.role),
    ready: status.ready,
    address: probe.address,
    pid: status.pid > 0 ? status.pid : (probe.pid ?? null),
    commitIndex: status.commitIndex,
    appliedIndex: status.appliedIndex,
    ballot: status.ballot ? [status.ballot.round, status.ballot.ordinal] : null,
    leaderOrdinal: status.leaderOrdinal,
    inflightTransactions: status.inflightTransactions,
  };
}

/** The leader is the replica claiming leadership with the highest ballot (a deposed one may lag). */
function pickLeader(replicas: readonly ReplicaView[]): LeaderView | null {
  let best: LeaderView | null = null;
  for (const replica of replicas) {
    if (replica.role !== 'leader' || replica.ballot === null) continue;
    if (best === null || compareBallots(replica.ballot, best.ballot) > 0) {
      best = { ordinal: replica.ordinal, ballot: replica.ballot, address: replica.address };
    }
  }
  return best;
}

export function mergeClusterStatus(cluster: string, topology: Topology, probes: readonly ReplicaProbe[]): ClusterView {
  const shards: ShardView[] = [];
  for (let shard = 0; shard < topology.shards; shard += 1) {
    const range = shardItemRange(topology, shard);
    const replicas = probes
      .filter((probe) => probe.shard === shard)
      .sort((a, b) => a.ordinal - b.ordinal)
      .map(replicaView);
    const inflight = Math.max(0, ...replicas.map((replica) => replica.inflightTransactions ?? 0));
    const leader = pickLeader(replicas);
    const answered = probes.filter((probe) => probe.shard === shard && probe.status !== undefined);
    const source =
      answered.find((probe) => leader !== null && probe.ordinal === leader.ordinal)?.status ??
      answered.map((probe) => probe.status!).sort((a, b) => b.commitIndex - a.commitIndex)[0];
    shards.push({
      shard,
      items: [range.first, range.last],
      leader,
      replicas,
      inflightTransactions: inflight,
      voters: [...(source?.voters ?? [])],
      learners: [...(source?.learners ?? [])],
      membershipChangeInFlight: source?.membershipChangeInFlight ?? false,
    });
  }
  return { cluster, shards };
}

/** The `status --json` contract (SPEC section 7); `pid` only for local clusters. */
export function statusJson(view: ClusterView, includePid: boolean): unknown {
  return {
    cluster: view.cluster,
    shards: view.shards.map((shard) => ({
      shard: shard.shard,
      items: shard.items,
      leader:
        shard.leader === null
          ? null
          : { ordinal: shard.leader.ordinal, ballot: shard.leader.ballot, address: shard.leader.address },
      replicas: shard.replicas.map((replica) => ({
        ordinal: replica.ordinal,
        role: replica.role,
        ready: replica.ready,
        address: replica.address,
        ...(includePid ? { pid: replica.pid } : {}),
        commitIndex: replica.commitIndex,
      })),
    })),
  };
}

export function everyShardHasLeader(view: ClusterView): boolean {
  return view.shards.length > 0 && view.shards.every((shard) => shard.leader !== null);
}
