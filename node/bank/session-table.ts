// Exactly-once sessions, kept in the replicated state (never in leader memory) and bounded.
//
// A client opens a session on a shard (an effect-free OpenSession command: it returns the
// client's session if the table has one, else makes one) and gets its epoch, a number this
// shard never hands out twice. Every request of the client to that shard names the epoch.
// A request whose epoch is not the table's current session of that client is refused, never
// run: its session was forgotten (or never existed), so nothing is known about which of its
// ids already ran. That is why forgetting a session can never make an old request id run a
// second time, however many clients come and go; the table needs no memory of forgotten
// clients at all (docs/ARCHITECTURE.md "Sessions").
//
// Eviction is deterministic (least recently used by apply order), so every replica evicts the
// same sessions at the same log index; a snapshot keeps that order.
import { assert, invariantViolated } from '../util/assert.js';
import type { SessionRecord, TxId } from '../gen/shardbank/v1/peer.js';

export const SESSION_LIMITS = {
  sessionsMax: 10_000,
  /**
   * Finished outcomes kept per session (attempts in flight are kept in addition, always). At
   * least two of the largest batches (REQUEST_LIMITS.batchEntriesMax, asserted there): a batch
   * of one client id on one shard must never trim an outcome its client has not seen yet (an
   * 8190-entry batch against 2,048 lost 78 of 65,520 outcomes to FAILED_PRECONDITION).
   */
  resultsPerSessionMax: 20_000,
  /** Bounds the snapshot: whole least-recently-used sessions go once the total passes this. */
  resultsTotalMax: 200_000,
  clientIdBytesMax: 128,
} as const;

export const RESULT_STATES = ['inflight', 'final', 'aborted'] as const;
export type ResultState = (typeof RESULT_STATES)[number];

export interface SessionResult {
  digest: number;
  state: ResultState;
  /** Outcome code (bank.proto Outcome) once final or aborted. */
  outcome: number;
  index: number;
  txid: TxId | undefined;
}

interface Session {
  epoch: number;
  /** Ids at or below this that have no result here are refused (acknowledged or trimmed). */
  evictedBelow: number;
  results: Map<number, SessionResult>;
  /** Results with state 'inflight': a session with any is never evicted. */
  inflight: number;
  /**
   * Results in the order they were last recorded (oldest first), for trimming: `ids[i]` with
   * the very object `refs[i]` that was recorded; an entry whose object is no longer the id's
   * result (recorded again since, or dropped) is skipped. Trimming drops the least recently
   * recorded finished result, so an attempt that finishes late is as fresh as its decision.
   */
  ids: number[];
  refs: SessionResult[];
  head: number;
}

export type SessionCheck =
  | { kind: 'new' }
  | { kind: 'retry-after-abort'; previous: SessionResult }
  | { kind: 'duplicate'; result: SessionResult }
  | { kind: 'stale'; watermark: number }
  | { kind: 'mismatch' }
  /** No open session of this client with this epoch: refused, never run. */
  | { kind: 'expired'; epoch: number; current: number | undefined; issued: boolean };

/** The answer for a request id the session has not seen: one shared object (checked per transfer on every replica). */
const NEW_REQUEST: SessionCheck = Object.freeze({ kind: 'new' });

/**
 * FNV-1a over the decimal text of the transfer's arguments: the same request id with other
 * arguments is refused. The digest is replicated state (kept in snapshots), so its value must
 * never change between versions; the digits of a safe non-negative integer are hashed without
 * building its string (this runs several times per transfer on every replica).
 */
export function transferDigest(from: number, to: number, amount: number): number {
  return digestField(digestField(digestField(0x811c9dc5, from), to), amount);
}

const DIGITS = new Uint8Array(16);

function digestField(hash: number, value: number): number {
  if (Number.isSafeInteger(value) && value >= 0) {
    let n = 0;
    let rest = value;
    do {
      DIGITS[n++] = 48 + (rest % 10);
      rest = Math.floor(rest / 10);
    } while (rest > 0);
    while (n > 0) hash = Math.imul(hash ^ DIGITS[--n]!, 0x01000193) >>> 0;
  } else {
    const text = String(value);
    for (let i = 0; i < text.length; i += 1) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193) >>> 0;
  }
  return Math.imul(hash ^ 0x2c, 0x01000193) >>> 0;
}

