// The codec of a slot's commands: the binary batch round trips every command exactly, the
// protobuf batches of older logs still decode, and damaged values are refused by name.
import { describe, expect, it } from 'vitest';
import type { Command } from '../../node/gen/shardbank/v1/peer.js';
import { CommandBatch } from '../../node/gen/shardbank/v1/peer.js';
import {
  COMMAND_BATCH_MAGIC,
  CommandCodecError,
  decodeCommandBatch,
  encodeCommandBatch,
} from '../../node/shard/command-codec.js';
import { isConfigurationEntry } from '../../node/paxos/membership.js';

const BIG = Number.MAX_SAFE_INTEGER;
const tx = (seq: number, shard = 1) => ({ shard, round: 3, ordinal: 2, seq });

/** One command of every kind, with absent and present TxIds, large numbers and a non-ASCII id. */
const EVERY_KIND: Command[] = [
  { body: undefined },
  { body: { $case: 'noop', noop: {} } },
  { body: { $case: 'openSession', openSession: { clientId: 'alice/c-01' } } },
  {
    body: {
      $case: 'transfer',
      transfer: {
        clientId: 'alice/c-01',
        requestId: BIG,
        from: 1,
        to: 2,
        amount: 2 ** 31,
        acknowledgedBelow: 0,
        sessionEpoch: 7,
      },
    },
  },
  {
    body: {
      $case: 'coordPrepare',
      coordPrepare: {
        txid: tx(2 ** 32 + 5),
        clientId: 'bøb/c-ü',
        requestId: 12,
        from: 3,
        to: 3001,
        amount: 127,
        toShard: 1,
        acknowledgedBelow: 128,
        sessionEpoch: 2 ** 40,
      },
    },
  },
  {
    body: {
      $case: 'coordPrepare',
      coordPrepare: {
        txid: undefined,
        clientId: 'alice/c-01',
        requestId: 13,
        from: 3,
        to: 3001,
        amount: 1,
        toShard: 1,
        acknowledgedBelow: 0,
        sessionEpoch: 1,
      },
    },
  },
  { body: { $case: 'coordDecision', coordDecision: { txid: tx(9), commit: true, reason: 0, participantShard: 2 } } },
  {
    body: { $case: 'coordDecision', coordDecision: { txid: undefined, commit: false, reason: 5, participantShard: 0 } },
  },
  { body: { $case: 'coordAck', coordAck: { txid: undefined, txids: [tx(1), tx(2), tx(BIG)] } } },
  { body: { $case: 'coordAck', coordAck: { txid: tx(4), txids: [] } } },
  {
    body: {
      $case: 'partPrepare',
      partPrepare: { txid: tx(8, 0), from: 1, to: 3002, amount: 5, coordWatermark: tx(3, 0) },
    },
  },
  {
    body: {
      $case: 'partPrepare',
      partPrepare: { txid: tx(8, 0), from: 1, to: 3002, amount: 5, coordWatermark: undefined },
    },
  },
  { body: { $case: 'partDecision', partDecision: { txid: tx(8, 0), commit: true, coordWatermark: tx(6, 0) } } },
  { body: { $case: 'partDecision', partDecision: { txid: tx(8, 0), commit: false, coordWatermark: undefined } } },
];

describe('command batch codec', () => {
  it('round trips every kind of command exactly (absent TxIds stay absent)', () => {
    const value = encodeCommandBatch(EVERY_KIND);
    expect(value[0]).toBe(COMMAND_BATCH_MAGIC);
    expect(decodeCommandBatch(value)).toEqual(EVERY_KIND);
    expect(decodeCommandBatch(encodeCommandBatch([]))).toEqual([]);
  });

  it('writes each client id once and shares one string between its commands', () => {
    const many: Command[] = Array.from({ length: 500 }, (_, i) => ({
      body: {
        $case: 'transfer',
        transfer: {
          clientId: 'c-0123456789abcdef01234567',
          requestId: i + 1,
          from: 1,
          to: 2,
          amount: 1,
          acknowledgedBelow: 0,
          sessionEpoch: 1,
        },
      },
    }));
    const value = encodeCommandBatch(many);
    expect(value.length).toBeLessThan(Buffer.from(CommandBatch.encode({ commands: many }).finish()).length / 3);
    const decoded = decodeCommandBatch(value);
    expect(decoded).toEqual(many);
    expect(value.toString('latin1').split('c-0123456789abcdef01234567').length - 1).toBe(1);
  });

  it('decodes the protobuf batches of older logs as before', () => {
    const old = Buffer.from(CommandBatch.encode({ commands: EVERY_KIND.filter((c) => c.body) }).finish());
    expect(old[0]).not.toBe(COMMAND_BATCH_MAGIC);
    expect(decodeCommandBatch(old)).toEqual(CommandBatch.decode(old).commands);
    expect(decodeCommandBatch(Buffer.alloc(0))).toEqual([]);
  });

  it('is never taken for a configuration entry', () => {
    expect(isConfigurationEntry(encodeCommandBatch(EVERY_KIND))).toBe(false);
  });

  it('refuses damaged values with an error naming what is wrong', () => {
    const value = encodeCommandBatch(EVERY_KIND);
    const refuse = (bytes: Buffer, message: RegExp) => {
      expect(() => decodeCommandBatch(bytes)).toThrow(CommandCodecError);
      expect(() => decodeCommandBatch(bytes)).toThrow(message);
    };
    refuse(Buffer.from([COMMAND_BATCH_MAGIC, 9, 0, 0]), /version 9 is not known/);
    refuse(Buffer.from([COMMAND_BATCH_MAGIC]), /version undefined is not known/);
    // Cut anywhere inside: always refused, never a shorter batch.
    for (let cut = 2; cut < value.length; cut += 1)
      expect(() => decodeCommandBatch(value.subarray(0, cut))).toThrow(CommandCodecError);
    refuse(Buffer.concat([value, Buffer.from([0])]), /1 bytes after the last command/);
    // No client ids, one command of an unknown kind.
    refuse(Buffer.from([COMMAND_BATCH_MAGIC, 1, 0, 1, 99]), /unknown command kind 99/);
    // An openSession naming client id 3 of none.
    refuse(Buffer.from([COMMAND_BATCH_MAGIC, 1, 0, 1, 8, 3]), /openSession.clientId: client id index 3 of 0/);
    // A coordDecision whose commit byte is 2.
    refuse(Buffer.from([COMMAND_BATCH_MAGIC, 1, 0, 1, 4, 0, 2, 0, 0]), /coordDecision.commit: boolean byte 2/);
    // A varint above 2^53 - 1 (eight bytes of 0xff then 0x7f is 2^63 - 1).
    refuse(
      Buffer.from([COMMAND_BATCH_MAGIC, 1, 0, 1, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]),
      /openSession.clientId: value above 2\^53 - 1/,
    );
    refuse(Buffer.from([COMMAND_BATCH_MAGIC, 1, 0x7f]), /client id count 127 exceeds/);
  });

  it('refuses to encode a number that is not a non-negative safe integer, naming the field', () => {
    const bad: Command = {
      body: {
        $case: 'partPrepare',
        partPrepare: { txid: tx(1), from: 1, to: 2, amount: -1, coordWatermark: undefined },
      },
    };
    expect(() => encodeCommandBatch([bad])).toThrow(/partPrepare.amount: -1 is not a non-negative safe integer/);
  });
});
