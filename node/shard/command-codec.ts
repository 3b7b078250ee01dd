// The value of a slot: a batch of bank commands in a compact binary form with a version byte.
// Logs written before it hold protobuf CommandBatches, which are still decoded, so old logs
// replay (the storage record format around values, node/storage, is unaffected).
//
// Why not protobuf: every command carried its client id as a string (26+ bytes, decoded into
// a new string per command on every follower), each TxId as a length-delimited submessage, and
// ts-proto builds the reader state and an object per oneof. Here a batch lists its client ids
// once (a command names one by its index), numbers are plain varints, and the decoder builds
// exactly the Command objects the leader applied, sharing one string per client id.
//
//   value   := MAGIC VERSION varint(S) string{S} varint(N) command{N}
//   string  := varint(byteLength) utf8
//   command := kind fields          (kind one byte; the fields by kind below, all varints)
//   txid    := shard round ordinal seq
//   opt     := 0 | 1 txid           (a TxId field that may be absent)
//
// A protobuf CommandBatch starts with 0x0a (field 1, length-delimited) or is empty, and a
// configuration entry with 0x07 (node/paxos/membership.ts), so the first byte tells them apart.
import type { Command, CoordPrepare, TransferCommand, TxId } from '../gen/shardbank/v1/peer.js';
import { CommandBatch } from '../gen/shardbank/v1/peer.js';

export const COMMAND_BATCH_MAGIC = 0xc5;
export const COMMAND_BATCH_VERSION = 1;

const KIND = {
  none: 0,
  noop: 1,
  transfer: 2,
  coordPrepare: 3,
  coordDecision: 4,
  coordAck: 5,
  partPrepare: 6,
  partDecision: 7,
  openSession: 8,
} as const;

/** A log value that is neither a valid command batch of a known format nor a protobuf one. */
export class CommandCodecError extends Error {
  constructor(message: string) {
    super(`command batch: ${message}`);
    this.name = 'CommandCodecError';
  }
}

// ---- Encoding ----

class Writer {
  buf: Buffer = Buffer.allocUnsafeSlow(64 * 1024);
  pos = 0;

  /** Starts a value of about `size` bytes (it grows past that when needed). */
  reset(size: number): void {
    this.pos = 0;
    if (this.buf.length < size) this.buf = Buffer.allocUnsafeSlow(size);
  }