/** The refusal text for a request whose session epoch is not the client's open session. */
export function expiredMessage(clientId: string, check: Extract<SessionCheck, { kind: 'expired' }>): string {
  if (check.epoch === 0)
    return `session_epoch: client ${clientId} must open a session on this shard (OpenSession) and name its epoch`;
  if (!check.issued)
    return `session_epoch: ${check.epoch} was never issued to client ${clientId} by this shard; open a session (OpenSession)`;
  return `session expired: client ${clientId}'s session ${check.epoch} on this shard was forgotten; whether its requests ran is no longer known and they will never run again; open a new session for new requests`;
}

export class SessionTable {
  // Map iteration order is insertion order; a session is re-inserted on use, so the first
  // entry is always the least recently used one.
  private readonly sessions = new Map<string, Session>();
  /** The epoch the next opened session gets: unique per shard, only grows. */
  private nextEpoch = 1;
  /** Results held across all sessions; derived from the table, so a restored replica agrees. */
  private resultsCount = 0;
  /**
   * The session inserted last (the most recently used one), if it is still in the table:
   * recording for it again needs no re-insertion. A BatchTransfer's entries all share one
   * client id, and the delete + set per entry showed in replicas' profiles.
   */
  private mostRecent: string | undefined;

  get size(): number {
    return this.sessions.size;
  }

  get epochCounter(): number {
    return this.nextEpoch;
  }

  /** The client's open session's epoch, if it has one. */
  epochOf(clientId: string): number | undefined {
    return this.sessions.get(clientId)?.epoch;
  }

  /**
   * OpenSession: the client's session if there is one (a repeated open is harmless and returns
   * the same epoch), else a new one with a fresh epoch. Counts as a use (LRU).
   */
  open(clientId: string): { epoch: number; created: boolean } {
    const existing = this.sessions.get(clientId);
    if (existing) {
      this.touch(clientId, existing);
      // A session from before epochs gets one, and keeps its outcomes and watermark (a retry
      // of a request sent before the upgrade still finds its outcome).
      if (existing.epoch === 0) existing.epoch = this.nextEpoch++;
      return { epoch: existing.epoch, created: false };
    }
    const session: Session = {
      epoch: this.nextEpoch,
      evictedBelow: 0,
      results: new Map(),
      inflight: 0,
      ids: [],
      refs: [],
      head: 0,
    };
    this.nextEpoch += 1;
    this.sessions.set(clientId, session);
    this.mostRecent = clientId;
    this.evictSessions();
    return { epoch: session.epoch, created: true };
  }

  check(clientId: string, epoch: number, requestId: number, digest: number): SessionCheck {
    const session = this.sessions.get(clientId);
    // Epoch 0 is never a session's (a snapshot from before epochs restores sessions with 0).
    if (!session || session.epoch !== epoch || epoch === 0) {
      return { kind: 'expired', epoch, current: session?.epoch, issued: epoch > 0 && epoch < this.nextEpoch };
    }
    // A result kept here answers its id even below the watermark (an attempt that finished
    // after the watermark passed it).
    const result = session.results.get(requestId);
    if (result) {
      if (result.digest !== digest) return { kind: 'mismatch' };
      if (result.state === 'aborted') return { kind: 'retry-after-abort', previous: result };
      return { kind: 'duplicate', result };
    }
    if (requestId <= session.evictedBelow) return { kind: 'stale', watermark: session.evictedBelow };
    return NEW_REQUEST;
  }

  /**
   * The client has every outcome at or below `below`: forget them and refuse those ids from
   * now on. An attempt still in flight keeps its result (it can still finish, and a retry of
   * it joins it), whatever the order results were recorded in.
   */
  acknowledge(clientId: string, epoch: number, below: number): void {
    const session = this.sessions.get(clientId);
    if (!session || session.epoch !== epoch || epoch === 0 || below <= session.evictedBelow) return;
    const { results } = session;
    if (below - session.evictedBelow <= results.size) {
      for (let id = session.evictedBelow + 1; id <= below; id += 1) this.forget(session, id);
    } else {
      for (const id of [...results.keys()]) if (id <= below) this.forget(session, id);
    }
    session.evictedBelow = below;
  }

