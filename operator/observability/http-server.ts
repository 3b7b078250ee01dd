// /metrics, /healthz and /readyz of the operator process.
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface HealthSource {
  /** The process can make progress (informers not wedged). */
  healthy(): { ok: boolean; detail: string };
  /** Ready to serve: a leader with synced caches, or a standby waiting on the Lease. */
  ready(): { ok: boolean; detail: string };
  /** The Prometheus text format (prom-client's Registry.metrics()). */
  metrics(): Promise<string>;
}

export async function startHttpServer(
  port: number,
  host: string,
  source: HealthSource,
): Promise<{ port: number; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/metrics') {
      source.metrics().then(
        (text) => {
          res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' });
          res.end(text);
        },
        (error: unknown) => {
          res.writeHead(500, { 'content-type': 'text/plain' });
          res.end(`metrics failed: ${error instanceof Error ? error.message : String(error)}\n`);
        },
      );
      return;
    }
    if (path === '/healthz' || path === '/readyz') {
      const r = path === '/healthz' ? source.healthy() : source.ready();
      res.writeHead(r.ok ? 200 : 503, { 'content-type': 'text/plain' });
      res.end(`${r.ok ? 'ok' : 'not ok'}: ${r.detail}\n`);
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
