// The client API (shardbank.v1.Bank) of one replica: validates every field, serves what
// this replica leads, and forwards the rest once (a follower to its leader; an item of
// another shard to that shard), so a client may call any replica.
import * as grpc from '@grpc/grpc-js';
import { shardOfItem, shardItemRange } from '../cluster/topology.js';
import {
  Consistency,
  Outcome,
  type BankServer,
  type BatchTransferReply,
  type BatchTransferRequest,
  type ClusterStatusReply,
  type GetBalanceReply,
  type OpenSessionReply,
  type OpenSessionRequest,
  type ReplicaStatus,
  type ShardStatus,
  type TransferReply,
  type TransferRequest,
} from '../gen/shardbank/v1/bank.js';
import type { ClientReply, ErrorCode, TransferInput } from '../shard/shard-node.js';
import { clientIdAllowed, type CallNeed, type ClientAuthorizer } from '../security/client-tls.js';
import { Forwarder, FORWARDED_HEADER, type AsyncBankClient } from './forwarder.js';
import type { Replica } from './replica.js';
import type { Configuration } from '../paxos/membership.js';
import {
  checkClientId,
  checkCluster,
  checkItem,
  checkTransferFields,
  grpcStatusOf,
  REQUEST_LIMITS,
  type Invalid,
  type ValidationContext,
} from './request-validation.js';
import { entryResultOf, serveTransferStream } from './transfer-stream.js';

const STATUS_BY_ERROR: Record<ErrorCode, grpc.status> = {
  'not-leader': grpc.status.UNAVAILABLE,
  aborted: grpc.status.ABORTED,
  stale: grpc.status.FAILED_PRECONDITION,
  expired: grpc.status.FAILED_PRECONDITION,
  mismatch: grpc.status.INVALID_ARGUMENT,
  unavailable: grpc.status.UNAVAILABLE,
};

/** Which replica of this shard served a call (filled in while it runs). */
interface ServedBy {
  ordinal: number;
  address: string;
}

export class ServiceError extends Error {
  constructor(
    readonly code: grpc.status,
    message: string,
    readonly metadata?: grpc.Metadata,
  ) {
    super(message);
  }
}

export class BankService {
  private readonly context: ValidationContext;

  constructor(
    private readonly replica: Replica,
    private readonly forwarder: Forwarder,
    private readonly advertisedAddress: string,
    /** With TLS on: who may make which call (docs/SECURITY.md); without, every call runs. */
    private readonly authorizer?: ClientAuthorizer,
  ) {
    const { cluster, topology, maxTransferAmount } = replica.config;
    this.context = { cluster, topology, maxTransferAmount };
  }