  /** The value written, in a buffer of its own of exactly its size. */
  finish(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.pos));
  }

  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  byte(v: number): void {
    this.room(1);
    this.buf[this.pos++] = v;
  }

  /** A non-negative safe integer as a little-endian base-128 varint (at most 8 bytes). */
  uint(v: number, field: string): void {
    if (!(Number.isSafeInteger(v) && v >= 0))
      throw new CommandCodecError(`${field}: ${v} is not a non-negative safe integer`);
    this.room(8);
    const buf = this.buf;
    let pos = this.pos;
    while (v >= 0x80000000) {
      buf[pos++] = (v % 128) | 0x80;
      v = Math.floor(v / 128);
    }
    while (v >= 0x80) {
      buf[pos++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    buf[pos++] = v;
    this.pos = pos;
  }

  bool(v: boolean): void {
    this.byte(v ? 1 : 0);
  }

  txid(t: TxId, field: string): void {
    this.uint(t.shard, `${field}.shard`);
    this.uint(t.round, `${field}.round`);
    this.uint(t.ordinal, `${field}.ordinal`);
    this.uint(t.seq, `${field}.seq`);
  }

  optTxid(t: TxId | undefined, field: string): void {
    if (t === undefined) {
      this.byte(0);
      return;
    }
    this.byte(1);
    this.txid(t, field);
  }

  bytes(b: Buffer): void {
    this.room(b.length);
    b.copy(this.buf, this.pos);
    this.pos += b.length;
  }
}

/**
 * One scratch buffer for every encode (encoding is synchronous and never re-entered): each
 * value is then copied out at its exact size, so a log entry held in memory until the next
 * snapshot keeps no slack behind it.
 */
const scratch = new Writer();

/** The batch in the binary form (the only one written). */
export function encodeCommandBatch(commands: readonly Command[]): Buffer {
  // Client ids, each once, in order of first use.
  const ids = new Map<string, number>();
  const names: Buffer[] = [];
  let namesLength = 0;
  const ref = (clientId: string): number => {
    let index = ids.get(clientId);
    if (index === undefined) {
      index = names.length;
      ids.set(clientId, index);
      const name = Buffer.from(clientId, 'utf8');
      names.push(name);
      namesLength += name.length + 4;
    }
    return index;
  };
  for (const command of commands) {
    const body = command.body;
    if (body === undefined) continue;
    if (body.$case === 'transfer') ref(body.transfer.clientId);
    else if (body.$case === 'coordPrepare') ref(body.coordPrepare.clientId);
    else if (body.$case === 'openSession') ref(body.openSession.clientId);
  }
  const w = scratch;
  w.reset(16 + namesLength + commands.length * 48);
  w.byte(COMMAND_BATCH_MAGIC);
  w.byte(COMMAND_BATCH_VERSION);
  w.uint(names.length, 'client id count');
  for (const name of names) {
    w.uint(name.length, 'client id length');
    w.bytes(name);
  }
  w.uint(commands.length, 'command count');
  for (const command of commands) encodeCommand(w, command, ids);
  return w.finish();
}

function encodeCommand(w: Writer, command: Command, ids: Map<string, number>): void {
  const body = command.body;
  if (body === undefined) {
    w.byte(KIND.none);
    return;
  }
  switch (body.$case) {
    case 'noop':
      w.byte(KIND.noop);
      return;
    case 'transfer': {
      const t = body.transfer;
      w.byte(KIND.transfer);
      w.uint(ids.get(t.clientId)!, 'transfer.clientId');
      w.uint(t.requestId, 'transfer.requestId');
      w.uint(t.from, 'transfer.from');
      w.uint(t.to, 'transfer.to');
      w.uint(t.amount, 'transfer.amount');
      w.uint(t.acknowledgedBelow, 'transfer.acknowledgedBelow');
      w.uint(t.sessionEpoch, 'transfer.sessionEpoch');
      return;
    }
    case 'coordPrepare': {
      const p = body.coordPrepare;
      w.byte(KIND.coordPrepare);
      w.optTxid(p.txid, 'coordPrepare.txid');
      w.uint(ids.get(p.clientId)!, 'coordPrepare.clientId');
      w.uint(p.requestId, 'coordPrepare.requestId');
      w.uint(p.from, 'coordPrepare.from');
      w.uint(p.to, 'coordPrepare.to');
      w.uint(p.amount, 'coordPrepare.amount');
      w.uint(p.toShard, 'coordPrepare.toShard');
      w.uint(p.acknowledgedBelow, 'coordPrepare.acknowledgedBelow');
      w.uint(p.sessionEpoch, 'coordPrepare.sessionEpoch');
      return;
    }
    case 'coordDecision': {
      const d = body.coordDecision;
      w.byte(KIND.coordDecision);
      w.optTxid(d.txid, 'coordDecision.txid');
      w.bool(d.commit);
      w.uint(d.reason, 'coordDecision.reason');
      w.uint(d.participantShard, 'coordDecision.participantShard');
      return;
    }
    case 'coordAck': {
      const a = body.coordAck;
      w.byte(KIND.coordAck);
      w.optTxid(a.txid, 'coordAck.txid');
      w.uint(a.txids.length, 'coordAck.txids count');
      for (const t of a.txids) w.txid(t, 'coordAck.txids');
      return;
    }
    case 'partPrepare': {
      const p = body.partPrepare;
      w.byte(KIND.partPrepare);
      w.optTxid(p.txid, 'partPrepare.txid');
      w.uint(p.from, 'partPrepare.from');
      w.uint(p.to, 'partPrepare.to');
      w.uint(p.amount, 'partPrepare.amount');
      w.optTxid(p.coordWatermark, 'partPrepare.coordWatermark');
      return;
    }
    case 'partDecision': {
      const d = body.partDecision;
      w.byte(KIND.partDecision);
      w.optTxid(d.txid, 'partDecision.txid');
      w.bool(d.commit);
      w.optTxid(d.coordWatermark, 'partDecision.coordWatermark');
      return;
    }
    case 'openSession':
      w.byte(KIND.openSession);
      w.uint(ids.get(body.openSession.clientId)!, 'openSession.clientId');
      return;
    default: {
      const unknown: never = body;
      throw new CommandCodecError(`unknown command ${JSON.stringify(unknown)}`);
    }
  }
}

// ---- Decoding ----

class Reader {
  pos = 2;

  constructor(private readonly buf: Buffer) {}

  private fail(field: string, what: string): never {
    throw new CommandCodecError(`${field}: ${what} at byte ${this.pos} of ${this.buf.length}`);
  }

  byte(field: string): number {
    if (this.pos >= this.buf.length) this.fail(field, 'truncated');
    return this.buf[this.pos++]!;
  }

  uint(field: string): number {
    const buf = this.buf;
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 8; i += 1) {
      if (this.pos >= buf.length) this.fail(field, 'truncated varint');
      const b = buf[this.pos++]!;
      result += (b & 0x7f) * scale;
      if (b < 0x80) {
        if (!(result <= Number.MAX_SAFE_INTEGER)) this.fail(field, 'value above 2^53 - 1');
        return result;
      }
      scale *= 128;
    }
    return this.fail(field, 'varint longer than 8 bytes');
  }

  bool(field: string): boolean {
    const b = this.byte(field);
    if (b > 1) this.fail(field, `boolean byte ${b}`);
    return b === 1;
  }

  txid(field: string): TxId {
    return { shard: this.uint(field), round: this.uint(field), ordinal: this.uint(field), seq: this.uint(field) };
  }

  optTxid(field: string): TxId | undefined {
    const present = this.bool(field);
    return present ? this.txid(field) : undefined;
  }

  string(field: string): string {
    const length = this.uint(field);
    if (length > this.buf.length - this.pos) this.fail(field, `length ${length} past the end`);
    const text = this.buf.toString('utf8', this.pos, this.pos + length);
    this.pos += length;
    return text;
  }

  get atEnd(): boolean {
    return this.pos === this.buf.length;
  }
}

