// Child process of crash.test.ts. Several concurrent writers append one slot each and await
// sync(); a slot is printed as "ack <slot>" only after its sync resolved, i.e. once it is
// acknowledged. Every third slot is written with syncNow() (the follower's synchronous path)
// when the log allows it, so both ways of making a record durable are killed mid-flight.
// Every few hundred acknowledgements it saves a snapshot of the acknowledged
// prefix. The parent SIGKILLs this process at an arbitrary moment.
// Usage: node crash-writer.mjs <dir> <firstSlot> <writers> [append|preallocated]
import { openDurableLog } from '../../dist/node/storage/durable-log.js';

const [dir, firstSlotText, writersText, mode = 'append'] = process.argv.slice(2);
const firstSlot = Number(firstSlotText);
const writers = Number(writersText);
const hardStateEverySlots = 40;
const snapshotEveryAcks = 300;

const { log } = await openDurableLog(dir, { segmentBytesMax: 16 * 1024, preallocateSegments: mode === 'preallocated' });
let nextSlot = firstSlot;
const acked = new Set();
let prefixEnd = firstSlot - 1;
let acks = 0;
let snapshotting = false;

function valueOf(slot) {
  return Buffer.from(`slot ${slot} `.padEnd(100, '.'));
}

function acknowledge(slot, how) {
  process.stdout.write(`ack ${slot} ${how}\n`);
  acked.add(slot);
  while (acked.has(prefixEnd + 1)) acked.delete(++prefixEnd);
  acks += 1;
  if (acks % snapshotEveryAcks === 0 && !snapshotting) {
    snapshotting = true;
    const index = prefixEnd;
    void log.saveSnapshot({ index, data: Buffer.from(`image ${index}`) }).then(() => {
      snapshotting = false;
      process.stdout.write(`snapshot ${index}\n`);
    });
  }
}

async function writer() {
  for (;;) {
    const slot = nextSlot++;
    const hardState = slot % hardStateEverySlots === 0 ? { promised: { round: slot, ordinal: 1 } } : undefined;
    log.append(hardState, [{ slot, ballot: { round: 1, ordinal: 0 }, value: valueOf(slot) }]);
    if (slot % 3 === 0 && log.syncNow()) {
      acknowledge(slot, 'now');
      await new Promise((resolve) => setImmediate(resolve));
      continue;
    }
    await log.sync();
    acknowledge(slot, 'async');
  }
}

process.stdout.write('ready\n');
await Promise.all(Array.from({ length: writers }, writer));