  implementation(): BankServer {
    return {
      openSession: (call, callback) => {
        if (this.refused(call, callback, 'transfer', [call.request.clientId])) return;
        this.unary(callback, (served) => this.openSession(call.request, call.metadata, served));
      },
      transfer: (call, callback) => {
        if (this.refused(call, callback, 'transfer', [call.request.clientId])) return;
        this.unary(callback, (served) => this.transfer(call.request, call.metadata, served));
      },
      batchTransfer: (call, callback) => {
        const { request } = call;
        const clientIds =
          request.entries.length === 0
            ? [request.clientId]
            : request.entries.map((e) => e.clientId || request.clientId);
        if (this.refused(call, callback, 'transfer', clientIds)) return;
        this.unary(callback, (served) => this.batchTransfer(request, call.metadata, served));
      },
      transferStream: (call) => {
        let entryRefusal: ((clientId: string) => string | undefined) | undefined;
        if (this.authorizer) {
          const peer = call.getPeer();
          const refusal = this.authorizer.refusal(peer, 'transfer', []);
          if (refusal) {
            call.emit('error', { code: refusal.code, details: refusal.message, metadata: new grpc.Metadata() });
            return;
          }
          // Decided once per stream: a client identity's entries must use its own client_ids.
          const identity = this.authorizer.identityOf(peer);
          if (identity?.kind === 'client') {
            const { name, role } = identity;
            entryRefusal = (clientId) =>
              clientIdAllowed(name, clientId)
                ? undefined
                : `client ${name} (role ${role}) may use client_id ${name} or ${name}/..., not ${JSON.stringify(clientId)}`;
          }
        }
        serveTransferStream(call, {
          context: this.context,
          shard: this.replica.config.shard,
          isReadyLeader: () => this.replica.node.isReadyLeader,
          leaderHint: () => this.leaderHintText(),
          submit: (input, done) => this.replica.submitTransfer(input, done),
          countMessage: (entries) => {
            this.replica.metrics.grpcRequests += 1;
            this.replica.metrics.transferStreamEntries += entries;
          },
          entryRefusal,
        });
      },
      getBalance: (call, callback) => {
        if (this.refused(call, callback, 'read', [])) return;
        this.unary(callback, (served) =>
          this.getBalance(call.request.cluster, call.request.items, call.request.consistency, call.metadata, served),
        );
      },
      clusterStatus: (call, callback) => {
        if (this.refused(call, callback, 'read', [])) return;
        this.unary(callback, () => this.clusterStatus(call.request.cluster, call.request.localOnly));
      },
    };
  }

  /**
   * With TLS on, answers a call its identity may not make (UNAUTHENTICATED or
   * PERMISSION_DENIED, naming what was wrong) and returns true; it runs before validation
   * and before anything reaches the shard, so a refused call changes nothing.
   */
  private refused<Res>(
    call: { getPeer(): string },
    callback: grpc.sendUnaryData<Res>,
    need: CallNeed,
    clientIds: readonly string[],
  ): boolean {
    if (!this.authorizer) return false;
    const refusal = this.authorizer.refusal(call.getPeer(), need, clientIds);
    if (!refusal) return false;
    this.replica.metrics.grpcRequests += 1;
    callback({ code: refusal.code, details: refusal.message, metadata: new grpc.Metadata() });
    return true;
  }

  /**
   * Runs a call; a successful reply names, in trailing metadata `shardbank-leader`, the
   * replica of this shard that served it, so a client that reached a follower (which
   * forwarded) goes straight to the leader next time.
   */
  private unary<Res>(callback: grpc.sendUnaryData<Res>, run: (served: ServedBy) => Promise<Res>): void {
    this.replica.metrics.grpcRequests += 1;
    const served: ServedBy = { ordinal: -1, address: '' };
    run(served).then(
      (value) => {
        if (served.ordinal < 0) {
          callback(null, value);
          return;
        }
        const trailer = new grpc.Metadata();
        trailer.set('shardbank-leader', `${served.ordinal},${served.address}`);
        callback(null, value, trailer);
      },
      (error: unknown) => {
        const passed = error as { passThrough?: boolean; code?: number; details?: string; metadata?: grpc.Metadata };
        if (error instanceof ServiceError) {
          callback({ code: error.code, details: error.message, metadata: error.metadata ?? new grpc.Metadata() });
        } else if (passed.passThrough && typeof passed.code === 'number') {
          callback({
            code: passed.code,
            details: passed.details ?? '',
            metadata: passed.metadata ?? new grpc.Metadata(),
          });
        } else {
          this.replica.logger.error({ err: error }, 'request failed');
          callback({ code: grpc.status.INTERNAL, details: error instanceof Error ? error.message : String(error) });
        }
      },
    );
  }

  // ---- OpenSession ----

