// The shared Ready loop's ordering rules, against a scripted node and a storage port that
// finishes persists in any order: a persist's replies leave, and persisted(id) is called,
// only once it and every persist before it are durable; a Ready without a persist carries no
// replies; a failed persist stops the loop.
import { describe, expect, it } from 'vitest';
import type { PaxosMessage } from '../../node/gen/shardbank/v1/peer.js';
import type { PersistWork } from '../../node/paxos/paxos-core.js';
import { ReadyDriver, type DrivenReady, type PersistStart } from '../../node/shard/ready-driver.js';

const message = (to: number): PaxosMessage =>
  ({ shard: 0, from: 0, to, ballot: { round: 1, ordinal: 0 }, body: undefined }) as unknown as PaxosMessage;
const persist = (id: number): PersistWork => ({ id, hardState: undefined, entries: [], snapshot: undefined });

/** A node that hands out scripted Readies and records persisted() calls; a storage port that completes when told. */
function setup(readies: DrivenReady[], start: (id: number) => PersistStart = () => 'pending') {
  const persisted: number[] = [];
  const sent: number[] = [];
  const completions = new Map<number, () => void>();
  const quietFlags: boolean[] = [];
  const node = { ready: () => readies.shift()!, persisted: (id: number) => persisted.push(id) };
  const driver = new ReadyDriver<DrivenReady>(node, {
    storage: {
      persist: (work, durable, quiet) => {
        quietFlags.push(quiet);
        completions.set(work.id, durable);
        return start(work.id);
      },
    },
    send: (m) => sent.push(m.to),
    sendTx: () => undefined,
    reply: () => undefined,
    event: () => undefined,
    progress: () => undefined,
  });
  return { driver, persisted, sent, completions, quietFlags };
}

const ready = (id: number | undefined, requests: number[], afterPersist: number[]): DrivenReady => ({
  messages: requests.map(message),
  persist: id === undefined ? undefined : persist(id),
  messagesAfterPersist: afterPersist.map(message),
  events: [],
});

describe('ReadyDriver', () => {
  it("sends requests at once, and each persist's replies only once it and every earlier persist are durable, in id order", () => {
    const { driver, persisted, sent, completions } = setup([
      ready(1, [10], [11]),
      ready(2, [20], [21]),
      ready(3, [], [31]),
    ]);
    driver.pass();
    driver.pass();
    driver.pass();
    expect(sent).toEqual([10, 20]);
    expect(driver.persistsPending).toBe(3);
    // The storage finishes the later ones first: nothing may leave yet.
    completions.get(3)!();
    completions.get(2)!();
    expect(sent).toEqual([10, 20]);
    expect(persisted).toEqual([]);
    completions.get(1)!();
    expect(sent).toEqual([10, 20, 11, 21, 31]);
    expect(persisted).toEqual([1, 2, 3]);
    expect(driver.persistsPending).toBe(0);
  });

  it('a synchronous persist completes at once only when nothing earlier is pending (quiet)', () => {
    const { driver, persisted, sent, completions, quietFlags } = setup(
      [ready(1, [], [11]), ready(2, [], [21])],
      (id) => (id === 2 ? 'durable' : 'pending'),
    );
    driver.pass();
    driver.pass();
    expect(quietFlags).toEqual([true, false]);
    // Reported durable, but persist 1 is still pending: its reply waits behind it.
    expect(sent).toEqual([]);
    completions.get(1)!();
    expect(sent).toEqual([11, 21]);
    expect(persisted).toEqual([1, 2]);
  });

  it('a Ready without a persist that carries replies is refused', () => {
    const { driver } = setup([ready(undefined, [], [11])]);
    expect(() => driver.pass()).toThrow(/replies that claim durable state in a Ready without a persist/);
  });

  it('a failed persist halts the loop: no later completion sends anything', () => {
    const { driver, sent, persisted, completions } = setup([ready(1, [], [11]), ready(2, [20], [21])], (id) =>
      id === 2 ? 'failed' : 'pending',
    );
    driver.pass();
    expect(driver.pass()).toBe(false);
    completions.get(1)!();
    expect(sent).toEqual([20]);
    expect(persisted).toEqual([]);
    expect(driver.pass()).toBe(false);
  });
});
