// The pure part of leader discovery: what a leader announces, where, and which of two
// announcements wins. No I/O here; leader-announcer.ts and leader-watcher.ts are the
// NATS adapters around it. An announcement is a hint: safety comes from Paxos ballots.
import { assert } from '../util/assert.js';

export interface Ballot {
  readonly round: number;
  readonly ordinal: number;
}

export interface LeaderRecord {
  readonly cluster: string;
  readonly namespace: string;
  readonly shard: number;
  readonly ballot: Ballot;
  readonly leaderOrdinal: number;
  /** `host:port` of the leader's gRPC endpoint. */
  readonly address: string;
  /** The cluster's UID, so that a re-created cluster is not shadowed by old entries. */
  readonly incarnation: string;
  /** Wall clock of the election that produced this record (a re-announce keeps it). */
  readonly announcedAtMs: number;
}

export type DecodeResult = { ok: true; value: LeaderRecord } | { ok: false; error: string };

export const leaderBucketName = 'shardbank-leaders';

/** Limits on what we write and what we accept from the bucket or the subject. */
export const recordBytesMax = 4096;
export const nameLengthMax = 253;
export const addressLengthMax = 512;
export const incarnationLengthMax = 256;

// One NATS subject token: no dots, spaces or wildcards (they would change the subject
// hierarchy), and a valid KV key token.
const nameTokenPattern = /^[A-Za-z0-9_-]+$/;

/** True if `name` can be a namespace or cluster name inside a NATS subject and KV key. */
export function isValidNameToken(name: string): boolean {
  return name.length > 0 && name.length <= nameLengthMax && nameTokenPattern.test(name);
}

function assertSubjectParts(namespace: string, cluster: string, shard: number): void {
  assert(isValidNameToken(namespace), `namespace ${JSON.stringify(namespace)} is not a valid NATS token`);
  assert(isValidNameToken(cluster), `cluster ${JSON.stringify(cluster)} is not a valid NATS token`);
  assert(Number.isSafeInteger(shard) && shard >= 0, `shard ${shard} is not a non-negative integer`);
}

/** `shardbank.<namespace>.<cluster>.leader.<shard>` */
export function subjectFor(namespace: string, cluster: string, shard: number): string {
  assertSubjectParts(namespace, cluster, shard);
  return `shardbank.${namespace}.${cluster}.leader.${shard}`;
}

/** The wildcard subject of every shard's announcements for one cluster. */
export function subjectWildcardFor(namespace: string, cluster: string): string {
  assertSubjectParts(namespace, cluster, 0);
  return `shardbank.${namespace}.${cluster}.leader.*`;
}

/** `<namespace>.<cluster>.<shard>` in bucket `shardbank-leaders`. */
export function keyFor(namespace: string, cluster: string, shard: number): string {
  assertSubjectParts(namespace, cluster, shard);
  return `${namespace}.${cluster}.${shard}`;
}

/** The KV key filter of every shard of one cluster. */
export function keyWildcardFor(namespace: string, cluster: string): string {
  assertSubjectParts(namespace, cluster, 0);
  return `${namespace}.${cluster}.*`;
}

/** The shard named by the last token of a subject or key, or undefined. */
export function shardFromLastToken(subjectOrKey: string): number | undefined {
  const token = subjectOrKey.slice(subjectOrKey.lastIndexOf('.') + 1);
  if (!/^(0|[1-9][0-9]{0,8})$/.test(token)) return undefined;
  return Number(token);
}

/** Negative if a < b, zero if equal, positive if a > b: by round, then ordinal. */
export function compareBallots(a: Ballot, b: Ballot): number {
  if (a.round !== b.round) return a.round < b.round ? -1 : 1;
  if (a.ordinal !== b.ordinal) return a.ordinal < b.ordinal ? -1 : 1;
  return 0;
}

/**
 * Whether `candidate` should replace `existing` (`undefined`: nothing known yet).
 * Same incarnation: only a strictly higher ballot wins. Different incarnations: the one
 * equal to `currentIncarnation` wins; failing that, the more recent announcement.
 * Equal records never supersede each other, so re-deliveries change nothing.
 */
export function supersedes(
  candidate: LeaderRecord,
  existing: LeaderRecord | undefined,
  currentIncarnation?: string,
): boolean {
  if (existing === undefined) return true;
  if (candidate.incarnation === existing.incarnation) {
    return compareBallots(candidate.ballot, existing.ballot) > 0;
  }
  if (currentIncarnation !== undefined) {
    if (candidate.incarnation === currentIncarnation) return true;
    if (existing.incarnation === currentIncarnation) return false;
  }
  return candidate.announcedAtMs > existing.announcedAtMs;
}

