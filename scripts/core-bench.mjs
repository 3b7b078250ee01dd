// Deterministic in-process CPU benchmark of the replicated core (ShardNode + PaxosCore + BankState
// + the peer codec), no I/O: 3 shards x 3 replicas, persists complete at once, messages go
// encoded through a FIFO. 64 closed-loop clients, two in three cross-shard, amount 1.
// Prints CPU µs per committed transfer. Works on old (no sessions) and new trees.
// Usage: npm run build && node scripts/core-bench.mjs [DIST_ROOT (default ./dist)] [transfers (default 60000)]
// Batch load (the BatchTransfer path): CLIENTS=16 WINDOW=1000 keeps 1000 transfers in flight
// per client (16,000 in all, as bench:compare's 16 x 1000 row); defaults CLIENTS=64 WINDOW=1. BALANCE
// (default 10) is every item's initial balance: 1000 keeps a 16,000-deep window mostly committing.
// Why: on a shared 2-core machine the throughput of real clusters drifts by tens of percent
// within minutes; CPU time per transfer of this deterministic run is far steadier, so it is
// the A/B for the core (run it against another checkout's dist, interleaved, several times).
const root = process.argv[2]
  ? (await import('node:path')).resolve(process.argv[2])
  : new URL('../dist', import.meta.url).pathname;
const total = Number(process.argv[3] ?? 60000);
const { ShardNode, DEFAULT_TIMING } = await import(`${root}/node/shard/shard-node.js`);
const { PaxosMessage, TxMessage } = await import(`${root}/node/gen/shardbank/v1/peer.js`);
let seed = 12345;
const rnd = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
const topology = {
  shards: 3,
  itemsPerShard: 3000,
  replicasPerShard: 3,
  initialBalance: Number(process.env.BALANCE ?? 10),
};
const nodes = [];
for (let s = 0; s < 3; s++) {
  const g = [];
  for (let o = 0; o < 3; o++)
    g.push(
      new ShardNode({
        topology,
        shard: s,
        ordinal: o,
        paxos: {
          electionTimeoutTicksMin: 32,
          electionTimeoutTicksMax: 64,
          heartbeatTicks: 4,
          retransmitTicks: 20,
          inflightSlotsMax: 1,
          entriesPerMessageMax: 256,
          thriftyAccepts: true,
          votingState: 'voter',
        },
        timing: {
          ...DEFAULT_TIMING,
          txScanTicks: 2,
          txResendTicks: 8,
          txAbortTicks: 200,
          txInquiryTicks: 40,
          readWaitTicksMax: 80,
          conflictBackoffTicksMax: 4,
        },
        commandsPerSlotMax: 4096,
        snapshotEverySlots: 4096,
        pacing: { minWaiters: 8, targetCommands: 48 },
        random: rnd,
      }),
    );
  nodes.push(g);
}
const queue = [];
let qh = 0;
const handlers = new Map();
let nextToken = 1;
function send(m) {
  queue.push(['p', m.shard, m.to, PaxosMessage.encode(m).finish()]);
}
function sendTx(m) {
  const b = TxMessage.encode(m).finish();
  for (let o = 0; o < 3; o++) queue.push(['t', m.toShard, o, b]);
}
const dirty = new Set();
function process_(n) {
  for (let round = 0; round < 8; round++) {
    const r = n.ready();
    for (const m of r.messages) send(m);
    for (const m of r.txMessages) sendTx(m);
    for (const rep of r.replies) {
      const h = handlers.get(rep.token);
      handlers.delete(rep.token);
      h?.(rep);
    }
    if (r.persist) {
      n.persisted(r.persist.id);
      for (const m of r.messagesAfterPersist) send(m);
    } else for (const m of r.messagesAfterPersist) send(m);
    if (!r.persist && !r.messages.length && !r.txMessages.length && !r.replies.length) break;
  }
  if (n.proposalsHeld) held.add(n);
}
const held = new Set();
function drain() {
  while (qh < queue.length) {
    const [k, s, o, b] = queue[qh++];
    const n = nodes[s][o];
    if (k === 'p') n.stepPaxos(PaxosMessage.decode(b));
    else n.stepTx(TxMessage.decode(b));
    dirty.add(n);
    if (qh > 100000) {
      queue.splice(0, qh);
      qh = 0;
    }
    if (queue.length - qh === 0 || dirty.size > 4) {
      for (const d of dirty) process_(d);
      dirty.clear();
    }
  }
  for (const d of dirty) process_(d);
  dirty.clear();
}
function tickAll() {
  for (const g of nodes)
    for (const n of g) {
      n.tick();
      process_(n);
    }
  drain();
}
// Elect leaders.
for (let i = 0; i < 400 && !nodes.every((g) => g.some((n) => n.core.isReadyLeader)); i++) tickAll();
const leaderOf = (s) => nodes[s].find((n) => n.core.isReadyLeader);
if (!nodes.every((g, s) => leaderOf(s))) throw new Error('no leaders');
const sessions = typeof nodes[0][0].submitOpenSession === 'function';
const clients = [];
const clientCount = Number(process.env.CLIENTS ?? 64);
const window = Number(process.env.WINDOW ?? 1);
for (let c = 0; c < clientCount; c++)
  clients.push({ id: `c-${String(c).padStart(24, '0')}`, req: 0, epochs: [0, 0, 0], ack: 0, done: new Set() });
