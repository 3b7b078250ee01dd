// A thin Kubernetes REST client over node:https. Authentication (certificates, tokens,
// in-cluster service account) comes from @kubernetes/client-node's KubeConfig; the verbs
// the operator needs (get, list, server-side apply, status apply, delete, watch) are here
// so that watches can be aborted, timed out and resumed exactly as the informer wants.
import http from 'node:http';
import https from 'node:https';
import { createInterface } from 'node:readline';
import type { KubeConfig } from '@kubernetes/client-node';
import { isNotFound, KubeApiError } from './api-error.js';
import type { KubeList, KubeObject } from './kube-object.js';
import { resourcePath, type ResourceKind } from './resources.js';

const requestTimeoutMs = 30_000;
const optionsTtlMs = 60_000;
const responseBytesMax = 64 * 1024 * 1024;

export interface WatchEvent {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: KubeObject & { code?: number; reason?: string; message?: string };
}

export interface WatchHandle {
  /** Resolves when the stream ends (server close, abort or error). */
  readonly done: Promise<void>;
  abort(): void;
}

interface RequestOptions {
  method: string;
  path: string;
  body?: string;
  contentType?: string;
}

export class KubeClient {
  private cached: { at: number; options: https.RequestOptions } | undefined;
  private readonly server: URL;

  constructor(
    private readonly kubeConfig: KubeConfig,
    readonly fieldManager: string,
  ) {
    const cluster = kubeConfig.getCurrentCluster();
    if (!cluster) throw new Error('kubeconfig has no current cluster');
    this.server = new URL(cluster.server);
  }

  private async baseOptions(): Promise<https.RequestOptions> {
    if (this.cached && Date.now() - this.cached.at < optionsTtlMs) return this.cached.options;
    const options: https.RequestOptions = { headers: {} };
    await this.kubeConfig.applyToHTTPSOptions(options);
    this.cached = { at: Date.now(), options };
    return options;
  }

  private async open(
    req: RequestOptions,
    timeoutMs: number,
  ): Promise<{ request: http.ClientRequest; response: http.IncomingMessage }> {
    const base = await this.baseOptions();
    const isHttps = this.server.protocol === 'https:';
    const url = new URL(req.path, this.server);
    const headers: Record<string, string | number> = {
      ...(base.headers as Record<string, string>),
      accept: 'application/json',
    };
    if (req.body !== undefined) {
      headers['content-type'] = req.contentType ?? 'application/json';
      headers['content-length'] = Buffer.byteLength(req.body);
    }
    const options: https.RequestOptions = {
      ...base,
      protocol: url.protocol,
      hostname: url.hostname,
      port: url.port,
      path: url.pathname + url.search,
      method: req.method,
      headers,
      timeout: timeoutMs,
    };
    if (!isHttps) delete options.agent;
    return new Promise((resolve, reject) => {
      const request = (isHttps ? https : http).request(options, (response) => resolve({ request, response }));
      request.on('timeout', () =>
        request.destroy(new Error(`${req.method} ${req.path}: no answer in ${timeoutMs} ms`)),
      );
      request.on('error', reject);
      request.end(req.body);
    });
  }

