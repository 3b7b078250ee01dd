// A shard's membership as replicated state (docs/ARCHITECTURE.md, "Membership"): the
// configuration (voters, learners, the next member id), its log-entry codec, the one-voter
// change rules, the snapshot envelope, and the history that says which configuration is in
// force at which slot. Pure: no core state, no I/O.
//
// The rule this module encodes: a configuration chosen at slot c is in force from slot
// c + CONFIGURATION_WINDOW_SLOTS, and a leader proposes slot s only once every slot up to
// s - CONFIGURATION_WINDOW_SLOTS is chosen. So every slot has exactly one configuration, a
// function of the chosen prefix, known to whoever proposes it.
import { assert, invariantViolated } from '../util/assert.js';

/**
 * α of Lamport's reconfiguration: the distance between a configuration entry's slot and the
 * first slot it governs. A protocol constant (every replica of a shard must agree on it
 * forever), the largest `--inflight-slots`, so the window never limits the pipeline.
 */
export const CONFIGURATION_WINDOW_SLOTS = 256;
/** Member ids fit the peer protocol's 32-bit promise-quorum mask. */
export const MEMBER_ID_LIMIT = 31;
/** Voters plus learners, at most (a shard of 7 voters replacing two members at once, with room). */
export const MEMBERS_MAX = 9;

export interface Configuration {
  /** Sorted, distinct member ids that vote. */
  readonly voters: readonly number[];
  /** Sorted, distinct member ids that receive the log but never count in a quorum. */
  readonly learners: readonly number[];
  /** The id the next added member gets; ids are never reused. */
  readonly nextMemberId: number;
  /**
   * Peer addresses (host:port) of members added with one, by member id (like etcd's member
   * list). The founding members have none: their address is the static peer table's. Absent
   * in every configuration of a shard that never recorded an address (the simulator's).
   */
  readonly addresses?: Readonly<Record<number, string>>;
}

export const CONFIGURATION_CHANGES = ['add-learner', 'promote', 'demote', 'remove'] as const;
export type ConfigurationChangeType = (typeof CONFIGURATION_CHANGES)[number];
/** One step: add a learner (it gets id nextMemberId), promote a learner, demote a voter, remove a member. */
export type ConfigurationChange =
  | { type: 'add-learner'; address?: string }
  | { type: 'promote'; member: number }
  | { type: 'demote'; member: number }
  | { type: 'remove'; member: number };

export type ChangeResult = { ok: true; configuration: Configuration } | { ok: false; error: string };

/** The configuration of a shard that never changed its membership: voters 0..n-1. */
export function initialConfiguration(replicaCount: number): Configuration {
  assert(Number.isInteger(replicaCount) && replicaCount >= 1, 'replicaCount must be a positive integer');
  const voters = Array.from({ length: replicaCount }, (_, id) => id);
  return { voters, learners: [], nextMemberId: replicaCount };
}

/** Why a configuration is malformed, or undefined if it is well formed. */
export function configurationProblem(configuration: Configuration): string | undefined {
  const { voters, learners, nextMemberId } = configuration;
  if (!Number.isInteger(nextMemberId) || nextMemberId < 1 || nextMemberId > MEMBER_ID_LIMIT)
    return `nextMemberId: ${nextMemberId} is not an integer in 1..${MEMBER_ID_LIMIT}`;
  if (voters.length === 0) return 'voters: a configuration needs at least one voter';
  if (voters.length + learners.length > MEMBERS_MAX)
    return `voters, learners: ${voters.length + learners.length} members, at most ${MEMBERS_MAX}`;
  for (const [field, ids] of [
    ['voters', voters],
    ['learners', learners],
  ] as const) {
    for (let i = 0; i < ids.length; i += 1) {
      const id = ids[i]!;
      if (!Number.isInteger(id) || id < 0 || id >= nextMemberId)
        return `${field}: member id ${id} is not an integer in 0..${nextMemberId - 1} (below nextMemberId)`;
      if (i > 0 && ids[i - 1]! >= id) return `${field}: ids must be sorted and distinct (${ids.join(',')})`;
    }
  }
  const both = voters.find((id) => learners.includes(id));
  if (both !== undefined) return `voters, learners: member ${both} is both a voter and a learner`;
  for (const [key, address] of Object.entries(configuration.addresses ?? {})) {
    const id = Number(key);
    if (!voters.includes(id) && !learners.includes(id)) return `addresses: member ${key} is not a member`;
    if (addressProblem(address) !== undefined) return `addresses: member ${key}: ${addressProblem(address)}`;
  }
  return undefined;
}