  private async openSession(
    request: OpenSessionRequest,
    metadata: grpc.Metadata,
    served: ServedBy,
  ): Promise<OpenSessionReply> {
    throwIfInvalid(checkCluster(request.cluster, this.context));
    throwIfInvalid(checkClientId(request.clientId));
    const { topology, shard } = this.replica.config;
    if (!Number.isInteger(request.shard) || request.shard < 0 || request.shard >= topology.shards) {
      throw new ServiceError(
        grpc.status.INVALID_ARGUMENT,
        `shard: must be 0..${topology.shards - 1}, got ${request.shard}`,
      );
    }
    if (request.shard !== shard || !this.replica.node.isReadyLeader) {
      return this.forwardOrRefuse(
        request.shard,
        metadata,
        (client, md, options) => client.openSessionAsync({ ...request }, md, options),
        served,
      );
    }
    this.servedHere(served);
    const reply = await new Promise<ClientReply>((resolve) =>
      this.replica.submitOpenSession(request.clientId, resolve),
    );
    if (reply.kind !== 'session') throw this.errorFor(reply);
    return { sessionEpoch: reply.epoch, shard };
  }

  // ---- Transfer ----

  private async transfer(request: TransferRequest, metadata: grpc.Metadata, served: ServedBy): Promise<TransferReply> {
    throwIfInvalid(checkCluster(request.cluster, this.context));
    const checked = checkTransferFields(request, request.clientId, this.context);
    if (!checked.ok) throwIfInvalid(checked);
    const input = (checked as { value: TransferInput }).value;
    const { topology, shard } = this.replica.config;
    const targetShard = shardOfItem(topology, input.from);
    if (targetShard !== shard || !this.replica.node.isReadyLeader) {
      return this.forwardOrRefuse(
        targetShard,
        metadata,
        (client, md, options) => client.transferAsync({ ...request }, md, options),
        served,
      );
    }
    this.servedHere(served);
    const reply = await this.submit(input);
    if (reply.kind !== 'transfer') throw this.errorFor(reply);
    // A retry answered from the session table says so (no spread: this is per transfer).
    return reply.deduplicated
      ? { outcome: reply.outcome, decisionIndex: reply.index, coordinatorShard: shard, message: '', deduplicated: true }
      : { outcome: reply.outcome, decisionIndex: reply.index, coordinatorShard: shard, message: '' };
  }

  private submit(input: TransferInput): Promise<ClientReply> {
    return new Promise((resolve) => this.replica.submitTransfer(input, resolve));
  }

  /**
   * A batch's entries for this shard: each reply goes straight into `results`, and one promise
   * settles when the last one is in (not a promise and a continuation per entry: thousands per
   * call on the BatchTransfer path).
   */
  private submitEntries(request: BatchTransferRequest, indexes: number[], results: TransferReply[]): Promise<void> {
    const shard = this.replica.config.shard;
    return new Promise((resolve) => {
      let left = indexes.length;
      if (left === 0) resolve();
      for (const index of indexes) {
        const entry = request.entries[index]!;
        const input: TransferInput = {
          clientId: entry.clientId || request.clientId,
          requestId: entry.requestId,
          from: entry.from,
          to: entry.to,
          amount: entry.amount,
          acknowledgedBelow: entry.acknowledgedBelow,
          sessionEpoch: entry.sessionEpoch,
        };
        this.replica.submitTransfer(input, (reply) => {
          results[index] = entryResultOf(reply, shard);
          left -= 1;
          if (left === 0) resolve();
        });
      }
    });
  }

  private errorFor(reply: ClientReply): ServiceError {
    if (reply.kind !== 'error') return new ServiceError(grpc.status.INTERNAL, 'unexpected reply');
    return new ServiceError(STATUS_BY_ERROR[reply.code], reply.message, this.leaderHintMetadata());
  }

  private leaderHintMetadata(): grpc.Metadata {
    const metadata = new grpc.Metadata();
    const hint = this.leaderHintText();
    if (hint !== '') metadata.set('shardbank-leader', hint);
    return metadata;
  }

  /** `<slot>,<address>` of this shard's leader (its member id when its slot is not in the peer table). */
  private leaderHintText(): string {
    const leader = this.replica.node.core.leaderOrdinal;
    const address = this.replica.addressOfMember(leader);
    if (address === undefined) return '';
    return `${this.replica.transport.slotOfAddress(address) ?? leader},${address}`;
  }

