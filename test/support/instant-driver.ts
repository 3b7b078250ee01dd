// The shared Ready loop (node/shard/ready-driver.ts) with instant durable storage, for unit
// tests that drive a ShardNode or a PaxosCore by hand: every persist is durable at once, so
// each Ready's replies that claim durable state leave right after it, in the driver's order.
import { ReadyDriver, type Drivable, type DrivenReady, type ReadyPorts } from '../../node/shard/ready-driver.js';

export type InstantPorts<R extends DrivenReady> = Partial<Omit<ReadyPorts<R>, 'storage'>>;

export function instantDriver<R extends DrivenReady>(node: Drivable<R>, ports: InstantPorts<R> = {}): ReadyDriver<R> {
  return new ReadyDriver<R>(node, {
    storage: { persist: () => 'durable' },
    send: ports.send ?? (() => undefined),
    sendTx: ports.sendTx ?? (() => undefined),
    reply: ports.reply ?? (() => undefined),
    event: ports.event ?? (() => undefined),
    progress: ports.progress ?? (() => undefined),
    ...(ports.rest ? { rest: ports.rest } : {}),
  });
}
