// Polls ClusterStatus every second during bench and chaos: keeps the latest view and
// turns leader changes into report markers.
import type { ShardbankClient } from '../client/bank-client.js';
import type { ClusterView } from '../client/status-view.js';
import type { ReportMarker } from './html-report.js';

export const STATUS_POLL_MS = 1_000;
export const MARKERS_MAX = 10_000;

/** Pure: the leader changes between two views, as markers at `atS`. */
export function leaderChanges(previous: ClusterView | undefined, next: ClusterView, atS: number): ReportMarker[] {
  if (previous === undefined) return [];
  const markers: ReportMarker[] = [];
  for (const shard of next.shards) {
    const before = previous.shards[shard.shard]?.leader ?? null;
    const after = shard.leader;
    if (after === null) continue;
    if (
      before === null ||
      before.ordinal !== after.ordinal ||
      before.ballot[0] !== after.ballot[0] ||
      before.ballot[1] !== after.ballot[1]
    ) {
      markers.push({
        atS,
        kind: 'leader-change',
        label: `shard ${shard.shard}: leader ${after.ordinal} ballot ${after.ballot[0]}.${after.ballot[1]}`,
      });
    }
  }
  return markers;
}

export class LeaderTracker {
  readonly markers: ReportMarker[] = [];
  latest: ClusterView | undefined;
  /** The last view in which a shard had a leader, so a leaderless moment still counts as a change. */
  private lastWithLeaders: ClusterView | undefined;
  private timer: NodeJS.Timeout | undefined;
  private polling = false;

  constructor(
    private readonly client: ShardbankClient,
    private readonly startedAtMs: number,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.poll(), STATUS_POLL_MS);
  }

  addMarker(marker: ReportMarker): void {
    if (this.markers.length < MARKERS_MAX) this.markers.push(marker);
  }

  async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      const view = await this.client.clusterStatus(STATUS_POLL_MS - 100);
      const atS = (Date.now() - this.startedAtMs) / 1000;
      for (const marker of leaderChanges(this.lastWithLeaders, view, atS)) this.addMarker(marker);
      this.latest = view;
      this.lastWithLeaders = mergeLeaders(this.lastWithLeaders, view);
    } finally {
      this.polling = false;
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

function mergeLeaders(previous: ClusterView | undefined, next: ClusterView): ClusterView {
  if (previous === undefined) return next;
  return {
    ...next,
    shards: next.shards.map((shard) => (shard.leader === null ? (previous.shards[shard.shard] ?? shard) : shard)),
  };
}
