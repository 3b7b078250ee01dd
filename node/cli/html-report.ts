// The self-contained HTML report of bench and chaos: inline SVG charts per second (transfers
// that completed, those that did not, p99 latency), stalls shaded, numbered markers for
// faults and leader changes stacked so that none hides another, each fault's failover as a
// span, and the final numbers. No external assets and no scripts (a Content-Security-Policy
// forbids both). Pure.

export const MARKER_KINDS = ['kill', 'nats-kill', 'leader-change'] as const;
export type MarkerKind = (typeof MARKER_KINDS)[number];

export interface ReportMarker {
  /** Seconds since the start of the run. */
  atS: number;
  kind: MarkerKind;
  label: string;
}

/** A fault chaos injected, with what followed it. */
export interface ReportFault {
  atS: number;
  kind: 'kill' | 'nats-kill';
  label: string;
  /** A leader fault: who leads the shard next, e.g. "replica 0 (ballot 5.0)"; undefined: none seen. */
  newLeader?: string;
  /** A leader fault: seconds from the fault to a new leader in ClusterStatus; null: none seen in time. */
  failoverS?: number | null;
  /** A leader fault: seconds to the shard's next committed transfer started after it; null: none in the run. */
  recoveryS?: number | null;
}

export interface ReportPoint {
  second: number;
  /** How much of this second the run covered (the last one is often partial); default 1. */
  spanS?: number;
  /** Transfers that got a definite answer (COMMITTED or INSUFFICIENT_FUNDS) in this second. */
  definite: number;
  /** Transfers that finished without one (UNKNOWN, ABORTED, refused). */
  failed: number;
  p99Ms: number | null;
}

export interface ReportInput {
  title: string;
  generatedAt: string;
  series: readonly ReportPoint[];
  markers: readonly ReportMarker[];
  faults?: readonly ReportFault[];
  summary: readonly (readonly [string, string | number])[];
  verdict?: { ok: boolean; text: string };
  details?: string;
}

const MARKER_COLORS: Record<MarkerKind, string> = {
  kill: '#d62728',
  'nats-kill': '#9467bd',
  'leader-change': '#2ca02c',
};
const MARKER_LABELS: Record<MarkerKind, string> = {
  kill: 'replica killed',
  'nats-kill': 'nats-server killed',
  'leader-change': 'leader change',
};
const SERIES_COLORS = { definite: '#1f77b4', failed: '#d62728', stall: '#f7c6c6', p99: '#ff7f0e' } as const;
const CHART_WIDTH = 900;
const PLOT_HEIGHT = 240;
/** Above the plot: the title, then one lane of badges per stack level in use. */
const MARGIN = { left: 60, right: 20, top: 24, bottom: 36 };
const BADGE_RADIUS = 7;
/** Vertical distance between stacked badges, and the horizontal room one needs. */
const BADGE_STEP_PX = 17;
const BADGE_ROOM_PX = 18;
/** Room for the "0.84s" label after a failover span. */
const SPAN_LABEL_PX = 40;
export const MARKER_LEVELS_MAX = 12;

export const REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'";

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

function formatTick(value: number): string {
  return Number.isInteger(value) ? String(value) : value.toFixed(value < 10 ? 2 : 1);
}

function formatSeconds(value: number): string {
  return `${value < 10 ? value.toFixed(2) : value.toFixed(1)}s`;
}

/** A marker or a fault, numbered in time order as in the Events table. */
export interface ReportEvent {
  index: number;
  atS: number;
  kind: MarkerKind;
  label: string;
  fault?: ReportFault;
  /** Stack level: events close in time get different levels, so no badge covers another. */
  level: number;
}

/** Faults and markers in time order (faults first at a tie), numbered from 1, each with its stack level. */
export function reportEvents(
  faults: readonly ReportFault[],
  markers: readonly ReportMarker[],
  durationS: number,
): ReportEvent[] {
  const all = [
    ...faults.map((fault) => ({ atS: fault.atS, kind: fault.kind as MarkerKind, label: fault.label, fault })),
    ...markers.map((marker) => ({ ...marker, fault: undefined })),
  ].sort((a, b) => a.atS - b.atS);
  const pxPerS = (CHART_WIDTH - MARGIN.left - MARGIN.right) / Math.max(1, durationS);
  // Greedy interval stacking: each level remembers where its last badge (and span) ends.
  const levelEndsPx: number[] = [];
  return all.map((event, position) => {
    const startPx = event.atS * pxPerS - BADGE_ROOM_PX / 2;
    const failoverS = event.fault?.failoverS;
    const spanPx =
      failoverS === undefined ? 0 : (failoverS ?? 0) * pxPerS + SPAN_LABEL_PX * (failoverS === null ? 2 : 1);
    const endPx = event.atS * pxPerS + Math.max(BADGE_ROOM_PX / 2, spanPx);
    let level = levelEndsPx.findIndex((end) => end <= startPx);
    if (level < 0) level = Math.min(levelEndsPx.length, MARKER_LEVELS_MAX - 1);
    levelEndsPx[level] = Math.max(levelEndsPx[level] ?? 0, endPx);
    return { index: position + 1, ...event, level };
  });
}

