// The 2PC router's choice of replica: the leader hint while the shard answers; once a message
// that expects an answer has gone unanswered for a second, the next reachable replica each
// time (followers forward to their leader), until a frame from the shard comes back.
import { describe, expect, it } from 'vitest';
import { TxRouter } from '../../node/replica/tx-router.js';
import type { TxMessage } from '../../node/gen/shardbank/v1/peer.js';
import type { PeerTransport } from '../../node/transport/peer-transport.js';
import type { ReplicaConfig } from '../../node/replica/replica-config.js';

const txid = { shard: 0, round: 1, ordinal: 0, seq: 1 };
const prepare: TxMessage = {
  fromShard: 0,
  toShard: 1,
  fromOrdinal: 0,
  body: { $case: 'prepare', prepare: { txid, from: 1, to: 11, amount: 1, watermark: txid } },
};
const ack: TxMessage = { fromShard: 0, toShard: 1, fromOrdinal: 0, body: { $case: 'ack', ack: { txid } } };

function router(): { router: TxRouter; sent: number[]; clock: { ms: number } } {
  const sent: number[] = [];
  const clock = { ms: 0 };
  const transport = {
    isReachable: () => true,
    sendTx: (_shard: number, ordinal: number) => sent.push(ordinal),
  } as unknown as PeerTransport;
  const config = {
    topology: { shards: 2, replicasPerShard: 3, itemsPerShard: 10, initialBalance: 10 },
  } as ReplicaConfig;
  return { router: new TxRouter(config, transport, () => clock.ms), sent, clock };
}

describe('TxRouter', () => {
  it('keeps to the leader hint while the shard answers, rotates once it is silent, returns when it answers', () => {
    const { router: r, sent, clock } = router();
    r.learnLeader(1, 1, 5); // from NATS
    r.send(prepare);
    clock.ms = 500;
    r.send(prepare);
    expect(sent).toEqual([1, 1]);
    // A second without any frame from shard 1: the hint is suspect, each send tries the next.
    clock.ms = 1000;
    r.send(prepare);
    r.send(prepare);
    r.send(prepare);
    expect(new Set(sent.slice(2))).toEqual(new Set([0, 1, 2]));
    // A frame from shard 1 (its leader is ordinal 2): trusted again.
    r.learnLeader(1, 2);
    clock.ms = 1200;
    r.send(prepare);
    r.send(prepare);
    expect(sent.slice(-2)).toEqual([2, 2]);
  });

  it('messages that expect no answer (an ACK) never make the hint suspect', () => {
    const { router: r, sent, clock } = router();
    r.learnLeader(1, 1, 5);
    for (let i = 0; i < 10; i += 1) {
      clock.ms = i * 500;
      r.send(ack);
    }
    expect(sent).toEqual(Array(10).fill(1));
  });
});
