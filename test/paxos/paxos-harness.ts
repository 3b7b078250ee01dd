// The test harness of the Paxos core tests: cores with instant durable storage and a network
// the test controls message by message.
import { PaxosCore, type PaxosConfig, type Ready } from '../../node/paxos/paxos-core.js';
import type { PaxosMessage } from '../../node/gen/shardbank/v1/peer.js';
import type { ReadyDriver } from '../../node/shard/ready-driver.js';
import { instantDriver } from '../support/instant-driver.js';

export const base: Omit<PaxosConfig, 'ordinal' | 'random'> = {
  shard: 0,
  replicaCount: 3,
  electionTimeoutTicksMin: 10,
  electionTimeoutTicksMax: 20,
  heartbeatTicks: 3,
  retransmitTicks: 4,
  inflightSlotsMax: 8,
  entriesPerMessageMax: 64,
};

/** A tiny harness: instant durable storage, and a network the test controls message by message. */
export class Harness {
  readonly cores: PaxosCore[];
  readonly inbox: PaxosMessage[] = [];
  readonly applied: Map<number, string>[];
  readonly down = new Set<number>();
  /** Messages for which this returns true are lost. */
  drop: (message: PaxosMessage) => boolean = () => false;

  constructor(randoms: number[] = [0.0, 0.5, 0.9], overrides: Partial<PaxosConfig> = {}) {
    this.cores = randoms.map(
      (random, ordinal) =>
        new PaxosCore({ ...base, replicaCount: randoms.length, ...overrides, ordinal, random: () => random }),
    );
    this.applied = randoms.map(() => new Map());
  }

  private readonly drivers = new WeakMap<PaxosCore, ReadyDriver<Ready>>();

  /** The shared Ready loop around a core, with instant durable storage and this harness's network. */
  private driverOf(core: PaxosCore, ordinal: number): ReadyDriver<Ready> {
    let driver = this.drivers.get(core);
    if (!driver) {
      driver = instantDriver<Ready>(core, {
        send: (message) => this.inbox.push(message),
        // The driver makes a voting-ready decision durable at once here, then lets the core vote.
        event: (event) => event.type === 'voting-ready' && core.startVoting(),
        rest: (ready) => {
          for (const entry of ready.committed) this.applied[ordinal]!.set(entry.slot, entry.value.toString());
          this.committedInPass += ready.committed.length;
        },
      });
      this.drivers.set(core, driver);
    }
    return driver;
  }

  private committedInPass = 0;

  /** Carries out each core's Ready: persists at once, queues messages, records applied values. */
  pump(): void {
    for (let round = 0; round < 50; round += 1) {
      let any = false;
      this.cores.forEach((core, ordinal) => {
        if (this.down.has(ordinal)) return;
        this.committedInPass = 0;
        const queued = this.inbox.length;
        const did = this.driverOf(core, ordinal).pass();
        any ||= did || this.inbox.length > queued || this.committedInPass > 0;
      });
      const batch = this.inbox.splice(0);
      for (const message of batch)
        if (!this.down.has(message.to) && !this.drop(message)) this.cores[message.to]!.step(message);
      if (!any && batch.length === 0) return;
    }
  }

  tick(times: number): void {
    for (let i = 0; i < times; i += 1) {
      this.cores.forEach((core, ordinal) => !this.down.has(ordinal) && core.tick());
      this.pump();
    }
  }

  /** Replaces replica `ordinal` by one that starts with an empty data dir (a lost disk). */
  wipe(ordinal: number, random = 0.5, overrides: Partial<PaxosConfig> = {}): PaxosCore {
    const core = new PaxosCore({
      ...base,
      replicaCount: this.cores.length,
      ...overrides,
      ordinal,
      random: () => random,
      votingState: 'probing',
    });
    this.cores[ordinal] = core;
    this.applied[ordinal] = new Map();
    return core;
  }

  leader(): PaxosCore | undefined {
    const leaders = this.cores.filter((core, ordinal) => !this.down.has(ordinal) && core.isReadyLeader);
    return leaders.length === 1 ? leaders[0] : undefined;
  }
}
