// Exactly-once sessions, kept in the replicated state (never in leader memory) and bounded.
// Eviction is deterministic (least recently used by apply order), so every replica evicts
// the same sessions at the same log index.
import { assert } from '../util/assert.js';
import type { EvictedSession, SessionRecord, TxId } from '../gen/shardbank/v1/peer.js';

export const SESSION_LIMITS = {
  sessionsMax: 10_000,
  resultsPerSessionMax: 2048,
  /** Bounds the snapshot: whole least-recently-used sessions go once the total passes this. */
  resultsTotalMax: 200_000,
  evictedSessionsMax: 100_000,
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
  evictedBelow: number;
  results: Map<number, SessionResult>;
}

export type SessionCheck =
  | { kind: 'new' }
  | { kind: 'retry-after-abort'; previous: SessionResult }
  | { kind: 'duplicate'; result: SessionResult }
  | { kind: 'stale'; watermark: number }
  | { kind: 'mismatch' };

/** FNV-1a over the transfer's arguments: the same request id with other arguments is refused. */
export function transferDigest(from: number, to: number, amount: number): number {
  let hash = 0x811c9dc5;
  for (const value of [from, to, amount]) {
    const text = String(value);
    for (let i = 0; i < text.length; i += 1) {
      hash ^= text.charCodeAt(i);
      hash = Math.imul(hash, 0x01000193) >>> 0;
    }
    hash ^= 0x2c;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash >>> 0;
}

export class SessionTable {
  // Map iteration order is insertion order; a session is re-inserted on use, so the first
  // entry is always the least recently used one.
  private readonly sessions = new Map<string, Session>();
  private readonly evicted = new Map<string, number>();
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

  check(clientId: string, requestId: number, digest: number): SessionCheck {
    const session = this.sessions.get(clientId);
    const floor = session ? session.evictedBelow : (this.evicted.get(clientId) ?? 0);
    if (requestId <= floor) return { kind: 'stale', watermark: floor };
    const result = session?.results.get(requestId);
    if (!result) return { kind: 'new' };
    if (result.digest !== digest) return { kind: 'mismatch' };
    if (result.state === 'aborted') return { kind: 'retry-after-abort', previous: result };
    return { kind: 'duplicate', result };
  }

  /**
   * The client has every outcome at or below `below`: forget them and refuse those ids from
   * now on. The watermark stops below any attempt still in flight, which can still finish.
   */
  acknowledge(clientId: string, below: number): void {
    const session = this.sessions.get(clientId);
    if (!session || below <= session.evictedBelow) return;
    // Results are in id order (ids increase per client), so this touches only what it drops.
    let watermark = below;
    for (const [id, result] of session.results) {
      if (id > below) break;
      if (result.state === 'inflight') {
        watermark = id - 1;
        break;
      }
      session.results.delete(id);
      this.resultsCount -= 1;
    }
    session.evictedBelow = Math.max(session.evictedBelow, watermark);
  }

  get(clientId: string, requestId: number): SessionResult | undefined {
    return this.sessions.get(clientId)?.results.get(requestId);
  }

  record(clientId: string, requestId: number, result: SessionResult): void {
    let session = this.sessions.get(clientId);
    if (!session) {
      session = { evictedBelow: this.evicted.get(clientId) ?? 0, results: new Map() };
      this.evicted.delete(clientId);
      this.sessions.set(clientId, session);
    } else if (this.mostRecent !== clientId) {
      this.sessions.delete(clientId);
      this.sessions.set(clientId, session);
    }
    this.mostRecent = clientId;
    if (!session.results.has(requestId)) {
      // A new result below the watermark would be a request that check() refused: a bug.
      assert(requestId > session.evictedBelow, 'recording a result below the session watermark');
      this.resultsCount += 1;
    }
    session.results.set(requestId, result);
    this.trimResults(session);
    this.evictSessions();
  }

  /**
   * Drops the oldest finished results beyond the per-session bound and raises the watermark.
   * Request ids increase per client, so insertion order is id order; trimming stops at the
   * first result still in flight, so the watermark never passes an attempt that can finish.
   */
  private trimResults(session: Session): void {
    if (session.results.size <= SESSION_LIMITS.resultsPerSessionMax) return;
    for (const [id, result] of session.results) {
      if (session.results.size <= SESSION_LIMITS.resultsPerSessionMax) break;
      if (result.state === 'inflight') break;
      session.results.delete(id);
      this.resultsCount -= 1;
      session.evictedBelow = Math.max(session.evictedBelow, id);
    }
  }

  private evictSessions(): void {
    if (this.resultsCount > SESSION_LIMITS.resultsTotalMax) {
      for (const [clientId, session] of [...this.sessions]) {
        if (this.resultsCount <= SESSION_LIMITS.resultsTotalMax) break;
        if ([...session.results.values()].some((r) => r.state === 'inflight')) continue;
        this.evictSession(clientId, session);
      }
    }
    while (this.sessions.size > SESSION_LIMITS.sessionsMax) {
      let victim: string | undefined;
      for (const [clientId, session] of this.sessions) {
        if (![...session.results.values()].some((r) => r.state === 'inflight')) {
          victim = clientId;
          break;
        }
      }
      if (victim === undefined) return;
      this.evictSession(victim, this.sessions.get(victim)!);
    }
  }

  private evictSession(clientId: string, session: Session): void {
    let watermark = session.evictedBelow;
    for (const id of session.results.keys()) watermark = Math.max(watermark, id);
    this.sessions.delete(clientId);
    if (this.mostRecent === clientId) this.mostRecent = undefined;
    this.resultsCount -= session.results.size;
    this.evicted.set(clientId, watermark);
    while (this.evicted.size > SESSION_LIMITS.evictedSessionsMax) {
      const oldest = this.evicted.keys().next().value as string;
      this.evicted.delete(oldest);
    }
  }

  toRecords(): { sessions: SessionRecord[]; evicted: EvictedSession[] } {
    const sessions: SessionRecord[] = [];
    for (const [clientId, session] of this.sessions) {
      sessions.push({
        clientId,
        evictedBelow: session.evictedBelow,
        lastUsedIndex: 0,
        results: [...session.results].map(([requestId, r]) => ({
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
    const evicted = [...this.evicted].map(([clientId, evictedBelow]) => ({ clientId, evictedBelow }));
    return { sessions, evicted };
  }

  static fromRecords(sessions: SessionRecord[], evicted: EvictedSession[]): SessionTable {
    const table = new SessionTable();
    for (const record of evicted) table.evicted.set(record.clientId, record.evictedBelow);
    for (const record of sessions) {
      const results = new Map<number, SessionResult>();
      for (const r of record.results) {
        const state: ResultState = r.final ? 'final' : r.outcome !== 0 ? 'aborted' : 'inflight';
        results.set(r.requestId, { digest: r.digest, state, outcome: r.outcome, index: r.index, txid: r.txid });
      }
      table.sessions.set(record.clientId, { evictedBelow: record.evictedBelow, results });
      table.resultsCount += results.size;
    }
    return table;
  }

  /** A content fingerprint for replica-agreement checks in tests and the simulator. */
  fingerprint(): string {
    const parts: string[] = [];
    for (const [clientId, session] of [...this.sessions].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
      const results = [...session.results].sort((a, b) => a[0] - b[0]);
      parts.push(`${clientId}:${session.evictedBelow}:${results.map(([id, r]) => `${id}/${r.state}/${r.outcome}`).join(',')}`);
    }
    return parts.join(';');
  }
}
