// Where the client learns which replica leads a shard: the NATS leader watcher
// (node/discovery/leader-watcher.ts). It is a hint: the client keeps working, by the
// replicas' hints and probing, when NATS is not configured or not reachable.
import { pino } from 'pino';
import { LeaderWatcher } from '../discovery/leader-watcher.js';
import type { NatsSecurity } from '../discovery/nats-security.js';

export interface LeaderBallot {
  readonly round: number;
  readonly ordinal: number;
}

export interface LeaderRecordView {
  readonly ballot: LeaderBallot;
  readonly leaderOrdinal: number;
  readonly address: string;
}

/** The subset of LeaderWatcher the client relies on (tests substitute their own). */
export interface LeaderSource {
  leader(shard: number): LeaderRecordView | undefined;
  forgetLeader(shard: number, ballot: LeaderBallot): unknown;
  close(): Promise<void> | void;
}

export interface LeaderSourceOptions {
  readonly servers: string;
  /** TLS and the `watcher` user's credentials, for a secured NATS. */
  readonly security?: NatsSecurity;
  readonly namespace: string;
  readonly cluster: string;
  readonly incarnation?: string;
}

/** Starts the watcher (it connects in the background); undefined with the reason when it cannot. */
export async function startLeaderSource(
  options: LeaderSourceOptions,
): Promise<{ ok: true; value: LeaderSource } | { ok: false; reason: string }> {
  try {
    const watcher = await LeaderWatcher.start({
      servers: options.servers,
      ...(options.security ? { security: options.security } : {}),
      namespace: options.namespace,
      cluster: options.cluster,
      ...(options.incarnation ? { incarnation: options.incarnation } : {}),
      logger: pino({ level: 'silent' }),
    });
    return { ok: true, value: watcher };
  } catch (error) {
    return { ok: false, reason: `NATS leader watcher: ${(error as Error).message}` };
  }
}