/** Why a peer address is unusable (host:port, no spaces), or undefined. */
export function addressProblem(address: unknown): string | undefined {
  if (typeof address !== 'string' || !/^[^\s:/]+:\d{1,5}$/.test(address) || address.length > 253)
    return `${JSON.stringify(address)} is not host:port`;
  const port = Number(address.slice(address.lastIndexOf(':') + 1));
  return port >= 1 && port <= 65535 ? undefined : `${JSON.stringify(address)}: port out of range`;
}

/** The address the configuration records for a member, if any. */
export function addressOf(configuration: Configuration, member: number): string | undefined {
  return configuration.addresses?.[member];
}

/** The configuration's addresses restricted to `members` (a member removed takes its address along). */
function addressesOf(configuration: Configuration, members: readonly number[], extra?: [number, string]) {
  const result: Record<number, string> = {};
  for (const id of members) {
    const address = configuration.addresses?.[id];
    if (address !== undefined) result[id] = address;
  }
  if (extra !== undefined) result[extra[0]] = extra[1];
  return Object.keys(result).length === 0 ? undefined : result;
}

function withAddresses(configuration: Configuration, addresses: Record<number, string> | undefined): Configuration {
  return addresses === undefined ? configuration : { ...configuration, addresses };
}

export function assertConfiguration(configuration: Configuration): void {
  const problem = configurationProblem(configuration);
  if (problem !== undefined) invariantViolated(`bad configuration: ${problem}`);
}

export function isVoter(configuration: Configuration, member: number): boolean {
  return configuration.voters.includes(member);
}

export function isMember(configuration: Configuration, member: number): boolean {
  return configuration.voters.includes(member) || configuration.learners.includes(member);
}

export function majorityOf(configuration: Configuration): number {
  return Math.floor(configuration.voters.length / 2) + 1;
}

/** Whether the members for which `has` is true include a majority of the voters (learners never count). */
export function hasMajority(configuration: Configuration, has: (member: number) => boolean): boolean {
  let count = 0;
  for (const voter of configuration.voters) if (has(voter)) count += 1;
  return count >= majorityOf(configuration);
}

/** A majority of every configuration given (phase 1, read-index, check-quorum). */
export function hasMajorityOfEach(configurations: readonly Configuration[], has: (member: number) => boolean): boolean {
  return configurations.every((configuration) => hasMajority(configuration, has));
}

export function configurationsEqual(a: Configuration, b: Configuration): boolean {
  return (
    a.nextMemberId === b.nextMemberId &&
    a.voters.length === b.voters.length &&
    a.learners.length === b.learners.length &&
    a.voters.every((id, i) => b.voters[i] === id) &&
    a.learners.every((id, i) => b.learners[i] === id) &&
    JSON.stringify(a.addresses ?? {}) === JSON.stringify(b.addresses ?? {})
  );
}

/** How many members vote in one configuration and not in the other. */
export function votersChanged(a: Configuration, b: Configuration): number {
  let changed = 0;
  for (const id of a.voters) if (!b.voters.includes(id)) changed += 1;
  for (const id of b.voters) if (!a.voters.includes(id)) changed += 1;
  return changed;
}

/**
 * Whether `next` may follow `previous` in the log: one step (at most one voter changes), ids
 * never reused (nextMemberId only grows, a member added has an id at or above the previous
 * nextMemberId), and well formed. Checked by the leader before it proposes and by every replica
 * when it applies.
 */
export function successionProblem(previous: Configuration, next: Configuration): string | undefined {
  const problem = configurationProblem(next);
  if (problem !== undefined) return problem;
  if (next.nextMemberId < previous.nextMemberId)
    return `nextMemberId: went back from ${previous.nextMemberId} to ${next.nextMemberId}`;
  if (votersChanged(previous, next) > 1) return 'voters: more than one voter changes in one step';
  for (const id of [...next.voters, ...next.learners]) {
    if (!isMember(previous, id) && id < previous.nextMemberId)
      return `member ${id}: a former or never-added id below nextMemberId ${previous.nextMemberId} cannot come back`;
  }
  for (const id of next.voters) {
    if (!isVoter(previous, id) && !previous.learners.includes(id))
      return `voters: member ${id} becomes a voter without having been a learner`;
  }
  return undefined;
}

