// Renders the generated CRD as the YAML committed in deploy/ and charts/.
import { stringify } from 'yaml';
import { bankClusterCrd } from './bankcluster-crd.js';

export const CRD_FILES = ['deploy/crd/bankclusters.shardbank.io.yaml', 'charts/shardbank-operator/crds/bankclusters.shardbank.io.yaml'] as const;

export function renderCrdYaml(): string {
  return '# Generated from operator/crd/bankcluster-crd.ts by `npm run crd:generate`; do not edit.\n' + stringify(bankClusterCrd(), { lineWidth: 0 });
}