/** A second in which nothing got a definite answer: a stall, not a quiet moment. */
export function isStall(point: ReportPoint): boolean {
  return point.definite === 0;
}

interface ChartSpec {
  id: 'throughput' | 'latency';
  title: string;
  unit: string;
  series: readonly ReportPoint[];
  events: readonly ReportEvent[];
  durationS: number;
}

class Plot {
  readonly width = CHART_WIDTH - MARGIN.left - MARGIN.right;
  readonly height = PLOT_HEIGHT;
  /** The plot's top edge: below the badge lanes. */
  readonly top: number;
  readonly svgHeight: number;
  constructor(
    readonly spanS: number,
    readonly yMax: number,
    readonly lanes: number,
  ) {
    this.top = MARGIN.top + lanes * BADGE_STEP_PX;
    this.svgHeight = this.top + PLOT_HEIGHT + MARGIN.bottom;
  }
  x(second: number): number {
    return MARGIN.left + (second / this.spanS) * this.width;
  }
  y(value: number): number {
    return this.top + this.height - (value / this.yMax) * this.height;
  }
}

const f1 = (value: number) => value.toFixed(1);
const spanOf = (point: ReportPoint) => point.spanS ?? 1;

function axes(plot: Plot, parts: string[]): void {
  for (let tick = 0; tick <= 4; tick += 1) {
    const value = (plot.yMax * tick) / 4;
    const y = f1(plot.y(value));
    parts.push(`<line x1="${MARGIN.left}" x2="${MARGIN.left + plot.width}" y1="${y}" y2="${y}" stroke="#e4e4e4"/>`);
    parts.push(
      `<text x="${MARGIN.left - 6}" y="${f1(plot.y(value) + 4)}" text-anchor="end" font-size="11">${formatTick(value)}</text>`,
    );
  }
  const xStep = Math.max(1, Math.ceil(plot.spanS / 10));
  for (let second = 0; second <= plot.spanS; second += xStep) {
    parts.push(
      `<text x="${f1(plot.x(second))}" y="${plot.top + plot.height + 16}" text-anchor="middle" font-size="11">${second}s</text>`,
    );
  }
}

function stallBands(plot: Plot, series: readonly ReportPoint[], parts: string[]): void {
  for (const point of series) {
    if (!isStall(point)) continue;
    parts.push(
      `<rect data-series="stall" data-second="${point.second}" x="${f1(plot.x(point.second))}" y="${plot.top}" width="${f1(plot.x(spanOf(point)) - MARGIN.left)}" height="${plot.height}" fill="${SERIES_COLORS.stall}"><title>${escapeHtml(`${point.second}s: stall, no transfer completed (${point.failed} failed)`)}</title></rect>`,
    );
  }
}

/** Numbered badges stacked by level above the plot, a dashed line per event down through it, failover spans. */
function eventMarks(plot: Plot, events: readonly ReportEvent[], parts: string[]): void {
  for (const event of events) {
    const color = MARKER_COLORS[event.kind];
    const x = plot.x(event.atS);
    const lineX = f1(x + event.level * 2);
    const cy = plot.top - BADGE_STEP_PX / 2 - event.level * BADGE_STEP_PX;
    const title = `#${event.index} ${event.atS.toFixed(1)}s ${event.label}${failoverText(event.fault)}`;
    const group = [
      `<g class="marker" data-kind="${event.kind}" data-index="${event.index}" data-level="${event.level}">`,
      `<title>${escapeHtml(title)}</title>`,
      `<line x1="${lineX}" x2="${lineX}" y1="${cy}" y2="${plot.top + plot.height}" stroke="${color}" stroke-dasharray="4 3"/>`,
    ];
    const failoverS = event.fault?.failoverS;
    if (typeof failoverS === 'number') {
      const endX = plot.x(event.atS + failoverS);
      group.push(
        `<line class="failover" data-failover-s="${failoverS}" x1="${f1(x)}" x2="${f1(Math.max(endX, x + 1))}" y1="${cy}" y2="${cy}" stroke="${color}" stroke-width="5" stroke-opacity="0.45"/>`,
        `<text x="${f1(Math.max(endX, x + BADGE_RADIUS) + 3)}" y="${cy + 4}" font-size="10" fill="${color}">${formatSeconds(failoverS)}</text>`,
      );
    }
    if (failoverS === null)
      group.push(
        `<text x="${f1(x + BADGE_RADIUS + 3)}" y="${cy + 4}" font-size="10" fill="${color}">no new leader</text>`,
      );
    group.push(
      `<circle cx="${f1(x)}" cy="${cy}" r="${BADGE_RADIUS}" fill="${color}" stroke="#fff"/>`,
      `<text x="${f1(x)}" y="${cy + 3.5}" text-anchor="middle" font-size="9" fill="#fff">${event.index}</text>`,
      '</g>',
    );
    parts.push(group.join(''));
  }
}