  /**
   * One hop at most: a request that was already forwarded is answered here (UNAVAILABLE with
   * a leader hint), so two replicas with stale views can never bounce a request forever.
   */
  private servedHere(served: ServedBy): void {
    served.ordinal = this.replica.config.ordinal;
    served.address = this.advertisedAddress;
  }

  private async forwardOrRefuse<T>(
    targetShard: number,
    metadata: grpc.Metadata,
    call: (client: AsyncBankClient, md: grpc.Metadata, options: grpc.CallOptions) => Promise<T>,
    served?: ServedBy,
  ): Promise<T> {
    const alreadyForwarded = metadata.get(FORWARDED_HEADER).length > 0;
    const { shard } = this.replica.config;
    const leader =
      targetShard === shard ? this.replica.node.core.leaderOrdinal : this.replica.router.leaderOf(targetShard);
    if (
      alreadyForwarded ||
      (targetShard === shard && (leader === undefined || leader < 0 || leader === this.replica.member))
    ) {
      throw new ServiceError(
        grpc.status.UNAVAILABLE,
        `not leader: shard ${targetShard} has no known leader here; retry`,
        this.leaderHintMetadata(),
      );
    }
    this.replica.metrics.forwardedRequests += 1;
    const sameShard = targetShard === shard;
    // Within the shard the leader is a member id: its address, and its slot if the table has it.
    const leaderAddress = sameShard ? this.replica.addressOfMember(leader!) : undefined;
    const leaderSlot = sameShard
      ? leaderAddress === undefined
        ? undefined
        : this.replica.transport.slotOfAddress(leaderAddress)
      : leader;
    return this.forwarder.call(
      targetShard,
      leaderSlot,
      call,
      (ordinal, address) => {
        if (served && sameShard) Object.assign(served, { ordinal, address });
      },
      leaderSlot === undefined ? leaderAddress : undefined,
    );
  }

  // ---- BatchTransfer ----

  private async batchTransfer(
    request: BatchTransferRequest,
    metadata: grpc.Metadata,
    served: ServedBy,
  ): Promise<BatchTransferReply> {
    throwIfInvalid(checkCluster(request.cluster, this.context));
    if (request.entries.length > REQUEST_LIMITS.batchEntriesMax) {
      throw new ServiceError(
        grpc.status.INVALID_ARGUMENT,
        `entries: at most ${REQUEST_LIMITS.batchEntriesMax} per batch, got ${request.entries.length}`,
      );
    }
    const results: TransferReply[] = new Array(request.entries.length);
    const byShard = new Map<number, number[]>();
    const { topology, shard } = this.replica.config;
    request.entries.forEach((entry, index) => {
      const checked = checkTransferFields(entry, entry.clientId || request.clientId, this.context);
      if (!checked.ok) {
        results[index] = {
          outcome: checked.code === 'failed-precondition' ? Outcome.FAILED_PRECONDITION : Outcome.INVALID_ARGUMENT,
          decisionIndex: 0,
          coordinatorShard: 0,
          message: checked.message,
        };
        return;
      }
      const target = shardOfItem(topology, entry.from);
      const list = byShard.get(target) ?? [];
      list.push(index);
      byShard.set(target, list);
    });
    const work: Promise<void>[] = [];
    for (const [target, indexes] of byShard) {
      if (target === shard && this.replica.node.isReadyLeader) {
        this.servedHere(served);
        work.push(this.submitEntries(request, indexes, results));
        continue;
      }
      const sub: BatchTransferRequest = {
        cluster: request.cluster,
        clientId: request.clientId,
        entries: indexes.map((i) => request.entries[i]!),
      };
      work.push(
        this.forwardOrRefuse(
          target,
          metadata,
          (client, md, options) => client.batchTransferAsync(sub, md, options),
          served,
        ).then(
          (reply) =>
            indexes.forEach(
              (index, k) => (results[index] = reply.results[k] ?? unavailableResult(target, 'missing result')),
            ),
          (error: unknown) =>
            indexes.forEach(
              (index) =>
                (results[index] = unavailableResult(target, error instanceof Error ? error.message : String(error))),
            ),
        ),
      );
    }
    await Promise.all(work);
    return { results };
  }