  async request<T>(req: RequestOptions): Promise<T> {
    const { response } = await this.open(req, requestTimeoutMs);
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of response) {
      size += (chunk as Buffer).length;
      if (size > responseBytesMax)
        throw new Error(`${req.method} ${req.path}: response larger than ${responseBytesMax} bytes`);
      chunks.push(chunk as Buffer);
    }
    const text = Buffer.concat(chunks).toString('utf8');
    const status = response.statusCode ?? 0;
    const parsed = text.length > 0 ? safeJson(text) : undefined;
    if (status >= 300) {
      const s = (parsed ?? {}) as { reason?: string; message?: string };
      throw new KubeApiError(
        status,
        s.reason ?? 'Unknown',
        `${req.method} ${req.path}: ${status} ${s.message ?? text.slice(0, 500)}`,
        parsed,
      );
    }
    return parsed as T;
  }

  get<T extends KubeObject>(r: ResourceKind, namespace: string | undefined, name: string): Promise<T> {
    return this.request<T>({ method: 'GET', path: resourcePath(r, namespace, name) });
  }

  /** get(), but undefined for an object that does not exist (404); other errors throw. */
  async getIfExists<T extends KubeObject>(
    r: ResourceKind,
    namespace: string | undefined,
    name: string,
  ): Promise<T | undefined> {
    try {
      return await this.get<T>(r, namespace, name);
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  list<T extends KubeObject>(r: ResourceKind, namespace?: string, labelSelector?: string): Promise<KubeList<T>> {
    const query = labelSelector ? `?labelSelector=${encodeURIComponent(labelSelector)}` : '';
    return this.request<KubeList<T>>({ method: 'GET', path: resourcePath(r, namespace) + query });
  }

  /** Server-side apply of a full desired object with this client's field manager. */
  apply<T extends KubeObject>(
    r: ResourceKind,
    object: KubeObject,
    options: { subresource?: string; fieldManager?: string; dryRun?: boolean } = {},
  ): Promise<T> {
    const path = resourcePath(r, object.metadata.namespace, object.metadata.name, options.subresource);
    const query = new URLSearchParams({ fieldManager: options.fieldManager ?? this.fieldManager, force: 'true' });
    if (options.dryRun) query.set('dryRun', 'All');
    return this.request<T>({
      method: 'PATCH',
      path: `${path}?${query}`,
      body: JSON.stringify(object),
      contentType: 'application/apply-patch+yaml',
    });
  }

  /** JSON merge patch (used for finalizers, which must not be owned by apply). */
  mergePatch<T extends KubeObject>(
    r: ResourceKind,
    namespace: string | undefined,
    name: string,
    patch: unknown,
  ): Promise<T> {
    return this.request<T>({
      method: 'PATCH',
      path: resourcePath(r, namespace, name),
      body: JSON.stringify(patch),
      contentType: 'application/merge-patch+json',
    });
  }

  create<T extends KubeObject>(r: ResourceKind, object: KubeObject): Promise<T> {
    return this.request<T>({
      method: 'POST',
      path: resourcePath(r, object.metadata.namespace),
      body: JSON.stringify(object),
    });
  }

  replace<T extends KubeObject>(r: ResourceKind, object: KubeObject): Promise<T> {
    return this.request<T>({
      method: 'PUT',
      path: resourcePath(r, object.metadata.namespace, object.metadata.name),
      body: JSON.stringify(object),
    });
  }

  delete(
    r: ResourceKind,
    namespace: string | undefined,
    name: string,
    propagationPolicy = 'Background',
  ): Promise<unknown> {
    return this.request({
      method: 'DELETE',
      path: resourcePath(r, namespace, name),
      body: JSON.stringify({ kind: 'DeleteOptions', apiVersion: 'v1', propagationPolicy }),
    });
  }

  /**
   * Opens a watch from resourceVersion; calls onEvent per line. The server ends the
   * stream after timeoutSeconds; the caller decides how to resume.
   */
  async watch(
    r: ResourceKind,
    params: { resourceVersion: string; timeoutSeconds: number; labelSelector?: string },
    onEvent: (event: WatchEvent) => void,
  ): Promise<WatchHandle> {
    const query = new URLSearchParams({
      watch: 'true',
      resourceVersion: params.resourceVersion,
      allowWatchBookmarks: 'true',
      timeoutSeconds: String(params.timeoutSeconds),
    });
    if (params.labelSelector) query.set('labelSelector', params.labelSelector);
    const path = `${resourcePath(r)}?${query}`;
    const { request, response } = await this.open({ method: 'GET', path }, (params.timeoutSeconds + 30) * 1000);
    if ((response.statusCode ?? 0) >= 300) {
      const text = await readAll(response);
      const s = (safeJson(text) ?? {}) as { reason?: string; message?: string };
      throw new KubeApiError(
        response.statusCode ?? 0,
        s.reason ?? 'Unknown',
        `watch ${path}: ${s.message ?? text.slice(0, 300)}`,
      );
    }
    const lines = createInterface({ input: response, crlfDelay: Infinity });
    const done = new Promise<void>((resolve) => {
      lines.on('close', resolve);
      // readline forwards the input's errors ('aborted' when we abort): the stream just ends.
      lines.on('error', () => resolve());
      response.on('error', () => resolve());
      request.on('error', () => resolve());
      request.on('close', () => resolve());
    });
    lines.on('line', (line) => {
      if (line.trim().length === 0) return;
      const event = safeJson(line) as WatchEvent | undefined;
      if (event) onEvent(event);
    });
    return { done, abort: () => request.destroy() };
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

async function readAll(stream: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
