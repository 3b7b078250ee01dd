// The chart's monitoring objects: the PrometheusRule's groups, extracted from `helm template`,
// pass `promtool check rules` and the unit tests of fixtures/prometheus-rules.test.yaml
// (series that fire each alert, series that must not); every shardbank metric the rules and
// the Grafana dashboard name is one the replica or the operator exports; the PodMonitors
// select the replica and operator pods by the labels those pods carry.
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments, stringify } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { binaries } from '../../scripts/controlplane/binaries.mjs';
import { ReplicaMetrics } from '../../node/replica/replica-metrics.js';
import { OperatorMetrics } from '../../operator/observability/metrics.js';
import { shardLabels } from '../../operator/builders/labels.js';
import { promtoolPath } from '../support/promtool.js';

const root = join(import.meta.dirname, '..', '..');
const chart = join(root, 'charts', 'shardbank-operator');
const work = mkdtempSync(join(tmpdir(), 'shardbank-rules-'));
const promtool = promtoolPath();
const havePromtool = existsSync(promtool);

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
}
interface KubeDoc {
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  spec: Record<string, unknown>;
  data?: Record<string, string>;
}

afterAll(() => rmSync(work, { recursive: true, force: true }));

function helmTemplate(set: string[]): KubeDoc[] {
  const helm = binaries({ need: ['helm'] }).helm;
  const out = execFileSync(helm, ['template', 'sb', chart, ...set.flatMap((s) => ['--set', s])], {
    encoding: 'utf8',
    env: { ...process.env, HELM_CACHE_HOME: join(work, 'hc'), HELM_CONFIG_HOME: join(work, 'hg') },
  });
  return parseAllDocuments(out)
    .map((d) => d.toJS() as KubeDoc | null)
    .filter((d): d is KubeDoc => d !== null);
}

const MONITORING_ON = [
  'monitoring.podMonitor.enabled=true',
  'monitoring.prometheusRule.enabled=true',
  'monitoring.dashboard.enabled=true',
];

function ruleGroups(): { name: string; rules: Rule[] }[] {
  const rule = helmTemplate(MONITORING_ON).find((d) => d.kind === 'PrometheusRule');
  expect(rule, 'a PrometheusRule in helm template output').toBeDefined();
  return (rule!.spec as { groups: { name: string; rules: Rule[] }[] }).groups;
}

/** Every metric name the two processes export (histograms with their series suffixes). */
function exportedNames(): Set<string> {
  const names = new Set<string>();
  const replica = new ReplicaMetrics({ cluster: 'c', shard: 0, replica: 0 });
  for (const registry of [replica.registry, new OperatorMetrics().registry]) {
    for (const metric of registry.getMetricsAsArray()) {
      const { name, type } = metric as unknown as { name: string; type: string };
      names.add(name);
      if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(name + suffix);
    }
  }
  return names;
}

function shardbankNamesIn(text: string): string[] {
  return [...new Set(text.match(/\bshardbank_[a-z0-9_]+/g) ?? [])];
}

