// A prom-client Registry with the standard process metrics (CPU, memory, event-loop lag, GC,
// handles), as both the replica and the operator serve it on /metrics.
import { Registry, collectDefaultMetrics } from 'prom-client';

export function processRegistry(defaultLabels: Record<string, string> = {}): Registry {
  const registry = new Registry();
  registry.setDefaultLabels(defaultLabels);
  collectDefaultMetrics({ register: registry });
  // prom-client's defaults include three gauges named _total (nodejs_active_handles_total,
  // nodejs_active_requests_total, nodejs_active_resources_total), against the naming rules
  // (a gauge never ends in _total); each repeats the sum of its labelled gauge without the
  // suffix, which stays.
  for (const metric of registry.getMetricsAsArray()) {
    const { name, type } = metric as unknown as { name: string; type: string };
    if (type === 'gauge' && name.endsWith('_total')) registry.removeSingleMetric(name);
  }
  return registry;
}