function sorted(ids: Iterable<number>): number[] {
  return [...ids].sort((a, b) => a - b);
}

/** Applies one step; an impossible step (promote a voter, remove the last voter) is an error value. */
export function applyChange(configuration: Configuration, change: ConfigurationChange): ChangeResult {
  const { voters, learners, nextMemberId } = configuration;
  let next: Configuration;
  switch (change.type) {
    case 'add-learner': {
      if (change.address !== undefined && addressProblem(change.address) !== undefined)
        return { ok: false, error: `address: ${addressProblem(change.address)}` };
      const added = sorted([...learners, nextMemberId]);
      const extra: [number, string] | undefined =
        change.address === undefined ? undefined : [nextMemberId, change.address];
      next = withAddresses(
        { voters, learners: added, nextMemberId: nextMemberId + 1 },
        addressesOf(configuration, [...voters, ...learners], extra),
      );
      break;
    }
    case 'promote':
      if (!learners.includes(change.member)) return { ok: false, error: `member ${change.member} is not a learner` };
      next = withAddresses(
        {
          voters: sorted([...voters, change.member]),
          learners: learners.filter((id) => id !== change.member),
          nextMemberId,
        },
        addressesOf(configuration, [...voters, ...learners]),
      );
      break;
    case 'demote':
      if (!voters.includes(change.member)) return { ok: false, error: `member ${change.member} is not a voter` };
      next = withAddresses(
        {
          voters: voters.filter((id) => id !== change.member),
          learners: sorted([...learners, change.member]),
          nextMemberId,
        },
        addressesOf(configuration, [...voters, ...learners]),
      );
      break;
    case 'remove':
      if (!isMember(configuration, change.member))
        return { ok: false, error: `member ${change.member} is not a member` };
      next = withAddresses(
        {
          voters: voters.filter((id) => id !== change.member),
          learners: learners.filter((id) => id !== change.member),
          nextMemberId,
        },
        addressesOf(
          configuration,
          [...voters, ...learners].filter((id) => id !== change.member),
        ),
      );
      break;
    default: {
      const unknown: never = change;
      return { ok: false, error: `unknown change ${JSON.stringify(unknown)}` };
    }
  }
  const problem = successionProblem(configuration, next);
  return problem === undefined ? { ok: true, configuration: next } : { ok: false, error: problem };
}

// ---- Codec: a configuration entry is a log value ----

/** No CommandBatch starts with this byte: a protobuf tag of field 0 and wire type 7 does not exist. */
export const CONFIGURATION_ENTRY_MAGIC = 0x07;
const ENTRY_KIND = 0x43; // 'C'
const SNAPSHOT_KIND = 0x53; // 'S'
const CODEC_VERSION = 1;
/** Version 2 entries carry member addresses; a configuration without any is still written as version 1. */
const CODEC_VERSION_ADDRESSES = 2;

interface ConfigurationJson {
  voters: number[];
  learners: number[];
  nextMemberId: number;
  addresses?: Record<number, string>;
}

function toJson(configuration: Configuration): ConfigurationJson {
  return {
    voters: [...configuration.voters],
    learners: [...configuration.learners],
    nextMemberId: configuration.nextMemberId,
    ...(configuration.addresses !== undefined ? { addresses: { ...configuration.addresses } } : {}),
  };
}

function fromJson(value: unknown, where: string): Configuration {
  if (typeof value !== 'object' || value === null) throw new Error(`${where}: not an object`);
  const record = value as Record<string, unknown>;
  for (const field of ['voters', 'learners'] as const) {
    const ids = record[field];
    if (!Array.isArray(ids) || !ids.every((id) => typeof id === 'number'))
      throw new Error(`${where}.${field}: not a list of member ids`);
  }
  if (typeof record.nextMemberId !== 'number') throw new Error(`${where}.nextMemberId: not a number`);
  const addresses = record.addresses;
  if (addresses !== undefined && (typeof addresses !== 'object' || addresses === null || Array.isArray(addresses)))
    throw new Error(`${where}.addresses: not an object of member id to address`);
  const configuration: Configuration = {
    voters: record.voters as number[],
    learners: record.learners as number[],
    nextMemberId: record.nextMemberId,
    ...(addresses !== undefined ? { addresses: addresses as Record<number, string> } : {}),
  };
  const problem = configurationProblem(configuration);
  if (problem !== undefined) throw new Error(`${where}: ${problem}`);
  return configuration;
}