if (sessions) {
  for (const cl of clients)
    for (let s = 0; s < 3; s++) {
      const t = nextToken++;
      handlers.set(t, (r) => {
        cl.epochs[s] = r.epoch;
      });
      leaderOf(s).submitOpenSession(cl.id, t);
      process_(leaderOf(s));
    }
  for (let i = 0; i < 50 && clients.some((c) => c.epochs.includes(0)); i++) {
    drain();
    tickAll();
  }
}
let committed = 0,
  insufficient = 0,
  other = 0,
  started = 0;
function start(cl) {
  if (started >= total) return;
  started++;
  const cross = rnd() < 0.67;
  const fromShard = Math.floor(rnd() * 3);
  const toShard = cross ? (fromShard + 1 + Math.floor(rnd() * 2)) % 3 : fromShard;
  const from = fromShard * 3000 + 1 + Math.floor(rnd() * 3000);
  let to = toShard * 3000 + 1 + Math.floor(rnd() * 3000);
  if (to === from) to = from === fromShard * 3000 + 1 ? from + 1 : from - 1;
  const requestId = ++cl.req;
  const attempt = () => {
    const t = nextToken++;
    handlers.set(t, (r) => {
      if (r.kind === 'transfer') {
        if (r.outcome === 1) committed++;
        else insufficient++;
        // The acknowledged watermark: every id up to it is answered.
        cl.done.add(requestId);
        while (cl.done.delete(cl.ack + 1)) cl.ack += 1;
        queueMicrotask(() => start(cl));
      } else {
        other++;
        retries.push(attempt);
      }
    });
    const n = leaderOf(fromShard);
    const input = {
      clientId: cl.id,
      requestId,
      from,
      to,
      amount: 1,
      acknowledgedBelow: cl.ack >= requestId ? 0 : cl.ack,
      sessionEpoch: cl.epochs[fromShard],
    };
    n.submitTransfer(input, t);
    dirty.add(n);
  };
  attempt();
}
const retries = [];
const t0 = process.cpuUsage();
const w0 = Date.now();
for (const cl of clients) for (let w = 0; w < window; w++) start(cl);
let ticks = 0;
let lastDone = -1;
while (committed + insufficient < total) {
  await Promise.resolve();
  for (const d of dirty) process_(d);
  dirty.clear();
  drain();
  // Time passes one tick per "round trip" of the whole system: releases held batches (as the
  // pacing timer does), heartbeats, 2PC scans.
  for (const n of held) {
    n.releaseHeldProposals();
    process_(n);
  }
  held.clear();
  drain();
  if (committed + insufficient === lastDone) {
    tickAll();
    ticks++;
    for (const r of retries.splice(0)) r();
  }
  lastDone = committed + insufficient;
  if (ticks > 20000) throw new Error(`stuck at ${committed + insufficient}`);
}
const u = process.cpuUsage(t0);
console.log(
  JSON.stringify({
    root,
    sessions,
    clients: clientCount,
    window,
    transfers: committed + insufficient,
    committed,
    insufficient,
    errors: other,
    ticks,
    cpuUsPerTransfer: +((u.user + u.system) / (committed + insufficient)).toFixed(1),
    wallMs: Date.now() - w0,
  }),
);
