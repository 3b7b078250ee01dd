// The live table `shardbank up` shows in the foreground: one row per shard, refreshed in
// place on a terminal (ANSI cursor-up + clear), printed only on change otherwise.
import type { ClusterView } from '../client/status-view.js';

export function renderShardTable(view: ClusterView, restartsOf: (shard: number) => number = () => 0): string[] {
  const header = ['SHARD', 'ITEMS', 'READY', 'LEADER', 'BALLOT', 'COMMIT INDEX', 'RESTARTS'];
  const rows = view.shards.map((shard) => {
    const ready = shard.replicas.filter((replica) => replica.ready).length;
    const leader = shard.leader;
    const leaderReplica =
      leader === null ? undefined : shard.replicas.find((replica) => replica.ordinal === leader.ordinal);
    const commitIndex =
      leaderReplica?.commitIndex ?? Math.max(-1, ...shard.replicas.map((replica) => replica.commitIndex ?? -1));
    return [
      String(shard.shard),
      `${shard.items[0]}-${shard.items[1]}`,
      `${ready}/${shard.replicas.length}`,
      leader === null ? '-' : `${leader.ordinal} (${leader.address})`,
      leader === null ? '-' : `${leader.ballot[0]}.${leader.ballot[1]}`,
      commitIndex < 0 ? '-' : String(commitIndex),
      String(restartsOf(shard.shard)),
    ];
  });
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]!.length)));
  const format = (cells: string[]) =>
    cells
      .map((cell, column) => cell.padEnd(widths[column]!))
      .join('  ')
      .trimEnd();
  return [format(header), ...rows.map(format)];
}

export class LiveTable {
  private linesShown = 0;
  private lastText = '';

  constructor(private readonly stream: NodeJS.WriteStream) {}

  show(lines: readonly string[]): void {
    const text = lines.join('\n');
    if (!this.stream.isTTY) {
      if (text !== this.lastText) this.stream.write(`${text}\n`);
      this.lastText = text;
      return;
    }
    const rewind = this.linesShown > 0 ? `\x1b[${this.linesShown}A\x1b[J` : '';
    this.stream.write(`${rewind}${text}\n`);
    this.linesShown = lines.length;
    this.lastText = text;
  }

  /** A message above the table (the table is redrawn below it on the next refresh). */
  note(line: string): void {
    if (this.stream.isTTY && this.linesShown > 0) this.stream.write(`\x1b[${this.linesShown}A\x1b[J`);
    this.stream.write(`${line}\n`);
    this.linesShown = 0;
    if (this.stream.isTTY && this.lastText) {
      this.stream.write(`${this.lastText}\n`);
      this.linesShown = this.lastText.split('\n').length;
    }
  }
}
