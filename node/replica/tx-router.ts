// Where to send a 2PC message for another shard: its leader if known (from NATS
// announcements or from the sender of the last 2PC frame that shard sent us), else any
// reachable replica, which forwards to its own leader. No path assumes which replica leads.
import type { TxMessage } from '../gen/shardbank/v1/peer.js';
import type { PeerTransport } from '../transport/peer-transport.js';
import type { ReplicaConfig } from './replica-config.js';

export class TxRouter {
  private readonly leaderHint = new Map<number, { ordinal: number; round: number }>();
  private readonly rotation = new Map<number, number>();

  constructor(
    private readonly config: ReplicaConfig,
    private readonly transport: PeerTransport,
  ) {}

  /** A hint with a ballot (from NATS) replaces an older one; frame-learned hints have round -1. */
  learnLeader(shard: number, ordinal: number, round = -1): void {
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
    if (hint && this.transport.isReachable(shard, hint.ordinal)) {
      this.transport.sendTx(shard, hint.ordinal, message);
      return;
    }
    const start = this.rotation.get(shard) ?? 0;
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