  get(clientId: string, requestId: number): SessionResult | undefined {
    return this.sessions.get(clientId)?.results.get(requestId);
  }

  /** Records an outcome for a session that check() found open (or that has it in flight). */
  record(clientId: string, requestId: number, result: SessionResult): void {
    const session = this.sessions.get(clientId);
    if (!(session !== undefined))
      invariantViolated(`recording a result for client ${clientId}, which has no open session`);
    this.touch(clientId, session);
    const previous = session.results.get(requestId);
    if (previous === undefined) {
      // A new result below the watermark would be a request that check() refused: a bug.
      assert(requestId > session.evictedBelow, 'recording a result below the session watermark');
      this.resultsCount += 1;
    } else if (previous.state === 'inflight') {
      session.inflight -= 1;
    }
    if (result.state === 'inflight') session.inflight += 1;
    session.results.set(requestId, result);
    // In flight: not a trimming candidate; it is queued again when its outcome is recorded.
    if (result.state !== 'inflight') this.enqueue(session, requestId, result);
    this.trimResults(session);
    this.evictSessions();
  }

  private touch(clientId: string, session: Session): void {
    if (this.mostRecent === clientId) return;
    this.sessions.delete(clientId);
    this.sessions.set(clientId, session);
    this.mostRecent = clientId;
  }

  private enqueue(session: Session, id: number, result: SessionResult): void {
    session.ids.push(id);
    session.refs.push(result);
    // Skipped entries pile up when results are recorded again or acknowledged: compact now and
    // then (amortised O(1) per record).
    const queued = session.ids.length - session.head;
    if (queued > 2 * session.results.size + 64) {
      const ids: number[] = [];
      const refs: SessionResult[] = [];
      for (let i = session.head; i < session.ids.length; i += 1) {
        if (session.results.get(session.ids[i]!) === session.refs[i]) {
          ids.push(session.ids[i]!);
          refs.push(session.refs[i]!);
        }
      }
      session.ids = ids;
      session.refs = refs;
      session.head = 0;
    }
  }

  /** Drops a kept result that is not in flight (an in-flight attempt is never forgotten). */
  private forget(session: Session, id: number): void {
    const result = session.results.get(id);
    if (!result || result.state === 'inflight') return;
    session.results.delete(id);
    this.resultsCount -= 1;
  }

  /**
   * Beyond the per-session bound, drops the least recently recorded finished results and
   * raises the watermark past each dropped id. Attempts in flight are never dropped, and a
   * result still kept below the watermark keeps answering its id, so the order in which
   * outcomes arrive never makes one unreachable. O(1) amortised per record.
   */
  private trimResults(session: Session, max: number = SESSION_LIMITS.resultsPerSessionMax): void {
    while (session.results.size > max && session.results.size > session.inflight && session.head < session.ids.length) {
      const id = session.ids[session.head]!;
      const ref = session.refs[session.head]!;
      session.head += 1;
      if (session.results.get(id) !== ref || ref.state === 'inflight') continue;
      session.results.delete(id);
      this.resultsCount -= 1;
      if (id > session.evictedBelow) session.evictedBelow = id;
    }
    if (session.head > 1024 && session.head * 2 > session.ids.length) {
      session.ids = session.ids.slice(session.head);
      session.refs = session.refs.slice(session.head);
      session.head = 0;
    }
  }

