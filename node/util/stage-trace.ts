// An opt-in trace of where a request's time goes, across processes (docs/PERFORMANCE.md, "A
// lone client"). With SHARDBANK_TRACE_DIR set, every process that calls traceStamp() keeps
// `<stage> <monotonic ns>` stamps in memory and appends them to `<dir>/<role>-<pid>.trace`
// about once a second and at exit; node/bench/stage-breakdown.ts lines the stamps of all
// processes up per request (process.hrtime is CLOCK_MONOTONIC, one clock for every process
// on a machine). Off (the default) a stamp is one test of a constant: call sites read
//
//   if (TRACING) traceStamp('leader.persist-start');
//
// The stamps carry no request ids: the breakdown tool runs one client with one request in
// flight and assigns each stamp to the request whose window it falls in.
import { appendFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';

const TRACE_DIR = process.env.SHARDBANK_TRACE_DIR ?? '';

/** True when SHARDBANK_TRACE_DIR is set: only then do stamps cost anything. */
export const TRACING = TRACE_DIR !== '';

/** Stamps kept before a write to the file; far above one second of a lone client's stamps. */
const STAMPS_BUFFERED_MAX = 100_000;
const FLUSH_INTERVAL_MS = 1_000;

let role = 'process';
let lines: string[] = [];
let flushTimer: NodeJS.Timeout | undefined;

/** A peer message's name in stamps: its kind, an Accept without slots is a `heartbeat`. */
export function paxosTraceName(message: {
  body?: { $case: string; accept?: { entries: readonly unknown[] } } | undefined;
}): string {
  const body = message.body;
  if (body === undefined) return 'empty';
  return body.$case === 'accept' && body.accept !== undefined && body.accept.entries.length === 0
    ? 'heartbeat'
    : body.$case;
}

/** Names this process in the trace file's name (`client`, `s0r1`, ...). */
export function traceRole(name: string): void {
  role = name;
}

/** Records that `stage` happened now. Call only when TRACING. */
export function traceStamp(stage: string): void {
  lines.push(`${stage} ${process.hrtime.bigint()}`);
  if (lines.length >= STAMPS_BUFFERED_MAX) flushTrace();
  else if (flushTimer === undefined) {
    flushTimer = setTimeout(flushTrace, FLUSH_INTERVAL_MS);
    flushTimer.unref();
  }
}

/** Appends the buffered stamps to this process's trace file (also at exit). */
export function flushTrace(): void {
  if (flushTimer !== undefined) clearTimeout(flushTimer);
  flushTimer = undefined;
  if (lines.length === 0) return;
  const text = `${lines.join('\n')}\n`;
  lines = [];
  mkdirSync(TRACE_DIR, { recursive: true });
  appendFileSync(path.join(TRACE_DIR, `${role}-${process.pid}.trace`), text);
}

if (TRACING) process.on('exit', flushTrace);
