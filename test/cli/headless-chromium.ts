// Loads a local HTML file in a real headless Chromium and reports what a user's browser
// would: uncaught exceptions, console errors, log errors (CSP violations, failed loads),
// every request the page made, and the value of a DOM query. Talks the DevTools protocol
// over --remote-debugging-pipe (fds 3 and 4, NUL-terminated JSON), so it needs no npm
// package and no WebSocket. Chromium is kept off the network: a file:// URL, background
// features off, a host resolver that resolves nothing, and as its proxy a loopback socket
// that counts and drops every connection (what would have gone out; the check wants none).
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { pathToFileURL } from 'node:url';

export const CHROMIUM_NAMES = ['chromium', 'chromium-browser', 'google-chrome'];
/** Debian's /usr/bin/chromium is a wrapper adding flags (remote extensions); the binary itself is here. */
const CHROMIUM_BINARIES = ['/usr/lib/chromium/chromium'];
const PAGE_TIMEOUT_MS = 60_000;

/** The Chromium to use: $SHARDBANK_CHROMIUM, Debian's binary, or one on PATH; undefined if none. */
export function findChromium(): string | undefined {
  const candidates = [
    ...(process.env.SHARDBANK_CHROMIUM ? [process.env.SHARDBANK_CHROMIUM] : []),
    ...CHROMIUM_BINARIES,
    ...(process.env.PATH ?? '')
      .split(delimiter)
      .filter(Boolean)
      .flatMap((dir) => CHROMIUM_NAMES.map((name) => join(dir, name))),
  ];
  return candidates.find((path) => {
    try {
      accessSync(path, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

export const OFFLINE_FLAGS = [
  '--headless=new',
  '--remote-debugging-pipe',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-dev-shm-usage',
  '--no-first-run',
  '--no-default-browser-check',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-default-apps',
  '--disable-extensions',
  '--disable-sync',
  '--disable-domain-reliability',
  '--disable-client-side-phishing-detection',
  // One --disable-features: a later one would replace it.
  '--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication,CertificateTransparencyComponentUpdater,NetworkTimeServiceQuerying',
  '--metrics-recording-only',
  '--no-pings',
  // Nothing resolves but the proxy's address.
  '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
  '--mute-audio',
  // Still started despite the flags above (Chromium 156): the component updater, the sign-in
  // check and network time. Pointed at a closed loopback port, so they fail at once, locally.
  '--allow-browser-signin=false',
  '--component-updater=url-source=http://127.0.0.1:1',
  '--gaia-url=http://127.0.0.1:1',
];

export interface PageReport {
  /** Uncaught exceptions and console.error / console.assert messages. */
  errors: string[];
  /** Log.entryAdded at level error (CSP violations, failed loads, ...). */
  logErrors: string[];
  /** Every URL the page requested. */
  requests: string[];
  /** The value of `evaluate` after the load event. */
  value: unknown;
  /** Connections Chromium opened to its proxy: anything it tried to fetch from a network. */
  proxyConnections: number;
}

/** A proxy that refuses to proxy: it counts connections and closes them. */
async function countingProxy(): Promise<{ server: Server; port: number; connections: () => number }> {
  let connections = 0;
  const server = createServer((socket) => {
    connections += 1;
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port, connections: () => connections };
}

interface CdpMessage {
  id?: number;
  method?: string;
  params?: Record<string, unknown>;
  result?: Record<string, unknown>;
  error?: { message: string };
  sessionId?: string;
}

class PipeSession {
  private nextId = 1;
  private buffer = '';
  private readonly waiting = new Map<number, { resolve: (m: CdpMessage) => void; reject: (e: Error) => void }>();
  readonly events: CdpMessage[] = [];
  private listeners: ((m: CdpMessage) => void)[] = [];

  constructor(
    private readonly toBrowser: Writable,
    fromBrowser: Readable,
  ) {
    fromBrowser.setEncoding('utf8');
    fromBrowser.on('data', (chunk: string) => {
      this.buffer += chunk;
      for (let end = this.buffer.indexOf('\0'); end >= 0; end = this.buffer.indexOf('\0')) {
        const message = JSON.parse(this.buffer.slice(0, end)) as CdpMessage;
        this.buffer = this.buffer.slice(end + 1);
        this.dispatch(message);
      }
    });
  }

  private dispatch(message: CdpMessage): void {
    if (message.id !== undefined) {
      const waiter = this.waiting.get(message.id);
      this.waiting.delete(message.id);
      if (message.error) waiter?.reject(new Error(`DevTools: ${message.error.message}`));
      else waiter?.resolve(message);
      return;
    }
    this.events.push(message);
    for (const listener of this.listeners) listener(message);
  }

  send(method: string, params: Record<string, unknown> = {}, sessionId?: string): Promise<CdpMessage> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.toBrowser.write(`${JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) })}\0`);
    });
  }

  waitFor(method: string, sessionId: string): Promise<CdpMessage> {
    const seen = this.events.find((m) => m.method === method && m.sessionId === sessionId);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => {
      const listener = (m: CdpMessage) => {
        if (m.method !== method || m.sessionId !== sessionId) return;
        this.listeners = this.listeners.filter((l) => l !== listener);
        resolve(m);
      };
      this.listeners.push(listener);
    });
  }
}

function describeException(params: Record<string, unknown>): string {
  const details = params.exceptionDetails as { text?: string; exception?: { description?: string } } | undefined;
  return `uncaught: ${details?.exception?.description ?? details?.text ?? JSON.stringify(params)}`;
}

function describeConsole(params: Record<string, unknown>): string {
  const args = (params.args as { value?: unknown; description?: string }[] | undefined) ?? [];
  return `console.${String(params.type)}: ${args.map((a) => (a.value !== undefined ? String(a.value) : (a.description ?? ''))).join(' ')}`;
}

/**
 * Opens `file` (a local path) in headless Chromium, waits for the load event, evaluates
 * `expression` (its value must be JSON) and closes the browser.
 */
export async function loadInChromium(chromium: string, file: string, expression: string): Promise<PageReport> {
  const profile = mkdtempSync(join(tmpdir(), 'shardbank-chromium-'));
  const proxy = await countingProxy();
  const flags = [...OFFLINE_FLAGS, `--proxy-server=127.0.0.1:${proxy.port}`, `--user-data-dir=${profile}`];
  const child: ChildProcess = spawn(chromium, [...flags, 'about:blank'], {
    stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'],
    // Its own process group: whatever it leaves behind (crashpad, zygote) is ended with it.
    detached: true,
  });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    if (stderr.length < 20_000) stderr += chunk.toString();
  });
  const exited = new Promise<never>((_, reject) =>
    child.once('exit', (code, signal) =>
      reject(new Error(`chromium exited (${code ?? signal}) before the page was checked:\n${stderr}`)),
    ),
  );
  exited.catch(() => undefined);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`chromium: no answer within ${PAGE_TIMEOUT_MS / 1000} s:\n${stderr}`)),
      PAGE_TIMEOUT_MS,
    );
  });
  const cdp = new PipeSession(child.stdio[3] as Writable, child.stdio[4] as Readable);
  const check = async (): Promise<PageReport> => {
    const created = await cdp.send('Target.createTarget', { url: 'about:blank' });
    const attached = await cdp.send('Target.attachToTarget', { targetId: created.result!.targetId, flatten: true });
    const session = attached.result!.sessionId as string;
    for (const domain of ['Runtime', 'Log', 'Network', 'Page']) await cdp.send(`${domain}.enable`, {}, session);
    const loaded = cdp.waitFor('Page.loadEventFired', session);
    const navigated = await cdp.send('Page.navigate', { url: pathToFileURL(file).href }, session);
    if (navigated.result?.errorText) throw new Error(`chromium: cannot load ${file}: ${navigated.result.errorText}`);
    await loaded;
    const evaluated = await cdp.send('Runtime.evaluate', { expression, returnByValue: true }, session);
    if (evaluated.result?.exceptionDetails)
      throw new Error(`the check's expression threw: ${describeException(evaluated.result)}`);
    const ofSession = cdp.events.filter((m) => m.sessionId === session);
    return {
      errors: ofSession.flatMap((m) => {
        if (m.method === 'Runtime.exceptionThrown') return [describeException(m.params!)];
        if (m.method === 'Runtime.consoleAPICalled' && ['error', 'assert'].includes(String(m.params!.type)))
          return [describeConsole(m.params!)];
        return [];
      }),
      logErrors: ofSession.flatMap((m) => {
        const entry = m.params?.entry as { level?: string; text?: string; url?: string } | undefined;
        return m.method === 'Log.entryAdded' && entry?.level === 'error'
          ? [`${entry.text ?? ''}${entry.url ? ` (${entry.url})` : ''}`]
          : [];
      }),
      requests: ofSession.flatMap((m) =>
        m.method === 'Network.requestWillBeSent'
          ? [String((m.params!.request as { url?: string } | undefined)?.url)]
          : [],
      ),
      value: (evaluated.result?.result as { value?: unknown } | undefined)?.value,
      proxyConnections: proxy.connections(),
    };
  };
  try {
    return await Promise.race([check(), exited, timeout]);
  } finally {
    clearTimeout(timer);
    await Promise.race([
      cdp.send('Browser.close').catch(() => undefined),
      new Promise((resolve) => setTimeout(resolve, 5_000)),
    ]);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await new Promise((resolve) =>
      child.exitCode !== null || child.signalCode !== null ? resolve(undefined) : child.once('exit', resolve),
    );
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // The group is gone already.
    }
    rmSync(profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
    await new Promise((resolve) => proxy.server.close(resolve));
  }
}
