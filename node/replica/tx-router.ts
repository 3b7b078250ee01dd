// Where to send a 2PC message for another shard: its leader if known (from NATS
// announcements or from the sender of the last 2PC frame that shard sent us), else any
// reachable replica, which forwards to its own leader. No path assumes which replica leads.
import type { TxMessage } from '../gen/shardbank/v1/peer.js';
import type { PeerTransport } from '../transport/peer-transport.js';
import type { ReplicaConfig } from './replica-config.js';

/**
 * A leader hint is suspect once a message that expects an answer (a PREPARE, an inquiry, a
 * decision) has gone to that shard this long ago and nothing came back from the shard since:
 * then each send tries the next reachable replica (a follower forwards to its leader). Since
 * parallel commits a coordinator never aborts a prepared transaction on a timeout, so a stale
 * hint must not be able to hold a transaction (and every retry of its request) for good.
 */
const HINT_SILENCE_MS = 1000;

export class TxRouter {
  private readonly leaderHint = new Map<number, { ordinal: number; round: number }>();
  private readonly rotation = new Map<number, number>();
  /** Per shard: when the first message expecting an answer went since we last heard from it. */
  private readonly unansweredSinceMs = new Map<number, number>();

  constructor(
    private readonly config: ReplicaConfig,
    private readonly transport: PeerTransport,
    private readonly now: () => number = Date.now,
  ) {}

  /** A hint with a ballot (from NATS) replaces an older one; frame-learned hints have round -1. */
  learnLeader(shard: number, ordinal: number, round = -1): void {
    // A frame from the shard: it answers, whatever it says.
    if (round < 0) this.unansweredSinceMs.delete(shard);
    const current = this.leaderHint.get(shard);
    if (current && round >= 0 && current.round > round) return;
    this.leaderHint.set(shard, { ordinal, round: Math.max(round, current?.round ?? -1) });
  }

  leaderOf(shard: number): number | undefined {
    return this.leaderHint.get(shard)?.ordinal;
  }

  send(message: TxMessage): void {
    const shard = message.toShard;
    const replicas = this.config.topology.replicasPerShard;
    const hint = this.leaderHint.get(shard);
    const kind = message.body?.$case;
    const now = this.now();
    let suspect = false;
    if (kind === 'prepare' || kind === 'inquiry' || kind === 'decision') {
      const since = this.unansweredSinceMs.get(shard);
      if (since === undefined) this.unansweredSinceMs.set(shard, now);
      else suspect = now - since >= HINT_SILENCE_MS;
    }
    if (hint && !suspect && this.transport.isReachable(shard, hint.ordinal)) {
      this.transport.sendTx(shard, hint.ordinal, message);
      return;
    }
    // No usable hint, or a silent one: the next reachable replica each time.
    const start = suspect ? ((this.rotation.get(shard) ?? 0) + 1) % replicas : (this.rotation.get(shard) ?? 0);
    for (let i = 0; i < replicas; i += 1) {
      const ordinal = (start + i) % replicas;
      if (!this.transport.isReachable(shard, ordinal)) continue;
      this.rotation.set(shard, ordinal);
      this.transport.sendTx(shard, ordinal, message);
      return;
    }
    this.rotation.set(shard, (start + 1) % replicas);
    this.transport.sendTx(shard, start, message);
  }
}
