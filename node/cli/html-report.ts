// The self-contained HTML report of bench and chaos: inline SVG charts of throughput and
// p99 latency per second with markers for kills and leader changes, and the final numbers.
// No external assets, no scripts. Pure.

export const MARKER_KINDS = ['kill', 'nats-kill', 'leader-change'] as const;
export type MarkerKind = (typeof MARKER_KINDS)[number];

export interface ReportMarker {
  /** Seconds since the start of the run. */
  atS: number;
  kind: MarkerKind;
  label: string;
}

export interface ReportPoint {
  second: number;
  transfersPerS: number;
  p99Ms: number | null;
}

export interface ReportInput {
  title: string;
  generatedAt: string;
  series: readonly ReportPoint[];
  markers: readonly ReportMarker[];
  summary: readonly (readonly [string, string | number])[];
  verdict?: { ok: boolean; text: string };
  details?: string;
}

const MARKER_COLORS: Record<MarkerKind, string> = {
  kill: '#d62728',
  'nats-kill': '#9467bd',
  'leader-change': '#2ca02c',
};
const CHART_WIDTH = 900;
const CHART_HEIGHT = 260;
const MARGIN = { left: 60, right: 20, top: 20, bottom: 36 };

export function escapeHtml(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (char) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[char]!,
  );
}

function niceMax(value: number): number {
  if (value <= 0) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * magnitude >= value) return step * magnitude;
  return 10 * magnitude;
}

interface ChartSpec {
  title: string;
  unit: string;
  color: string;
  values: readonly (number | null)[];
  markers: readonly ReportMarker[];
  durationS: number;
}

export function lineChartSvg(chart: ChartSpec): string {
  const plotWidth = CHART_WIDTH - MARGIN.left - MARGIN.right;
  const plotHeight = CHART_HEIGHT - MARGIN.top - MARGIN.bottom;
  const spanS = Math.max(1, chart.durationS);
  const yMax = niceMax(Math.max(0, ...chart.values.map((value) => value ?? 0)));
  const x = (second: number) => MARGIN.left + (second / spanS) * plotWidth;
  const y = (value: number) => MARGIN.top + plotHeight - (value / yMax) * plotHeight;
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${CHART_WIDTH}" height="${CHART_HEIGHT}" viewBox="0 0 ${CHART_WIDTH} ${CHART_HEIGHT}" role="img" aria-label="${escapeHtml(chart.title)}">`,
  );
  parts.push(
    `<rect x="${MARGIN.left}" y="${MARGIN.top}" width="${plotWidth}" height="${plotHeight}" fill="#fafafa" stroke="#ccc"/>`,
  );
  for (let tick = 0; tick <= 4; tick += 1) {
    const value = (yMax * tick) / 4;
    parts.push(
      `<line x1="${MARGIN.left}" x2="${MARGIN.left + plotWidth}" y1="${y(value).toFixed(1)}" y2="${y(value).toFixed(1)}" stroke="#eee"/>`,
    );
    parts.push(
      `<text x="${MARGIN.left - 6}" y="${(y(value) + 4).toFixed(1)}" text-anchor="end" font-size="11">${formatTick(value)}</text>`,
    );
  }
  const xStep = Math.max(1, Math.ceil(spanS / 10));
  for (let second = 0; second <= spanS; second += xStep) {
    parts.push(
      `<text x="${x(second).toFixed(1)}" y="${CHART_HEIGHT - MARGIN.bottom + 16}" text-anchor="middle" font-size="11">${second}s</text>`,
    );
  }
  for (const marker of chart.markers) {
    const mx = x(marker.atS).toFixed(1);
    parts.push(
      `<line x1="${mx}" x2="${mx}" y1="${MARGIN.top}" y2="${MARGIN.top + plotHeight}" stroke="${MARKER_COLORS[marker.kind]}" stroke-dasharray="4 3"><title>${escapeHtml(`${marker.atS.toFixed(1)}s ${marker.label}`)}</title></line>`,
    );
  }
  const points = chart.values
    .map((value, second) => (value === null ? null : `${x(second + 0.5).toFixed(1)},${y(value).toFixed(1)}`))
    .filter((point): point is string => point !== null);
  if (points.length > 0)
    parts.push(`<polyline fill="none" stroke="${chart.color}" stroke-width="2" points="${points.join(' ')}"/>`);
  parts.push(
    `<text x="${MARGIN.left}" y="14" font-size="13" font-weight="bold">${escapeHtml(chart.title)} (${escapeHtml(chart.unit)})</text>`,
  );
  parts.push('</svg>');
  return parts.join('\n');
}

function formatTick(value: number): string {
  return Number.isInteger(value) ? String(value) : value.toFixed(value < 10 ? 2 : 1);
}

function legend(): string {
  const labels: Record<MarkerKind, string> = {
    kill: 'replica killed',
    'nats-kill': 'nats-server killed',
    'leader-change': 'leader change',
  };
  return MARKER_KINDS.map((kind) => `<span style="color:${MARKER_COLORS[kind]}">&#9474; ${labels[kind]}</span>`).join(
    ' &nbsp; ',
  );
}

export function renderHtmlReport(input: ReportInput): string {
  const durationS = Math.max(input.series.length, ...input.markers.map((marker) => Math.ceil(marker.atS)));
  const throughput = lineChartSvg({
    title: 'Throughput',
    unit: 'transfers/s',
    color: '#1f77b4',
    values: input.series.map((p) => p.transfersPerS),
    markers: input.markers,
    durationS,
  });
  const latency = lineChartSvg({
    title: 'p99 latency',
    unit: 'ms',
    color: '#ff7f0e',
    values: input.series.map((p) => p.p99Ms),
    markers: input.markers,
    durationS,
  });
  const summaryRows = input.summary
    .map(([key, value]) => `<tr><th>${escapeHtml(key)}</th><td>${escapeHtml(String(value))}</td></tr>`)
    .join('\n');
  const markerRows = input.markers
    .map((m) => `<tr><td>${m.atS.toFixed(1)} s</td><td>${escapeHtml(m.kind)}</td><td>${escapeHtml(m.label)}</td></tr>`)
    .join('\n');
  const verdict = input.verdict
    ? `<p class="verdict ${input.verdict.ok ? 'ok' : 'fail'}">${input.verdict.ok ? 'PASS' : 'FAIL'}: ${escapeHtml(input.verdict.text)}</p>`
    : '';
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${escapeHtml(input.title)}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { text-align: left; padding: 2px 12px 2px 0; font-variant-numeric: tabular-nums; }
.verdict { font-size: 1.3em; font-weight: bold; }
.ok { color: #2ca02c; } .fail { color: #d62728; }
pre { background: #f4f4f4; padding: 1em; overflow-x: auto; }
</style>
</head>
<body>
<h1>${escapeHtml(input.title)}</h1>
<p>Generated ${escapeHtml(input.generatedAt)}</p>
${verdict}
<h2>Final numbers</h2>
<table>
${summaryRows}
</table>
<h2>Per second</h2>
<p>${legend()}</p>
${throughput}
${latency}
<h2>Events</h2>
<table>
<tr><th>time</th><th>kind</th><th>what</th></tr>
${markerRows}
</table>
${input.details ? `<h2>Details</h2>\n<pre>${escapeHtml(input.details)}</pre>` : ''}
</body>
</html>
`;
}
