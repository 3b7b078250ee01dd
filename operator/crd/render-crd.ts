// Renders the generated CRD as the YAML committed in deploy/ and charts/. In the chart the CRD
// is a template (helm installs it and, unlike crds/, upgrades it), kept on uninstall (deleting a
// CRD deletes every BankCluster) and optional (crd.install=false when it is managed elsewhere).
import { stringify } from 'yaml';
import { bankClusterCrd } from './bankcluster-crd.js';

export const DEPLOY_CRD_FILE = 'deploy/crd/bankclusters.shardbank.io.yaml';
export const CHART_CRD_FILE = 'charts/shardbank-operator/templates/crd-bankclusters.yaml';
export const CRD_FILES = [DEPLOY_CRD_FILE, CHART_CRD_FILE] as const;

const HEADER = '# Generated from operator/crd/bankcluster-crd.ts by `npm run crd:generate`; do not edit.\n';

export function renderCrdYaml(file: string = DEPLOY_CRD_FILE): string {
  const crd = bankClusterCrd();
  if (file !== CHART_CRD_FILE) return HEADER + stringify(crd, { lineWidth: 0 });
  const metadata = crd.metadata as Record<string, unknown>;
  const chartCrd = { ...crd, metadata: { ...metadata, annotations: { 'helm.sh/resource-policy': 'keep' } } };
  const yaml = stringify(chartCrd, { lineWidth: 0 });
  if (yaml.includes('{{')) throw new Error('the CRD contains "{{", which helm would read as a template');
  return `{{- if .Values.crd.install }}\n${HEADER}${yaml}{{- end }}\n`;
}
