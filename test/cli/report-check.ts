// The check both reports get in a real headless Chromium: what is wrong with the page (errors,
// log errors, requests other than the file, an http(s) URL in it) and facts from its DOM
// (charts, series, markers, whether any two badges overlap on screen).
import { readFileSync } from 'node:fs';
import { loadInChromium, type PageReport } from './headless-chromium.js';

export const SKIP_REASON =
  'no Chromium installed (apt-get install -y chromium; CI installs it in scripts/install-deps.sh)';

/** What a report must look like in a browser; the list of what is wrong (empty: fine). */
export const DOM_PROBE = `(() => {
  const chart = (id) => document.querySelector('svg[data-chart="' + id + '"]');
  const count = (root, selector) => (root ? root.querySelectorAll(selector).length : -1);
  const t = chart('throughput'), l = chart('latency');
  const badges = t ? [...t.querySelectorAll('g.marker circle')].map((c) => c.getBoundingClientRect()) : [];
  let overlaps = 0;
  for (let i = 0; i < badges.length; i++)
    for (let j = i + 1; j < badges.length; j++) {
      const a = badges[i], b = badges[j];
      if (a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1) overlaps++;
    }
  return {
    title: document.title,
    charts: document.querySelectorAll('svg[data-chart]').length,
    throughputWidth: t ? t.getBoundingClientRect().width : 0,
    completed: count(t, 'polyline[data-series="completed"]'),
    failed: count(t, 'rect[data-series="failed"]'),
    stalls: count(t, 'rect[data-series="stall"]'),
    p99: count(l, 'polyline[data-series="p99"]'),
    markers: count(t, 'g.marker'),
    failoverSpans: count(t, 'line.failover'),
    overlaps,
    eventRows: document.querySelectorAll('table.events tr[data-kind]').length,
  };
})()`;

export interface DomFacts {
  title: string;
  charts: number;
  throughputWidth: number;
  completed: number;
  failed: number;
  stalls: number;
  p99: number;
  markers: number;
  failoverSpans: number;
  overlaps: number;
  eventRows: number;
}

/** Every sign that the page did not load cleanly and offline. */
export function pageProblems(page: PageReport, html: string): string[] {
  return [
    ...page.errors,
    ...page.logErrors.map((e) => `log error: ${e}`),
    ...page.requests.filter((url) => !url.startsWith('file://')).map((url) => `requested ${url}`),
    ...(page.proxyConnections > 0 ? [`${page.proxyConnections} connections to the network (the proxy)`] : []),
    ...(/https?:\/\//.test(html) ? ['the report names an http(s) URL'] : []),
  ];
}

/** Loads a report file in Chromium: its problems (empty: fine) and its DOM facts. */
export async function checkReport(chromium: string, file: string): Promise<{ problems: string[]; dom: DomFacts }> {
  const page = await loadInChromium(chromium, file, DOM_PROBE);
  return { problems: pageProblems(page, readFileSync(file, 'utf8')), dom: page.value as DomFacts };
}