function throughputMarks(plot: Plot, series: readonly ReportPoint[], parts: string[]): void {
  for (const point of series) {
    if (point.failed === 0) continue;
    const rate = point.failed / spanOf(point);
    parts.push(
      `<rect data-series="failed" data-second="${point.second}" x="${f1(plot.x(point.second + spanOf(point) * 0.2))}" y="${f1(plot.y(rate))}" width="${f1(plot.x(spanOf(point) * 0.6) - MARGIN.left)}" height="${f1(plot.y(0) - plot.y(rate))}" fill="${SERIES_COLORS.failed}"><title>${escapeHtml(`${point.second}s: ${point.failed} failed`)}</title></rect>`,
    );
  }
  const points = series.map(
    (point) => `${f1(plot.x(point.second + spanOf(point) / 2))},${f1(plot.y(point.definite / spanOf(point)))}`,
  );
  if (points.length > 0)
    parts.push(
      `<polyline data-series="completed" fill="none" stroke="${SERIES_COLORS.definite}" stroke-width="2" points="${points.join(' ')}"/>`,
    );
}

/** The p99 line breaks where a second has no sample rather than bridging the gap. */
function latencyMarks(plot: Plot, series: readonly ReportPoint[], parts: string[]): void {
  let run: string[] = [];
  const flush = () => {
    if (run.length > 0)
      parts.push(
        `<polyline data-series="p99" fill="none" stroke="${SERIES_COLORS.p99}" stroke-width="2" points="${run.join(' ')}"/>`,
      );
    run = [];
  };
  for (const point of series) {
    if (point.p99Ms === null) {
      flush();
      continue;
    }
    const x = f1(plot.x(point.second + spanOf(point) / 2));
    const y = f1(plot.y(point.p99Ms));
    run.push(`${x},${y}`);
    parts.push(`<circle data-series="p99-point" cx="${x}" cy="${y}" r="2" fill="${SERIES_COLORS.p99}"/>`);
  }
  flush();
}

export function chartSvg(chart: ChartSpec): string {
  const values =
    chart.id === 'throughput'
      ? chart.series.flatMap((p) => [p.definite / spanOf(p), p.failed / spanOf(p)])
      : chart.series.map((p) => p.p99Ms ?? 0);
  const lanes = chart.events.reduce((most, event) => Math.max(most, event.level + 1), 0);
  const plot = new Plot(Math.max(1, chart.durationS), niceMax(Math.max(0, ...values)), lanes);
  const parts: string[] = [
    `<svg data-chart="${chart.id}" width="${CHART_WIDTH}" height="${plot.svgHeight}" viewBox="0 0 ${CHART_WIDTH} ${plot.svgHeight}" role="img" aria-label="${escapeHtml(chart.title)}">`,
    `<rect x="${MARGIN.left}" y="${plot.top}" width="${plot.width}" height="${plot.height}" fill="#fafafa" stroke="#ccc"/>`,
  ];
  stallBands(plot, chart.series, parts);
  axes(plot, parts);
  if (chart.id === 'throughput') throughputMarks(plot, chart.series, parts);
  else latencyMarks(plot, chart.series, parts);
  eventMarks(plot, chart.events, parts);
  parts.push(
    `<text x="${MARGIN.left}" y="15" font-size="13" font-weight="bold">${escapeHtml(chart.title)} (${escapeHtml(chart.unit)})</text>`,
    '</svg>',
  );
  return parts.join('\n');
}