describe('chart monitoring objects', () => {
  it('are absent by default (their CRDs may not exist)', () => {
    const docs = helmTemplate([]);
    const kinds = docs.map((d) => d.kind);
    expect(kinds).not.toContain('PodMonitor');
    expect(kinds).not.toContain('PrometheusRule');
    expect(docs.filter((d) => d.kind === 'ConfigMap' && d.metadata.name.endsWith('-dashboard'))).toHaveLength(0);
  });

  it('have the alerts of docs/METRICS.md, each with a unit test, naming only exported metrics', () => {
    const rules = ruleGroups().flatMap((g) => g.rules);
    const alerts = rules.map((r) => r.alert);
    for (const name of [
      'ShardbankShardWithoutLeader',
      'ShardbankShardLostQuorum',
      'ShardbankInDoubtTransaction',
      'ShardbankTransferLatencyHigh',
      'ShardbankDiskNearlyFull',
      'ShardbankOperatorReconcileErrors',
    ])
      expect(alerts).toContain(name);
    const unitTests = readFileSync(join(import.meta.dirname, 'fixtures', 'prometheus-rules.test.yaml'), 'utf8');
    for (const alert of alerts) expect(unitTests, `a unit test of ${alert}`).toContain(`alertname: ${alert}`);
    const exported = exportedNames();
    for (const rule of rules)
      for (const name of shardbankNamesIn(rule.expr)) expect(exported.has(name), `${rule.alert}: ${name}`).toBe(true);
  });

  it('ship a Grafana dashboard ConfigMap for the sidecar, naming only exported metrics', () => {
    const map = helmTemplate(MONITORING_ON).find(
      (d) => d.kind === 'ConfigMap' && d.metadata.name.endsWith('dashboard'),
    );
    expect(map?.metadata.labels?.grafana_dashboard).toBe('1');
    const dashboard = JSON.parse(map!.data!['shardbank.json']!) as {
      uid: string;
      panels: { title: string; targets: { expr: string }[] }[];
    };
    expect(dashboard.uid).toBe('shardbank-overview');
    const exported = exportedNames();
    const used = new Set<string>();
    for (const panel of dashboard.panels) {
      expect(panel.targets.length, panel.title).toBeGreaterThan(0);
      for (const target of panel.targets)
        for (const name of shardbankNamesIn(target.expr)) {
          expect(exported.has(name), `${panel.title}: ${name}`).toBe(true);
          used.add(name.replace(/_(bucket|sum|count)$/, ''));
        }
    }
    for (const name of [
      'shardbank_transfer_duration_seconds',
      'shardbank_commit_duration_seconds',
      'shardbank_log_fsync_duration_seconds',
      'shardbank_2pc_phase_duration_seconds',
      'shardbank_indoubt_transactions',
      'shardbank_is_leader',
    ])
      expect(used.has(name), `dashboard shows ${name}`).toBe(true);
  });

  it('select the replica pods the operator builds, and the operator pods, with PodMonitors', () => {
    const docs = helmTemplate(MONITORING_ON);
    const monitors = docs.filter((d) => d.kind === 'PodMonitor');
    expect(monitors).toHaveLength(2);
    const podLabels = shardLabels(
      { metadata: { name: 'c', namespace: 'bank' } } as Parameters<typeof shardLabels>[0],
      0,
    );
    const replicas = monitors.find((m) => m.metadata.name.endsWith('-replicas'))!;
    const selector = (replicas.spec.selector as { matchLabels: Record<string, string> }).matchLabels;
    for (const [k, v] of Object.entries(selector)) expect(podLabels[k], `replica pod label ${k}`).toBe(v);
    const deployment = docs.find((d) => d.kind === 'Deployment' && d.metadata.name === 'sb-shardbank-operator')!;
    const operatorPodLabels = (deployment.spec.template as { metadata: { labels: Record<string, string> } }).metadata
      .labels;
    const operator = monitors.find((m) => !m.metadata.name.endsWith('-replicas'))!;
    for (const [k, v] of Object.entries(
      (operator.spec.selector as { matchLabels: Record<string, string> }).matchLabels,
    ))
      expect(operatorPodLabels[k], `operator pod label ${k}`).toBe(v);
    for (const m of monitors)
      expect((m.spec.podMetricsEndpoints as { port: string; path: string }[])[0]).toMatchObject({
        port: 'http',
        path: '/metrics',
      });
  });

  it.skipIf(!havePromtool)(
    `pass promtool check rules and the rule unit tests${havePromtool ? '' : ` (SKIPPED: promtool not built at ${promtool}; build it with bash scripts/controlplane/build-binaries.sh promtool, as CI does)`}`,
    () => {
      writeFileSync(join(work, 'rules.yaml'), stringify({ groups: ruleGroups() }));
      copyFileSync(join(import.meta.dirname, 'fixtures', 'prometheus-rules.test.yaml'), join(work, 'tests.yaml'));
      const check = spawnSync(promtool, ['check', 'rules', 'rules.yaml'], { cwd: work, encoding: 'utf8' });
      expect(check.status, `promtool check rules:\n${check.stdout}${check.stderr}`).toBe(0);
      expect(check.stdout).toMatch(/SUCCESS: \d+ rules found/);
      const test = spawnSync(promtool, ['test', 'rules', 'tests.yaml'], { cwd: work, encoding: 'utf8' });
      expect(test.status, `promtool test rules:\n${test.stdout}${test.stderr}`).toBe(0);
      expect(test.stdout).toContain('SUCCESS');
    },
  );
});
