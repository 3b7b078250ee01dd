// A strict reader of the Prometheus text exposition format (version 0.0.4) for tests: every
// sample must belong to the family announced by the HELP/TYPE lines before it, with the
// suffixes its type allows; label values unescaped. Throws on anything malformed, naming the line.
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface MetricFamily {
  name: string;
  help: string | undefined;
  type: string | undefined;
  samples: Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);
const SUFFIXES: Record<string, string[]> = {
  counter: [''],
  gauge: [''],
  untyped: [''],
  histogram: ['_bucket', '_sum', '_count'],
  summary: ['', '_sum', '_count'],
};

export function parsePrometheusText(text: string): Map<string, MetricFamily> {
  const families = new Map<string, MetricFamily>();
  let current: MetricFamily | undefined;
  const family = (name: string, line: number): MetricFamily => {
    if (!NAME.test(name)) throw new Error(`line ${line}: bad metric name ${JSON.stringify(name)}`);
    let f = families.get(name);
    if (!f) {
      f = { name, help: undefined, type: undefined, samples: [] };
      families.set(name, f);
    } else if (f !== current) throw new Error(`line ${line}: metric ${name} appears in two places`);
    current = f;
    return f;
  };
  const lines = text.split('\n');
  if (lines.at(-1) !== '') throw new Error('the text does not end with a newline');
  lines.forEach((raw, index) => {
    const n = index + 1;
    if (raw === '') return;
    if (raw.startsWith('# HELP ')) {
      const [, name = '', help = ''] = /^# HELP (\S+) ?(.*)$/.exec(raw) ?? [];
      const f = family(name, n);
      if (f.help !== undefined) throw new Error(`line ${n}: second HELP for ${name}`);
      f.help = help;
      return;
    }
    if (raw.startsWith('# TYPE ')) {
      const [, name = '', type = ''] = /^# TYPE (\S+) (\S+)$/.exec(raw) ?? [];
      if (!TYPES.has(type)) throw new Error(`line ${n}: unknown type ${JSON.stringify(type)}`);
      const f = family(name, n);
      if (f.type !== undefined || f.samples.length > 0) throw new Error(`line ${n}: TYPE of ${name} too late`);
      f.type = type;
      return;
    }
    if (raw.startsWith('#')) return;
    const sample = parseSample(raw, n);
    const f = current;
    const suffix = f && sample.name.startsWith(f.name) ? sample.name.slice(f.name.length) : undefined;
    if (!f || suffix === undefined || !SUFFIXES[f.type ?? 'untyped']!.includes(suffix))
      throw new Error(`line ${n}: sample ${sample.name} outside its family (after ${f?.name ?? 'nothing'})`);
    if (f.type === 'histogram' && suffix === '_bucket' && sample.labels.le === undefined)
      throw new Error(`line ${n}: bucket without le`);
    f.samples.push(sample);
  });
  return families;
}

function parseSample(raw: string, n: number): Sample {
  const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)( -?\d+)?$/.exec(raw);
  if (!match) throw new Error(`line ${n}: not a sample: ${raw}`);
  const [, name = '', labelText, valueText = ''] = match;
  const labels: Record<string, string> = {};
  if (labelText) {
    let rest = labelText.slice(1, -1);
    while (rest.length > 0) {
      const label = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/.exec(rest);
      if (!label) throw new Error(`line ${n}: bad labels ${labelText}`);
      const [whole, key = '', escaped = ''] = label;
      if (key in labels) throw new Error(`line ${n}: label ${key} twice`);
      labels[key] = escaped.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
      rest = rest.slice(whole.length);
    }
  }
  // As Prometheus reads them (Go's ParseFloat): NaN and Inf in any case; prom-client writes `Nan`.
  const special = valueText.toLowerCase();
  const value = special === '+inf' || special === 'inf' ? Infinity : special === '-inf' ? -Infinity : Number(valueText);
  if (special !== 'nan' && Number.isNaN(value)) throw new Error(`line ${n}: bad value ${valueText}`);
  return { name, labels, value };
}