  // ---- GetBalance ----

  private async getBalance(
    cluster: string,
    items: number[],
    consistency: Consistency,
    metadata: grpc.Metadata,
    served: ServedBy,
  ): Promise<GetBalanceReply> {
    throwIfInvalid(checkCluster(cluster, this.context));
    const { topology, shard, ordinal } = this.replica.config;
    if (items.length === 0)
      throw new ServiceError(grpc.status.INVALID_ARGUMENT, 'items: at least one item is required');
    if (items.length > REQUEST_LIMITS.balanceItemsMax)
      throw new ServiceError(grpc.status.INVALID_ARGUMENT, `items: at most ${REQUEST_LIMITS.balanceItemsMax}`);
    for (const item of items) {
      throwIfInvalid(checkItem('items', item, topology));
      const owner = shardOfItem(topology, item);
      if (owner !== shard)
        throw new ServiceError(
          grpc.status.INVALID_ARGUMENT,
          `items: item ${item} belongs to shard ${owner}, this replica serves shard ${shard}`,
        );
    }
    const core = this.replica.node.core;
    if (consistency === Consistency.ANY_REPLICA) {
      const bank = this.replica.node.bank;
      return {
        balances: items.map((item) => ({ item, balance: bank.balance(item) })),
        shard,
        replica: ordinal,
        indexLag: Math.max(0, core.commitIndex - bank.appliedIndex),
        msSinceLeader: Number.isFinite(core.ticksSinceLeader) ? core.ticksSinceLeader * this.replica.config.tickMs : -1,
        appliedIndex: bank.appliedIndex,
      };
    }
    if (consistency !== Consistency.LINEARIZABLE)
      throw new ServiceError(grpc.status.INVALID_ARGUMENT, `consistency: unknown value ${consistency}`);
    if (!this.replica.node.isReadyLeader) {
      return this.forwardOrRefuse(
        shard,
        metadata,
        (client, md, options) => client.getBalanceAsync({ cluster, items, consistency }, md, options),
        served,
      );
    }
    this.servedHere(served);
    const reply = await new Promise<ClientReply>((resolve) => this.replica.submitRead(items, resolve));
    if (reply.kind !== 'read') throw this.errorFor(reply);
    return {
      balances: items.map((item, i) => ({ item, balance: reply.balances[i]! })),
      shard,
      replica: ordinal,
      indexLag: 0,
      msSinceLeader: 0,
      appliedIndex: reply.index,
    };
  }

  // ---- ClusterStatus ----

  localStatus(): ReplicaStatus {
    const { shard, ordinal } = this.replica.config;
    const core = this.replica.node.core;
    const ballot = core.role === 'leader' ? core.leaderBallot : core.promisedBallot;
    return {
      shard,
      ordinal,
      role: core.role,
      ready: this.isReady(),
      address: this.advertisedAddress,
      commitIndex: core.commitIndex,
      appliedIndex: this.replica.node.bank.appliedIndex,
      ballot: { round: ballot.round, ordinal: ballot.ordinal },
      leaderOrdinal: core.leaderOrdinal,
      inflightTransactions: this.replica.node.bank.inflightCount(),
      pid: process.pid,
      snapshotIndex: core.snapshotIndex,
      shardTotal: this.replica.node.bank.shardTotal(),
      voting: core.votingState,
      memberRole: memberRoleOf(core.latestConfiguration, this.replica.member),
      memberId: this.replica.member,
      voters: [...core.latestConfiguration.voters],
      learners: [...core.latestConfiguration.learners],
      membershipChangeInFlight: core.configurationChangeInFlight,
    };
  }