function failoverText(fault: ReportFault | undefined): string {
  if (fault === undefined || fault.failoverS === undefined) return '';
  return fault.failoverS === null
    ? ' -> no new leader seen'
    : ` -> new leader ${fault.newLeader ?? '?'} after ${formatSeconds(fault.failoverS)}`;
}

function swatch(color: string, text: string, shape: 'line' | 'box' | 'dot' = 'line'): string {
  const symbol = { line: '&#9644;', box: '&#9632;', dot: '&#9679;' }[shape];
  return `<span class="key"><span style="color:${color}">${symbol}</span> ${text}</span>`;
}

function legend(): string {
  return [
    swatch(SERIES_COLORS.definite, 'completed (a definite answer)'),
    swatch(SERIES_COLORS.failed, 'failed (no definite answer)', 'box'),
    swatch(SERIES_COLORS.stall, 'stall: a second in which no transfer completed', 'box'),
    swatch(SERIES_COLORS.p99, 'p99 latency (gap: no sample)'),
    ...MARKER_KINDS.map((kind) => swatch(MARKER_COLORS[kind], MARKER_LABELS[kind], 'dot')),
    '<span class="key">numbered badges (stacked when close): the events below; the bar after a leader fault: its failover, fault to new leader</span>',
  ].join(' ');
}

function eventRows(events: readonly ReportEvent[]): string {
  return events
    .map((e) => {
      const fault = e.fault;
      const cells = [
        String(e.index),
        `${e.atS.toFixed(1)} s`,
        MARKER_LABELS[e.kind],
        e.label,
        fault?.failoverS === undefined ? '' : fault.failoverS === null ? 'no new leader seen' : (fault.newLeader ?? ''),
        typeof fault?.failoverS === 'number' ? formatSeconds(fault.failoverS) : '',
        fault?.recoveryS === undefined
          ? ''
          : fault.recoveryS === null
            ? 'none in the run'
            : formatSeconds(fault.recoveryS),
      ];
      return `<tr data-kind="${e.kind}">${cells.map((c) => `<td>${escapeHtml(c)}</td>`).join('')}</tr>`;
    })
    .join('\n');
}

export function renderHtmlReport(input: ReportInput): string {
  const faults = input.faults ?? [];
  const durationS = Math.max(
    input.series.reduce((end, p) => Math.max(end, p.second + spanOf(p)), 0),
    ...input.markers.map((marker) => Math.ceil(marker.atS)),
    ...faults.map((fault) => Math.ceil(fault.atS + (fault.failoverS ?? 0))),
  );
  const events = reportEvents(faults, input.markers, durationS);
  const chart = (id: ChartSpec['id'], title: string, unit: string) =>
    chartSvg({ id, title, unit, series: input.series, events, durationS });
  const stalls = input.series.filter(isStall).map((p) => `${p.second}s`);
  const summaryRows = input.summary
    .map(([key, value]) => `<tr><th>${escapeHtml(key)}</th><td>${escapeHtml(String(value))}</td></tr>`)
    .join('\n');
  const verdict = input.verdict
    ? `<p class="verdict ${input.verdict.ok ? 'ok' : 'fail'}">${input.verdict.ok ? 'PASS' : 'FAIL'}: ${escapeHtml(input.verdict.text)}</p>`
    : '';
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${REPORT_CSP}">
<title>${escapeHtml(input.title)}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { text-align: left; padding: 2px 12px 2px 0; font-variant-numeric: tabular-nums; }
.verdict { font-size: 1.3em; font-weight: bold; }
.ok { color: #2ca02c; } .fail { color: #d62728; }
.key { margin-right: 1.2em; white-space: nowrap; }
.stalls { color: #b00; }
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
<p class="${stalls.length === 0 ? 'no-stalls' : 'stalls'}" data-stalls="${stalls.length}">${stalls.length === 0 ? 'No stall: every second had a completed transfer.' : `Stalls (no transfer completed): ${escapeHtml(stalls.join(', '))}`}</p>
${chart('throughput', 'Transfers', 'per second')}
${chart('latency', 'p99 latency', 'ms')}
<h2>Events</h2>
<table class="events">
<tr><th>#</th><th>time</th><th>kind</th><th>what</th><th>new leader</th><th>failover</th><th>next commit on the shard</th></tr>
${eventRows(events)}
</table>
${input.details ? `<h2>Details</h2>\n<pre>${escapeHtml(input.details)}</pre>` : ''}
</body>
</html>
`;
}
