// The replica's HTTP endpoints: /healthz (the process serves), /readyz (it can take
// traffic: a ready leader, or a follower that knows its leader), /status (JSON), /metrics
// (Prometheus text format, node/replica/replica-metrics.ts).
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
      case '/metrics':
        replica.metrics.render().then(
          (body) => send(200, body, replica.metrics.contentType),
          (error: unknown) => send(500, `metrics failed: ${error instanceof Error ? error.message : String(error)}\n`),
        );
        return;
      default:
        return send(404, 'not found\n');
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}

/**
 * Before the replica is open (its data dir recovering, or a new data dir waiting to be added to
 * the shard: node/replica/membership-join.ts): /healthz says the process lives, /readyz and
 * /status that it serves nothing yet, so a startup probe does not restart a process that waits
 * to be added. Closed once the replica's own server takes the port.
 */
export function startWaitingHttpServer(host: string, port: number, state: () => string): Promise<http.Server> {
  const server = http.createServer((request, response) => {
    const url = (request.url ?? '/').split('?')[0];
    const send = (code: number, body: string, type = 'text/plain; charset=utf-8') => {
      response.writeHead(code, { 'content-type': type });
      response.end(body);
    };
    if (url === '/healthz') return send(200, `ok (${state()})\n`);
    if (url === '/readyz') return send(503, `not ready: ${state()}\n`);
    if (url === '/status')
      return send(
        200,
        `${JSON.stringify({ role: 'none', ready: false, memberRole: 'none', state: state() })}\n`,
        'application/json',
      );
    return send(404, 'not found\n');
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}