  isReady(): boolean {
    const node = this.replica.node;
    return (
      this.replica.healthy && (node.isReadyLeader || (node.core.role === 'follower' && node.core.leaderOrdinal >= 0))
    );
  }

  private async clusterStatus(cluster: string, localOnly: boolean): Promise<ClusterStatusReply> {
    throwIfInvalid(checkCluster(cluster, this.context));
    const { topology, peers } = this.replica.config;
    const statuses: ReplicaStatus[] = localOnly
      ? [this.localStatus()]
      : await Promise.all(
          peers.flatMap((group, shard) =>
            group.map((address, ordinal) =>
              shard === this.replica.config.shard && ordinal === this.replica.config.ordinal
                ? Promise.resolve(this.localStatus())
                : this.forwarder.statusOf(address, cluster).then(
                    (reply) => reply.shards[0]?.replicas[0] ?? downStatus(shard, ordinal, address),
                    () => downStatus(shard, ordinal, address),
                  ),
            ),
          ),
        );
    const shards: ShardStatus[] = [];
    for (let shard = 0; shard < topology.shards; shard += 1) {
      const replicas = statuses.filter((s) => s.shard === shard);
      if (replicas.length === 0) continue;
      const leader = replicas.find((r) => r.role === 'leader');
      const range = shardItemRange(topology, shard);
      shards.push({
        shard,
        firstItem: range.first,
        lastItem: range.last,
        leaderOrdinal: leader ? leader.ordinal : -1,
        leaderBallot: leader?.ballot,
        leaderAddress: leader?.address ?? '',
        replicas,
        inflightTransactions:
          leader?.inflightTransactions ?? Math.max(0, ...replicas.map((r) => r.inflightTransactions)),
        // The leader's view (it knows first what is chosen), else the most advanced replica's.
        ...membershipOf(leader ?? mostAdvanced(replicas)),
      });
    }
    return { cluster: this.replica.config.cluster, shards };
  }
}

function downStatus(shard: number, ordinal: number, address: string): ReplicaStatus {
  return {
    shard,
    ordinal,
    role: 'down',
    ready: false,
    address,
    commitIndex: 0,
    appliedIndex: 0,
    ballot: undefined,
    leaderOrdinal: -1,
    inflightTransactions: 0,
    pid: 0,
    snapshotIndex: 0,
    shardTotal: 0,
    voting: '',
    memberRole: '',
    memberId: 0,
    voters: [],
    learners: [],
    membershipChangeInFlight: false,
  };
}

function mostAdvanced(replicas: readonly ReplicaStatus[]): ReplicaStatus | undefined {
  const up = replicas.filter((r) => r.role !== 'down');
  return up.length === 0 ? undefined : up.reduce((a, b) => (b.commitIndex > a.commitIndex ? b : a));
}

function membershipOf(
  status: ReplicaStatus | undefined,
): Pick<ShardStatus, 'voters' | 'learners' | 'membershipChangeInFlight'> {
  return {
    voters: status?.voters ?? [],
    learners: status?.learners ?? [],
    membershipChangeInFlight: status?.membershipChangeInFlight ?? false,
  };
}

function memberRoleOf(configuration: Configuration, member: number): 'voter' | 'learner' | 'none' {
  if (configuration.voters.includes(member)) return 'voter';
  return configuration.learners.includes(member) ? 'learner' : 'none';
}

function unavailableResult(shard: number, message: string): TransferReply {
  return { outcome: Outcome.UNAVAILABLE, decisionIndex: 0, coordinatorShard: shard, message };
}

function throwIfInvalid(failure: Invalid | undefined | { ok: true }): void {
  if (!failure || failure.ok) return;
  throw new ServiceError(grpcStatusOf(failure), failure.message);
}
