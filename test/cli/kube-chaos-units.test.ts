// `shardbank chaos --kubernetes` without a cluster: the argument errors name the option, the
// kubeconfig is read (client certificate, current context) and the per-pod DNS endpoints match
// the operator's peer address template.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { chaosCommand } from '../../node/cli/chaos-command.js';
import { credentialsFromKubeconfig } from '../../node/cli/kube-api.js';
import { dnsEndpoints, kubernetesTarget } from '../../node/cli/kube-chaos.js';
import { PEER_ADDRESS_TEMPLATE } from '../../operator/builders/ports.js';

const io = { out: () => {}, err: () => {} };

describe('chaos --kubernetes arguments', () => {
  it('needs --cluster, refuses --kill-nats, and keeps the Kubernetes options to --kubernetes', async () => {
    await expect(kubernetesTarget({})).rejects.toThrow('--kubernetes needs --cluster NAME');
    await expect(chaosCommand(['--kubernetes', '--cluster', 'demo', '--kill-nats'], io as never)).rejects.toThrow(
      '--kill-nats: not supported with --kubernetes',
    );
    await expect(chaosCommand(['--cluster', 'demo'], io as never)).rejects.toThrow('--cluster: only with --kubernetes');
    await expect(kubernetesTarget({ cluster: 'demo', kubeconfig: '/nonexistent/kubeconfig' })).rejects.toThrow(
      '--kubeconfig: /nonexistent/kubeconfig does not exist',
    );
  });

  it('reads the current context of a kubeconfig', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kubeconfig-'));
    const file = join(dir, 'config');
    const b64 = (s: string) => Buffer.from(s).toString('base64');
    writeFileSync(
      file,
      [
        'apiVersion: v1',
        'kind: Config',
        'current-context: b',
        'clusters:',
        '- {name: one, cluster: {server: "https://10.0.0.1:6443"}}',
        `- {name: two, cluster: {server: "https://10.213.0.1:6443", certificate-authority-data: ${b64('CA')}}}`,
        'users:',
        `- {name: u, user: {client-certificate-data: ${b64('CERT')}, client-key-data: ${b64('KEY')}}}`,
        '- {name: t, user: {token: abc}}',
        'contexts:',
        '- {name: a, context: {cluster: one, user: t}}',
        '- {name: b, context: {cluster: two, user: u}}',
        '',
      ].join('\n'),
    );
    const creds = credentialsFromKubeconfig(file);
    expect(creds.server).toBe('https://10.213.0.1:6443');
    expect(String(creds.ca)).toBe('CA');
    expect(String(creds.cert)).toBe('CERT');
    expect(String(creds.key)).toBe('KEY');
    expect(creds.token).toBeUndefined();
  });

  it('endpoints are the per-pod DNS names the operator gives the replicas', () => {
    const expected = PEER_ADDRESS_TEMPLATE.replace('{cluster}', 'demo')
      .replace('{cluster}', 'demo')
      .replaceAll('{shard}', '1')
      .replace('{ordinal}', '2')
      .replace('{namespace}', 'ns');
    expect(dnsEndpoints('demo', 'ns', 3, 3)[1]![2]).toBe(expected);
    expect(dnsEndpoints('demo', 'ns', 2, 5).map((s) => s.length)).toEqual([5, 5]);
  });
});
