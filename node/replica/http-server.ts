// The replica's HTTP endpoints: /healthz (the process serves), /readyz (it can take
// traffic: a ready leader, or a follower that knows its leader), /status (JSON), /metrics.
import http from 'node:http';
import type { BankService } from './bank-service.js';
import type { Replica } from './replica.js';

export function startHttpServer(
  replica: Replica,
  service: BankService,
  host: string,
  port: number,
): Promise<http.Server> {
  const server = http.createServer((request, response) => {
    const url = (request.url ?? '/').split('?')[0];
    const send = (code: number, body: string, type = 'text/plain; charset=utf-8') => {
      response.writeHead(code, { 'content-type': type });
      response.end(body);
    };
    switch (url) {
      case '/healthz':
        return replica.healthy ? send(200, 'ok\n') : send(503, 'storage failed or stopping\n');
      case '/readyz':
        return service.isReady() ? send(200, 'ready\n') : send(503, 'not ready: no leader known yet\n');
      case '/status':
        return send(200, `${JSON.stringify(service.localStatus())}\n`, 'application/json');
      case '/metrics': {
        const status = service.localStatus();
        const storage = replica.stats();
        const { cluster, shard, ordinal } = replica.config;
        const body = replica.metrics.render(
          {
            commit_index: status.commitIndex,
            applied_index: status.appliedIndex,
            snapshot_index: status.snapshotIndex,
            is_leader: status.role === 'leader' ? 1 : 0,
            inflight_transactions: status.inflightTransactions,
            ballot_round: status.ballot?.round ?? 0,
            fsyncs_total: storage.syncs,
            log_bytes_written_total: storage.bytesWritten,
            log_segments: storage.segments,
            shard_total_balance: status.shardTotal,
            process_resident_memory_bytes: process.memoryUsage().rss,
            heap_used_bytes: process.memoryUsage().heapUsed,
            heap_total_bytes: process.memoryUsage().heapTotal,
            external_memory_bytes: process.memoryUsage().external,
            commands_proposed_total: replica.node.counters.commandsProposed,
            slots_proposed_total: replica.node.counters.slotsProposed,
            pacing_holds_total: replica.node.counters.pacingHolds,
            tx_messages_sent_total: replica.node.counters.txMessagesSent,
            peer_frames_sent_total: replica.transport.framesSent,
          },
          { cluster, shard, replica: ordinal },
        );
        return send(200, body, 'text/plain; version=0.0.4');
      }
      default:
        return send(404, 'not found\n');
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}
