// The client-side batcher on its own, with a scripted sender: which transfers travel together,
// how many calls are in flight per shard, and that nothing waits behind a slow call for long.
import { describe, expect, it } from 'vitest';
import { Outcome, type BatchEntry } from '../../node/gen/shardbank/v1/bank.js';
import { TransferCoalescer, type CoalescedResult, type StreamTarget } from '../../node/client/transfer-coalescer.js';
import { pollUntil } from '../support/poll.js';

interface Call {
  shard: number;
  entries: BatchEntry[];
  answer(): void;
  fail(message: string): void;
}

function scriptedSender() {
  const calls: Call[] = [];
  const send = (shard: number, entries: BatchEntry[]) =>
    new Promise<CoalescedResult[]>((resolve, reject) => {
      calls.push({
        shard,
        entries,
        answer: () =>
          resolve(
            entries.map((e) => ({
              ok: true,
              reply: { outcome: Outcome.COMMITTED, decisionIndex: e.requestId, coordinatorShard: shard, message: '' },
            })),
          ),
        fail: (message) => reject(new Error(message)),
      });
    });
  return { calls, send };
}

const transfer = (requestId: number) => ({
  clientId: `c${requestId}`,
  requestId,
  from: 1,
  to: 2,
  amount: 1,
  acknowledgedBelow: 0,
  sessionEpoch: 1,
});
const turn = () => new Promise((resolve) => setImmediate(resolve));
const ids = (call: Call) => call.entries.map((e) => e.requestId);

describe('TransferCoalescer', () => {
  it('sends the transfers started in one turn as one call per shard, each with its own ids', async () => {
    const { calls, send } = scriptedSender();
    const coalescer = new TransferCoalescer(send, 1000);
    const results = [
      coalescer.submit(0, transfer(1)),
      coalescer.submit(1, transfer(2)),
      coalescer.submit(0, transfer(3)),
    ];
    await pollUntil('two calls', () => calls.length === 2, 5_000, 1);
    expect(calls.map((c) => [c.shard, ids(c)])).toEqual([
      [0, [1, 3]],
      [1, [2]],
    ]);
    expect(calls[0]!.entries[1]!.clientId).toBe('c3');
    for (const call of calls) call.answer();
    expect((await Promise.all(results)).map((r) => (r.ok ? r.reply.decisionIndex : -1))).toEqual([1, 2, 3]);
  });

  it('keeps at most two calls in flight per shard; what starts meanwhile goes together when one returns', async () => {
    const { calls, send } = scriptedSender();
    const coalescer = new TransferCoalescer(send, 1000, 2, 60_000);
    const results = [coalescer.submit(0, transfer(1))];
    await turn();
    results.push(coalescer.submit(0, transfer(2)));
    await turn();
    results.push(coalescer.submit(0, transfer(3)));
    await turn();
    results.push(coalescer.submit(0, transfer(4)), coalescer.submit(1, transfer(5)));
    await pollUntil('the other shard is not held up', () => calls.some((c) => c.shard === 1), 5_000, 1);
    await turn();
    expect(calls.filter((c) => c.shard === 0).map(ids)).toEqual([[1], [2]]);
    calls[0]!.answer();
    await pollUntil('a third call', () => calls.filter((c) => c.shard === 0).length === 3, 5_000, 1);
    expect(ids(calls.filter((c) => c.shard === 0)[2]!)).toEqual([3, 4]);
    for (const call of calls) call.answer();
    expect((await Promise.all(results)).every((r) => r.ok)).toBe(true);
  });

  it('sends a held transfer after the hold limit even if no call returns', async () => {
    const { calls, send } = scriptedSender();
    const coalescer = new TransferCoalescer(send, 1000, 1, 20);
    void coalescer.submit(0, transfer(1));
    await turn();
    const held = coalescer.submit(0, transfer(2));
    await pollUntil('the held transfer sent anyway', () => calls.length === 2, 5_000, 1);
    expect(ids(calls[1]!)).toEqual([2]);
    calls[1]!.answer();
    expect((await held).ok).toBe(true);
  });

  it('turns a failed call into UNAVAILABLE for each of its transfers, and goes on sending', async () => {
    const { calls, send } = scriptedSender();
    const coalescer = new TransferCoalescer(send, 1000, 1, 60_000);
    const first = [coalescer.submit(0, transfer(1)), coalescer.submit(0, transfer(2))];
    await turn();
    const later = coalescer.submit(0, transfer(3));
    await pollUntil('the first call', () => calls.length === 1, 5_000, 1);
    calls[0]!.fail('connection reset');
    for (const result of await Promise.all(first))
      expect(result).toEqual({ ok: false, error: { code: 14, codeName: 'UNAVAILABLE', details: 'connection reset' } });
    await pollUntil('the held transfer sent after the failure', () => calls.length === 2, 5_000, 1);
    calls[1]!.answer();
    expect((await later).ok).toBe(true);
  });

  it('with a stream open, sends every turn at once as one message and resolves each transfer when its own result comes', async () => {
    const { calls, send } = scriptedSender();
    const messages: { shard: number; ids: number[]; deliver: (index: number, result: CoalescedResult) => void }[] = [];
    let streaming = false;
    const streamFor = (shard: number): StreamTarget | undefined =>
      streaming
        ? { send: (entries, deliver) => void messages.push({ shard, ids: entries.map((e) => e.requestId), deliver }) }
        : undefined;
    const coalescer = new TransferCoalescer(send, 1000, 1, 60_000, streamFor);
    const byCall = coalescer.submit(0, transfer(1));
    await pollUntil('the call', () => calls.length === 1, 5_000, 1);
    streaming = true;
    // A call is in flight, yet nothing waits for it: two turns, two messages.
    const first = [coalescer.submit(0, transfer(2)), coalescer.submit(0, transfer(3))];
    await turn();
    const second = coalescer.submit(0, transfer(4));
    await pollUntil('two messages', () => messages.length === 2, 5_000, 1);
    expect(messages.map((m) => m.ids)).toEqual([[2, 3], [4]]);
    const settled: number[] = [];
    first.forEach((p, i) => void p.then(() => settled.push(i + 2)));
    messages[0]!.deliver(1, {
      ok: true,
      reply: { outcome: Outcome.COMMITTED, decisionIndex: 30, coordinatorShard: 0, message: '' },
    });
    await pollUntil('transfer 3 settled alone', () => settled.length === 1, 5_000, 1);
    expect(settled).toEqual([3]);
    messages[0]!.deliver(0, { ok: false, error: { code: 14, codeName: 'UNAVAILABLE', details: 'stream broke' } });
    expect(await first[0]).toEqual({
      ok: false,
      error: { code: 14, codeName: 'UNAVAILABLE', details: 'stream broke' },
    });
    messages[1]!.deliver(0, {
      ok: true,
      reply: { outcome: Outcome.COMMITTED, decisionIndex: 40, coordinatorShard: 0, message: '' },
    });
    expect((await second).ok).toBe(true);
    calls[0]!.answer();
    expect((await byCall).ok).toBe(true);
    expect(calls).toHaveLength(1);
  });

  it('splits a turn larger than the per-call limit', async () => {
    const { calls, send } = scriptedSender();
    const coalescer = new TransferCoalescer(send, 2, 10, 60_000);
    for (let id = 1; id <= 5; id += 1) void coalescer.submit(0, transfer(id));
    await pollUntil('three calls', () => calls.length === 3, 5_000, 1);
    expect(calls.map(ids)).toEqual([[1, 2], [3, 4], [5]]);
  });
});