/** A slot's commands, from either form (the binary batch, or a protobuf CommandBatch of an older log). */
export function decodeCommandBatch(value: Buffer): Command[] {
  if (value.length === 0 || value[0] !== COMMAND_BATCH_MAGIC) {
    try {
      return CommandBatch.decode(value).commands;
    } catch (error) {
      throw new CommandCodecError(
        `neither a binary batch (first byte 0x${(value[0] ?? 0).toString(16)}) nor a protobuf batch: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
  }
  if (value.length < 2 || value[1] !== COMMAND_BATCH_VERSION)
    throw new CommandCodecError(`version ${value[1]} is not known (this build reads ${COMMAND_BATCH_VERSION})`);
  const r = new Reader(value);
  const nameCount = r.uint('client id count');
  if (nameCount > value.length) throw new CommandCodecError(`client id count ${nameCount} exceeds the value's size`);
  const names: string[] = new Array<string>(nameCount);
  for (let i = 0; i < nameCount; i += 1) names[i] = r.string('client id');
  const count = r.uint('command count');
  if (count > value.length) throw new CommandCodecError(`command count ${count} exceeds the value's size`);
  const commands: Command[] = new Array<Command>(count);
  for (let i = 0; i < count; i += 1) commands[i] = decodeCommand(r, names);
  if (!r.atEnd) throw new CommandCodecError(`${value.length - r.pos} bytes after the last command`);
  return commands;
}

function clientIdAt(r: Reader, names: readonly string[], field: string): string {
  const index = r.uint(field);
  const name = names[index];
  if (name === undefined) throw new CommandCodecError(`${field}: client id index ${index} of ${names.length}`);
  return name;
}

function decodeCommand(r: Reader, names: readonly string[]): Command {
  const kind = r.byte('command kind');
  switch (kind) {
    case KIND.none:
      return { body: undefined };
    case KIND.noop:
      return { body: { $case: 'noop', noop: {} } };
    case KIND.transfer: {
      const transfer: TransferCommand = {
        clientId: clientIdAt(r, names, 'transfer.clientId'),
        requestId: r.uint('transfer.requestId'),
        from: r.uint('transfer.from'),
        to: r.uint('transfer.to'),
        amount: r.uint('transfer.amount'),
        acknowledgedBelow: r.uint('transfer.acknowledgedBelow'),
        sessionEpoch: r.uint('transfer.sessionEpoch'),
      };
      return { body: { $case: 'transfer', transfer } };
    }
    case KIND.coordPrepare: {
      const coordPrepare: CoordPrepare = {
        txid: r.optTxid('coordPrepare.txid'),
        clientId: clientIdAt(r, names, 'coordPrepare.clientId'),
        requestId: r.uint('coordPrepare.requestId'),
        from: r.uint('coordPrepare.from'),
        to: r.uint('coordPrepare.to'),
        amount: r.uint('coordPrepare.amount'),
        toShard: r.uint('coordPrepare.toShard'),
        acknowledgedBelow: r.uint('coordPrepare.acknowledgedBelow'),
        sessionEpoch: r.uint('coordPrepare.sessionEpoch'),
      };
      return { body: { $case: 'coordPrepare', coordPrepare } };
    }
    case KIND.coordDecision: {
      const txid = r.optTxid('coordDecision.txid');
      const commit = r.bool('coordDecision.commit');
      const reason = r.uint('coordDecision.reason');
      const participantShard = r.uint('coordDecision.participantShard');
      return { body: { $case: 'coordDecision', coordDecision: { txid, commit, reason, participantShard } } };
    }
    case KIND.coordAck: {
      const txid = r.optTxid('coordAck.txid');
      const count = r.uint('coordAck.txids count');
      const txids: TxId[] = [];
      for (let i = 0; i < count; i += 1) txids.push(r.txid('coordAck.txids'));
      return { body: { $case: 'coordAck', coordAck: { txid, txids } } };
    }
    case KIND.partPrepare: {
      const txid = r.optTxid('partPrepare.txid');
      const from = r.uint('partPrepare.from');
      const to = r.uint('partPrepare.to');
      const amount = r.uint('partPrepare.amount');
      const coordWatermark = r.optTxid('partPrepare.coordWatermark');
      return { body: { $case: 'partPrepare', partPrepare: { txid, from, to, amount, coordWatermark } } };
    }
    case KIND.partDecision: {
      const txid = r.optTxid('partDecision.txid');
      const commit = r.bool('partDecision.commit');
      const coordWatermark = r.optTxid('partDecision.coordWatermark');
      return { body: { $case: 'partDecision', partDecision: { txid, commit, coordWatermark } } };
    }
    case KIND.openSession:
      return {
        body: { $case: 'openSession', openSession: { clientId: clientIdAt(r, names, 'openSession.clientId') } },
      };
    default:
      throw new CommandCodecError(`unknown command kind ${kind}`);
  }
}