export function isConfigurationEntry(value: Buffer): boolean {
  return value.length >= 3 && value[0] === CONFIGURATION_ENTRY_MAGIC && value[1] === ENTRY_KIND;
}

export function encodeConfigurationEntry(configuration: Configuration): Buffer {
  assertConfiguration(configuration);
  const body = Buffer.from(JSON.stringify(toJson(configuration)), 'utf8');
  const version = configuration.addresses === undefined ? CODEC_VERSION : CODEC_VERSION_ADDRESSES;
  return Buffer.concat([Buffer.from([CONFIGURATION_ENTRY_MAGIC, ENTRY_KIND, version]), body]);
}

export function decodeConfigurationEntry(value: Buffer): Configuration {
  if (!isConfigurationEntry(value)) throw new Error('configuration entry: missing its marker bytes');
  if (value[2] !== CODEC_VERSION && value[2] !== CODEC_VERSION_ADDRESSES)
    throw new Error(`configuration entry: unknown version ${value[2]}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(value.subarray(3).toString('utf8'));
  } catch (error) {
    throw new Error('configuration entry: not valid JSON', { cause: error });
  }
  return fromJson(parsed, 'configuration entry');
}

// ---- Which configuration is in force where ----

/** A configuration and the first slot it governs. */
export interface ConfigurationEpoch {
  readonly fromSlot: number;
  readonly configuration: Configuration;
}

/**
 * The configurations of the chosen prefix by slot: the one in force after the snapshot (or the
 * initial one, from slot 1) and every chosen entry since, each in force from its slot + α.
 * Fed in apply order (`recordChosen`), so it never holds an unchosen configuration.
 */
export class ConfigurationHistory {
  private readonly epochs: ConfigurationEpoch[];
  /** The slot of the last chosen configuration entry recorded (0: none since the base). */
  private lastEntrySlotValue = 0;

  constructor(epochs: readonly ConfigurationEpoch[]) {
    assert(epochs.length > 0, 'a configuration history needs a first configuration');
    for (let i = 0; i < epochs.length; i += 1) {
      assertConfiguration(epochs[i]!.configuration);
      if (i > 0) assert(epochs[i - 1]!.fromSlot < epochs[i]!.fromSlot, 'configuration epochs must be in slot order');
    }
    this.epochs = [...epochs];
  }

  static initial(replicaCount: number): ConfigurationHistory {
    return new ConfigurationHistory([{ fromSlot: 1, configuration: initialConfiguration(replicaCount) }]);
  }

  /** The configuration whose voters choose `slot`. */
  inForceAt(slot: number): Configuration {
    let found = this.epochs[0]!.configuration;
    for (const epoch of this.epochs) {
      if (epoch.fromSlot > slot) break;
      found = epoch.configuration;
    }
    return found;
  }

  /** The distinct configurations in force for some slot in [fromSlot, toSlot]. */
  inForceBetween(fromSlot: number, toSlot: number): Configuration[] {
    const result = [this.inForceAt(fromSlot)];
    for (const epoch of this.epochs) {
      if (epoch.fromSlot > fromSlot && epoch.fromSlot <= toSlot) result.push(epoch.configuration);
    }
    return result;
  }

  /** The newest chosen configuration (in force or still coming into force). */
  get latest(): Configuration {
    return this.epochs.at(-1)!.configuration;
  }

  /** The first slot the newest chosen configuration governs. */
  get latestFromSlot(): number {
    return this.epochs.at(-1)!.fromSlot;
  }

  get lastEntrySlot(): number {
    return this.lastEntrySlotValue;
  }

  /** Whether a chosen configuration is still coming into force after `slot` (a change in flight). */
  changePendingAfter(slot: number): boolean {
    return this.latestFromSlot > slot + 1;
  }

  /**
   * A configuration entry at `slot` was chosen and is being applied (in slot order). It takes
   * effect (from slot + α) only if no earlier change is still coming into force and it is one
   * step from the newest configuration; otherwise it is void, a no-op. Leaders never propose
   * such an entry, but a later leader's recovery can choose two leaders' proposals side by side
   * (an old leader's unchosen entry resurrected next to its successor's), so the rule is the
   * state machine's, decided by the chosen log alone: every replica voids the same entries.
   * Returns whether the entry took effect.
   */
  recordChosen(slot: number, configuration: Configuration): boolean {
    if (!(slot > this.lastEntrySlotValue)) invariantViolated(`configuration entry at ${slot} recorded out of order`);
    this.lastEntrySlotValue = slot;
    if (slot < this.latestFromSlot) return false;
    if (successionProblem(this.latest, configuration) !== undefined) return false;
    this.epochs.push({ fromSlot: slot + CONFIGURATION_WINDOW_SLOTS, configuration });
    return true;
  }

  /**
   * The epochs a snapshot at `index` must carry: the one in force at index + 1 and every later
   * one. Each keeps its first slot (the first one governs every slot below it anyway), so the
   * slot of the entry that chose a configuration (`latestEntrySlot`) survives snapshots: the
   * Membership service's compare-and-set names a configuration by it.
   */
  epochsAfter(index: number): ConfigurationEpoch[] {
    const result: ConfigurationEpoch[] = [];
    for (const epoch of this.epochs) {
      if (epoch.fromSlot <= index + 1) result[0] = epoch;
      else result.push(epoch);
    }
    return result;
  }

  /** The slot of the entry that chose the newest configuration; 0 for the initial one. */
  get latestEntrySlot(): number {
    const fromSlot = this.latestFromSlot;
    return fromSlot <= 1 ? 0 : fromSlot - CONFIGURATION_WINDOW_SLOTS;
  }

  /** Forgets what governs only slots at or below `index` (after a snapshot). */
  trim(index: number): void {
    while (this.epochs.length > 1 && this.epochs[1]!.fromSlot <= index + 1) this.epochs.shift();
  }

  get epochList(): readonly ConfigurationEpoch[] {
    return this.epochs;
  }
}

// ---- Snapshot envelope ----

/** Wraps the state machine's snapshot with the configurations in force after its index. */
export function wrapSnapshot(epochs: readonly ConfigurationEpoch[], data: Buffer): Buffer {
  assert(epochs.length > 0, 'a snapshot carries at least the configuration in force');
  const header = Buffer.from(
    JSON.stringify(epochs.map((epoch) => ({ fromSlot: epoch.fromSlot, ...toJson(epoch.configuration) }))),
    'utf8',
  );
  const prefix = Buffer.alloc(7);
  prefix[0] = CONFIGURATION_ENTRY_MAGIC;
  prefix[1] = SNAPSHOT_KIND;
  prefix[2] = CODEC_VERSION;
  prefix.writeUInt32BE(header.length, 3);
  return Buffer.concat([prefix, header, data]);
}

/** The configurations and the state machine's data; a snapshot written before membership has none. */
export function unwrapSnapshot(snapshot: Buffer): { epochs: ConfigurationEpoch[] | undefined; data: Buffer } {
  if (snapshot.length < 7 || snapshot[0] !== CONFIGURATION_ENTRY_MAGIC || snapshot[1] !== SNAPSHOT_KIND)
    return { epochs: undefined, data: snapshot };
  if (snapshot[2] !== CODEC_VERSION) throw new Error(`snapshot envelope: unknown version ${snapshot[2]}`);
  const headerBytes = snapshot.readUInt32BE(3);
  if (7 + headerBytes > snapshot.length) throw new Error('snapshot envelope: header longer than the snapshot');
  let parsed: unknown;
  try {
    parsed = JSON.parse(snapshot.subarray(7, 7 + headerBytes).toString('utf8'));
  } catch (error) {
    throw new Error('snapshot envelope: header is not valid JSON', { cause: error });
  }
  if (!Array.isArray(parsed) || parsed.length === 0) throw new Error('snapshot envelope: no configuration');
  const epochs = parsed.map((item: unknown, i) => {
    const fromSlot = (item as { fromSlot?: unknown }).fromSlot;
    if (typeof fromSlot !== 'number') throw new Error(`snapshot envelope[${i}].fromSlot: not a number`);
    return { fromSlot, configuration: fromJson(item, `snapshot envelope[${i}]`) };
  });
  return { epochs, data: snapshot.subarray(7 + headerBytes) };
}
