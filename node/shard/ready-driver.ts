// The one loop that carries out a Ready (of a ShardNode, or of a bare PaxosCore), shared by
// the production driver (node/replica/replica.ts), the simulator (test/sim/sim-cluster.ts)
// and the unit-test harnesses, so the ordering rules of the core's contract live here once:
//
//   1. send `messages` at once (requests; they promise nothing), route `txMessages`, hand
//      out `replies` and `events`;
//   2. start the persist; its `messagesAfterPersist` (Promised / Accepted, which claim
//      durable state) leave, and persisted(id) is called, only once it AND every persist
//      issued before it are durable, in id order, whatever order the storage finishes in;
//   3. a Ready without a persist carries no `messagesAfterPersist` (the core holds such
//      replies until their persist is durable: see PaxosCore.ready); asserted.
//
// Pure: no timers, files or sockets. The driver talks to small ports; the storage port says
// whether a persist is durable at once (a synchronous write), pending (it calls back), or
// failed (the port fail-stops the process: nothing more is carried out).
import { assert, invariantViolated } from '../util/assert.js';
import type { PaxosMessage, TxMessage } from '../gen/shardbank/v1/peer.js';
import type { CoreEvent, PersistWork } from '../paxos/paxos-core.js';
import type { ClientReply } from './shard-node.js';

/** What the driver needs of a Ready: a ShardReady, or a PaxosCore Ready (no tx messages, no replies). */
export interface DrivenReady {
  messages: PaxosMessage[];
  persist: PersistWork | undefined;
  messagesAfterPersist: PaxosMessage[];
  events: CoreEvent[];
  txMessages?: TxMessage[];
  replies?: ClientReply[];
}

export interface Drivable<R extends DrivenReady> {
  ready(): R;
  persisted(id: number): void;
}

export const PERSIST_STARTS = ['durable', 'pending', 'failed'] as const;
export type PersistStart = (typeof PERSIST_STARTS)[number];

export interface StoragePort {
  /**
   * Starts making `work` durable. Returns 'durable' when it already is (written on this
   * thread), 'pending' when it will call `durable()` later (never from inside this call), or
   * 'failed' when the storage failed (the port has fail-stopped the process). `quiet`:
   * nothing issued earlier is still pending, so a synchronous write cannot overtake one.
   */
  persist(work: PersistWork, durable: () => void, quiet: boolean): PersistStart;
}

export interface ReadyPorts<R extends DrivenReady> {
  storage: StoragePort;
  send(message: PaxosMessage): void;
  sendTx(message: TxMessage): void;
  reply(reply: ClientReply): void;
  event(event: CoreEvent): void;
  /** A pending persist became durable and the node was told: schedule another Ready pass. */
  progress(): void;
  /** The rest of a Ready the driver does not know (a bare core's committed entries, say). */
  rest?(ready: R): void;
}

export interface ReadyDriverOptions {
  /**
   * Tests only (the simulator's --early-after-persist): a Ready without a persist sends its
   * messagesAfterPersist at once instead of asserting there are none, as the driver at
   * 73bae90 did (issue 15, bug 2). Inert against a core that holds such replies itself.
   */
  earlyAfterPersist?: boolean;
}

interface PendingPersist {
  id: number;
  after: PaxosMessage[];
  durable: boolean;
}

/** Persists started and not yet handed back; far above anything a core has in flight. */
const PENDING_PERSISTS_MAX = 1_000_000;

export class ReadyDriver<R extends DrivenReady> {
  private readonly pending: PendingPersist[] = [];
  private halted = false;
  private spokeValue = false;

  constructor(
    private readonly node: Drivable<R>,
    private readonly ports: ReadyPorts<R>,
    private readonly options: ReadyDriverOptions = {},
  ) {}

  /** Persists started whose completion the node has not been told of yet. */
  get persistsPending(): number {
    return this.pending.length;
  }

  /** Whether the last Ready carried out sent requests, 2PC messages or replies (not counting after-persist ones). */
  get lastPassSpoke(): boolean {
    return this.spokeValue;
  }

  /** The process stopped (crash, failure, shutdown): late completions are ignored. */
  halt(): void {
    this.halted = true;
  }

  /** One pass: takes a Ready and carries it out. True when it did anything (the caller may loop). */
  pass(): boolean {
    if (this.halted) return false;
    return this.carryOut(this.node.ready());
  }

  carryOut(ready: R): boolean {
    this.spokeValue = false;
    if (this.halted) return false;
    const { ports } = this;
    for (const message of ready.messages) ports.send(message);
    for (const message of ready.txMessages ?? []) ports.sendTx(message);
    for (const reply of ready.replies ?? []) ports.reply(reply);
    for (const event of ready.events) ports.event(event);
    ports.rest?.(ready);
    const spoke = ready.messages.length > 0 || (ready.txMessages?.length ?? 0) > 0 || (ready.replies?.length ?? 0) > 0;
    this.spokeValue = spoke;
    const persist = ready.persist;
    if (persist === undefined) {
      if (this.options.earlyAfterPersist) for (const message of ready.messagesAfterPersist) ports.send(message);
      else
        assert(
          ready.messagesAfterPersist.length === 0,
          'replies that claim durable state in a Ready without a persist',
        );
      return spoke;
    }
    if (this.halted) return false; // a port stopped the process while handling this Ready
    if (!(this.pending.length < PENDING_PERSISTS_MAX))
      invariantViolated(`more than ${PENDING_PERSISTS_MAX} persists pending`);
    const entry: PendingPersist = { id: persist.id, after: ready.messagesAfterPersist, durable: false };
    const quiet = this.pending.length === 0;
    this.pending.push(entry);
    let synchronous = true;
    const started = ports.storage.persist(
      persist,
      () => {
        assert(!synchronous, 'a storage port called durable() from inside persist()');
        this.completed(entry);
      },
      quiet,
    );
    synchronous = false;
    if (started === 'failed') {
      this.halt();
      return false;
    }
    if (started === 'durable') {
      entry.durable = true;
      this.handBack();
    }
    return true;
  }

  private completed(entry: PendingPersist): void {
    if (this.halted) return;
    if (entry.durable) invariantViolated(`persist ${entry.id} completed twice`);
    entry.durable = true;
    this.handBack();
    this.ports.progress();
  }

  /** Durable persists at the head, in id order: their replies may go, and the node may count them. */
  private handBack(): void {
    while (this.pending.length > 0 && this.pending[0]!.durable && !this.halted) {
      const entry = this.pending.shift()!;
      for (const message of entry.after) this.ports.send(message);
      this.node.persisted(entry.id);
    }
  }
}