/** Same announcement: every field equal. */
export function sameRecord(a: LeaderRecord, b: LeaderRecord): boolean {
  return (
    a.cluster === b.cluster &&
    a.namespace === b.namespace &&
    a.shard === b.shard &&
    compareBallots(a.ballot, b.ballot) === 0 &&
    a.leaderOrdinal === b.leaderOrdinal &&
    a.address === b.address &&
    a.incarnation === b.incarnation &&
    a.announcedAtMs === b.announcedAtMs
  );
}

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder('utf-8', { fatal: true });

/** The JSON of a valid record (see docs/CONTRACTS.md). Asserts validity: a caller bug. */
export function encode(record: LeaderRecord): Uint8Array {
  const error = validate(record);
  assert(error === undefined, `encode: invalid leader record: ${error}`);
  // Fields are copied one by one so that extra properties of the caller's object never leak.
  const json = JSON.stringify({
    cluster: record.cluster,
    namespace: record.namespace,
    shard: record.shard,
    ballot: { round: record.ballot.round, ordinal: record.ballot.ordinal },
    leaderOrdinal: record.leaderOrdinal,
    address: record.address,
    incarnation: record.incarnation,
    announcedAtMs: record.announcedAtMs,
  });
  const bytes = textEncoder.encode(json);
  assert(bytes.length <= recordBytesMax, `encode: record is ${bytes.length} bytes, max ${recordBytesMax}`);
  return bytes;
}

/** Parses and validates; anything malformed is an error value, never an exception. */
export function decode(data: Uint8Array | string): DecodeResult {
  const length = typeof data === 'string' ? data.length : data.byteLength;
  if (length > recordBytesMax) return { ok: false, error: `record is ${length} bytes, max ${recordBytesMax}` };
  let parsed: unknown;
  try {
    const text = typeof data === 'string' ? data : textDecoder.decode(data);
    parsed = JSON.parse(text);
  } catch (error) {
    return { ok: false, error: `not JSON: ${error instanceof Error ? error.message : String(error)}` };
  }
  if (!isPlainObject(parsed)) return { ok: false, error: 'not a JSON object' };
  const ballot = parsed['ballot'];
  const candidate = {
    cluster: parsed['cluster'],
    namespace: parsed['namespace'],
    shard: parsed['shard'],
    ballot: isPlainObject(ballot) ? { round: ballot['round'], ordinal: ballot['ordinal'] } : ballot,
    leaderOrdinal: parsed['leaderOrdinal'],
    address: parsed['address'],
    incarnation: parsed['incarnation'],
    announcedAtMs: parsed['announcedAtMs'],
  };
  const error = validate(candidate);
  if (error !== undefined) return { ok: false, error };
  return { ok: true, value: candidate as LeaderRecord };
}

/** The first problem with a would-be record, naming the field, or undefined if valid. */
export function validate(record: unknown): string | undefined {
  if (!isPlainObject(record)) return 'record: not an object';
  const r = record;
  if (typeof r['cluster'] !== 'string' || !isValidNameToken(r['cluster'])) {
    return 'cluster: must be a non-empty name of letters, digits, "-" or "_"';
  }
  if (typeof r['namespace'] !== 'string' || !isValidNameToken(r['namespace'])) {
    return 'namespace: must be a non-empty name of letters, digits, "-" or "_"';
  }
  if (!isNonNegativeInteger(r['shard'])) return 'shard: must be a non-negative integer';
  const ballot = r['ballot'];
  if (!isPlainObject(ballot)) return 'ballot: must be an object {round, ordinal}';
  if (!isNonNegativeInteger(ballot['round'])) return 'ballot.round: must be a non-negative integer';
  if (!isNonNegativeInteger(ballot['ordinal'])) return 'ballot.ordinal: must be a non-negative integer';
  if (!isNonNegativeInteger(r['leaderOrdinal'])) return 'leaderOrdinal: must be a non-negative integer';
  const address = r['address'];
  if (typeof address !== 'string' || address.length === 0 || address.length > addressLengthMax) {
    return `address: must be a non-empty string of at most ${addressLengthMax} characters`;
  }
  const incarnation = r['incarnation'];
  if (typeof incarnation !== 'string' || incarnation.length === 0 || incarnation.length > incarnationLengthMax) {
    return `incarnation: must be a non-empty string of at most ${incarnationLengthMax} characters`;
  }
  const announcedAtMs = r['announcedAtMs'];
  if (typeof announcedAtMs !== 'number' || !Number.isFinite(announcedAtMs) || announcedAtMs < 0) {
    return 'announcedAtMs: must be a finite non-negative number';
  }
  return undefined;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isNonNegativeInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}
