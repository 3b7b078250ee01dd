// A minimal Kubernetes API client for `shardbank chaos --kubernetes`: reads a BankCluster,
// lists and deletes its pods. Credentials from --kubeconfig (client certificate or token) or,
// inside a pod, the ServiceAccount. Plain HTTPS so that the node image needs no Kubernetes
// library (that one is the operator's).
import { existsSync, readFileSync } from 'node:fs';
import https from 'node:https';
import { parse as parseYaml } from 'yaml';
import { UsageError } from './cli-io.js';

export interface KubeCredentials {
  server: string;
  ca?: string | Buffer;
  cert?: string | Buffer;
  key?: string | Buffer;
  token?: string;
}

const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

type Named<T> = { name: string } & T;

function data(value: unknown, file: unknown): Buffer | undefined {
  if (typeof value === 'string') return Buffer.from(value, 'base64');
  if (typeof file === 'string') return readFileSync(file);
  return undefined;
}

/** The current context of a kubeconfig file. */
export function credentialsFromKubeconfig(path: string): KubeCredentials {
  if (!existsSync(path)) throw new UsageError(`--kubeconfig: ${path} does not exist`);
  const doc = parseYaml(readFileSync(path, 'utf8')) as Record<string, unknown>;
  const contexts = (doc.contexts ?? []) as Named<{ context: { cluster: string; user: string } }>[];
  const context = contexts.find((c) => c.name === doc['current-context']) ?? contexts[0];
  if (!context) throw new UsageError(`--kubeconfig: ${path} has no context`);
  const cluster = ((doc.clusters ?? []) as Named<{ cluster: Record<string, unknown> }>[]).find(
    (c) => c.name === context.context.cluster,
  )?.cluster;
  const user =
    ((doc.users ?? []) as Named<{ user: Record<string, unknown> }>[]).find((u) => u.name === context.context.user)
      ?.user ?? {};
  if (!cluster || typeof cluster.server !== 'string')
    throw new UsageError(`--kubeconfig: ${path}: context ${context.name} names no cluster with a server`);
  const creds: KubeCredentials = { server: cluster.server };
  const ca = data(cluster['certificate-authority-data'], cluster['certificate-authority']);
  const cert = data(user['client-certificate-data'], user['client-certificate']);
  const key = data(user['client-key-data'], user['client-key']);
  if (ca) creds.ca = ca;
  if (cert) creds.cert = cert;
  if (key) creds.key = key;
  if (typeof user.token === 'string') creds.token = user.token;
  return creds;
}

/** The pod's ServiceAccount, or undefined outside a pod. */
export function inClusterCredentials(): KubeCredentials | undefined {
  const host = process.env.KUBERNETES_SERVICE_HOST;
  if (!host || !existsSync(`${SA_DIR}/token`)) return undefined;
  const port = process.env.KUBERNETES_SERVICE_PORT ?? '443';
  return {
    server: `https://${host.includes(':') ? `[${host}]` : host}:${port}`,
    ca: readFileSync(`${SA_DIR}/ca.crt`),
    token: readFileSync(`${SA_DIR}/token`, 'utf8').trim(),
  };
}

export class KubeApiError extends Error {
  override name = 'KubeApiError';
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export class KubeApi {
  constructor(private readonly creds: KubeCredentials) {}

  request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const url = new URL(path, this.creds.server);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = https.request(
        {
          method,
          hostname: url.hostname.replace(/^\[|\]$/g, ''),
          port: url.port || 443,
          path: `${url.pathname}${url.search}`,
          ...(this.creds.ca ? { ca: this.creds.ca } : {}),
          ...(this.creds.cert ? { cert: this.creds.cert } : {}),
          ...(this.creds.key ? { key: this.creds.key } : {}),
          headers: {
            accept: 'application/json',
            ...(this.creds.token ? { authorization: `Bearer ${this.creds.token}` } : {}),
            ...(payload ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {}),
          },
          timeout: 15_000,
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (text += c));
          res.on('end', () => {
            const status = res.statusCode ?? 0;
            if (status >= 200 && status < 300) {
              resolve((text ? JSON.parse(text) : {}) as T);
              return;
            }
            let message = text;
            try {
              message = (JSON.parse(text) as { message?: string }).message ?? text;
            } catch {
              // not JSON
            }
            reject(new KubeApiError(status, `${method} ${url.pathname}: ${status} ${message}`));
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error(`${method} ${url.pathname}: timed out`)));
      req.on('error', reject);
      req.end(payload);
    });
  }
}