  /**
   * Past the total bound, the least recently used sessions lose their finished outcomes (their
   * watermarks rise past them) but stay open: a client keeps its session, and only ids it has
   * not had an answer for long ago are refused. Past the session bound, whole sessions go,
   * least recently used first; never one with an attempt in flight, nor the one in use.
   */
  private evictSessions(): void {
    if (this.resultsCount > SESSION_LIMITS.resultsTotalMax) {
      for (const [clientId, session] of this.sessions) {
        if (this.resultsCount <= SESSION_LIMITS.resultsTotalMax) break;
        if (clientId === this.mostRecent) continue;
        const before = session.results.size;
        this.trimResults(session, 0);
        if (session.results.size === 0 && before > 0 && session.ids.length > 0) {
          session.ids = [];
          session.refs = [];
          session.head = 0;
        }
      }
    }
    while (this.sessions.size > SESSION_LIMITS.sessionsMax) {
      let victim: string | undefined;
      for (const [clientId, session] of this.sessions) {
        if (session.inflight === 0 && clientId !== this.mostRecent) {
          victim = clientId;
          break;
        }
      }
      if (victim === undefined) return;
      this.evictSession(victim, this.sessions.get(victim)!);
    }
  }

  private evictSession(clientId: string, session: Session): void {
    // Nothing of the session is kept: its epoch is refused from now on (check() finds no
    // session with it), which is all that exactly-once needs.
    this.sessions.delete(clientId);
    if (this.mostRecent === clientId) this.mostRecent = undefined;
    this.resultsCount -= session.results.size;
  }

  /** Sessions in LRU order, each session's results in trimming order (oldest recorded first). */
  toRecords(): { sessions: SessionRecord[]; nextEpoch: number } {
    const sessions: SessionRecord[] = [];
    for (const [clientId, session] of this.sessions) {
      const ordered: [number, SessionResult][] = [];
      for (let i = session.head; i < session.ids.length; i += 1) {
        const id = session.ids[i]!;
        if (session.results.get(id) === session.refs[i]) ordered.push([id, session.refs[i]!]);
      }
      for (const [id, r] of session.results) if (r.state === 'inflight') ordered.push([id, r]);
      sessions.push({
        clientId,
        evictedBelow: session.evictedBelow,
        lastUsedIndex: 0,
        epoch: session.epoch,
        results: ordered.map(([requestId, r]) => ({
          requestId,
          digest: r.digest,
          outcome: r.outcome,
          index: r.index,
          txid: r.txid,
          final: r.state === 'final',
          // 'aborted' is encoded as not final with an outcome; 'inflight' has outcome 0.
        })),
      });
    }
    return { sessions, nextEpoch: this.nextEpoch };
  }

  static fromRecords(sessions: SessionRecord[], nextEpoch: number): SessionTable {
    const table = new SessionTable();
    table.nextEpoch = Math.max(1, nextEpoch);
    for (const record of sessions) {
      const session: Session = {
        epoch: record.epoch,
        evictedBelow: record.evictedBelow,
        results: new Map(),
        inflight: 0,
        ids: [],
        refs: [],
        head: 0,
      };
      for (const r of record.results) {
        const state: ResultState = r.final ? 'final' : r.outcome !== 0 ? 'aborted' : 'inflight';
        const result: SessionResult = { digest: r.digest, state, outcome: r.outcome, index: r.index, txid: r.txid };
        session.results.set(r.requestId, result);
        if (state === 'inflight') session.inflight += 1;
        else {
          session.ids.push(r.requestId);
          session.refs.push(result);
        }
      }
      if (!(record.epoch < table.nextEpoch || record.epoch === 0))
        invariantViolated(`snapshot session epoch ${record.epoch} not below the epoch counter ${table.nextEpoch}`);
      table.sessions.set(record.clientId, session);
      table.resultsCount += session.results.size;
      // The session used last is always the table's last entry (see touch()).
      table.mostRecent = record.clientId;
    }
    return table;
  }

  /** A content fingerprint for replica-agreement checks in tests and the simulator. */
  fingerprint(): string {
    const parts: string[] = [`next=${this.nextEpoch}`];
    for (const [clientId, session] of [...this.sessions].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
      const results = [...session.results].sort((a, b) => a[0] - b[0]);
      parts.push(
        `${clientId}@${session.epoch}:${session.evictedBelow}:${results.map(([id, r]) => `${id}/${r.state}/${r.outcome}`).join(',')}`,
      );
    }
    return parts.join(';');
  }
}
