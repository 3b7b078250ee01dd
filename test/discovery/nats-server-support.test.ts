// The nats-server test support that other integration tests (replicas, the CLI) rely on.
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { Kvm } from '@nats-io/kv';
import { connect } from '@nats-io/transport-node';
import { afterAll, describe, expect, it } from 'vitest';
import { findNatsServer, freePort, startNatsServer, type NatsServerHandle } from '../support/nats-server.js';

const servers: NatsServerHandle[] = [];

afterAll(async () => {
  for (const server of servers) await server.stop();
});

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('test support: nats-server', () => {
  it('says how to install nats-server when it is missing', () => {
    expect(() => findNatsServer({ PATH: '' }, [])).toThrow('nats-server not found: apt-get install nats-server');
    expect(() => findNatsServer({ NATS_SERVER_BIN: '/nonexistent/nats-server' }, [])).toThrow(/not found/);
  });

  it('freePort() returns a port that can be bound', async () => {
    const port = await freePort();
    expect(port).toBeGreaterThan(0);
    await new Promise<void>((resolve, reject) => {
      const server = createServer();
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => server.close(() => resolve()));
    });
  });

  it('kill and restart keep the port and the JetStream store; stop cleans up', async () => {
    const server = await startNatsServer();
    servers.push(server);
    expect(server.url).toBe(`nats://127.0.0.1:${server.port}`);
    let nc = await connect({ servers: server.url });
    let kv = await new Kvm(nc).create('support-test');
    await kv.put('k', 'v1');
    await nc.close();

    const firstPid = server.pid!;
    await server.kill('SIGKILL');
    expect(server.pid).toBeUndefined();
    expect(processAlive(firstPid)).toBe(false);
    await server.start();
    await server.restart();
    expect(server.pid).not.toBe(firstPid);

    nc = await connect({ servers: server.url });
    kv = await new Kvm(nc).create('support-test');
    expect((await kv.get('k'))?.string()).toBe('v1');
    await nc.close();

    const lastPid = server.pid!;
    await server.stop();
    expect(processAlive(lastPid)).toBe(false);
    expect(existsSync(server.storeDir)).toBe(false);
    await server.stop();
  });
});
