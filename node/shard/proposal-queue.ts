// The leader's queue of commands waiting for a slot, and the acknowledgements of finished
// transactions that ride along. Owns its state and calls nothing: ShardNode decides when the
// queue becomes slots (pacing, slots in flight) and takes commands from it.
import { assert, invariantViolated } from '../util/assert.js';
import type { Command, TxId } from '../gen/shardbank/v1/peer.js';

/** Past this many, acknowledgements go in a slot of their own without waiting for a tick. */
export const PENDING_ACKS_MAX = 1024;
/** Commands waiting for a slot; far above what client limits let in (the replica caps calls). */
const QUEUED_COMMANDS_MAX = 4_000_000;

export class ProposalQueue {
  private commands: Command[] = [];
  /**
   * Acknowledged transactions to forget: bookkeeping nobody waits for. They go as one CoordAck
   * command in the next slot that carries other commands, or alone at the next tick, so they
   * never take a slot that a client's command could need.
   */
  private acks: TxId[] = [];

  get length(): number {
    return this.commands.length;
  }

  get ackCount(): number {
    return this.acks.length;
  }

  /** Commands a slot would carry now, the acknowledgements counting as one. */
  get queuedWithAcks(): number {
    return this.commands.length + (this.acks.length > 0 ? 1 : 0);
  }

  push(command: Command): void {
    this.commands.push(command);
    if (!(this.commands.length <= QUEUED_COMMANDS_MAX))
      invariantViolated(`more than ${QUEUED_COMMANDS_MAX} commands queued`);
  }

  pushAck(txid: TxId): void {
    this.acks.push(txid);
  }

  /** Moves the pending acknowledgements into the queue as one CoordAck command. */
  queueAcks(): void {
    if (this.acks.length === 0) return;
    this.commands.push({ body: { $case: 'coordAck', coordAck: { txid: undefined, txids: this.acks } } });
    this.acks = [];
  }

  /** The next slot's commands, in queue order. */
  take(commandsMax: number): Command[] {
    assert(commandsMax > 0, 'a slot carries at least one command');
    return this.commands.splice(0, commandsMax);
  }

  clear(): void {
    this.commands = [];
    this.acks = [];
  }
}
