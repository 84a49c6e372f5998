/**
 * A small SVG line-plot writer (no dependencies): axes with "nice" ticks,
 * optional log scales, grid, legend, several series per panel, and figures
 * made of a grid of panels. Non-finite points (and non-positive ones on a
 * log axis) break a line instead of being drawn.
 *
 * Each series is one `<path class="series" data-series="name" data-points="n">`
 * (n = points drawn), so that files can be checked by structure.
 */

export interface PlotSeries {
  readonly name: string;
  readonly x: readonly number[];
  readonly y: readonly number[];
  /** CSS colour (default: a 10-colour palette in series order). */
  readonly color?: string;
  /** Dashed line. */
  readonly dashed?: boolean;
}

export interface LinePlotOptions {
  readonly series: readonly PlotSeries[];
  readonly title?: string;
  readonly xLabel?: string;
  readonly yLabel?: string;
  readonly logX?: boolean;
  readonly logY?: boolean;
  /** Fixed axis ranges (default: x the data's range, y the data's padded to ticks). */
  readonly xRange?: readonly [number, number];
  readonly yRange?: readonly [number, number];
  /** Pixels (default 640 × 400). */
  readonly width?: number;
  readonly height?: number;
  /** Draw the legend (default true). */
  readonly legend?: boolean;
}

export interface FigureOptions {
  readonly panels: readonly LinePlotOptions[];
  readonly title?: string;
  /** Panels per row (default min(2, panels)). */
  readonly columns?: number;
  /** Size of each panel in pixels (default 480 × 320). */
  readonly panelWidth?: number;
  readonly panelHeight?: number;
}

/** Matplotlib's tab10 palette. */
export const PALETTE: readonly string[] = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];

const MARGIN = { left: 64, right: 14, top: 30, bottom: 46 };

export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

function fmt(v: number): string {
  return (Math.round(v * 100) / 100).toString();
}

interface Axis {
  readonly log: boolean;
  /** Range in axis units (log10 for log axes). */
  readonly lo: number;
  readonly hi: number;
  readonly ticks: { readonly at: number; readonly label: string }[];
}

/** 1, 2 or 5 × 10^k, the smallest ≥ raw. */
function niceStep(raw: number): number {
  const p = 10 ** Math.floor(Math.log10(raw));
  const m = raw / p;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

function linearLabel(v: number, step: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) return v.toExponential(Math.max(0, Math.min(3, Math.round(-Math.log10(step / a))))).replace('e+', 'e');
  const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  return v.toFixed(Math.min(decimals, 6));
}

function logLabel(k: number, mantissa = 1): string {
  const v = mantissa * 10 ** k;
  if (k >= -2 && k <= 4) return Number(v.toPrecision(6)).toString();
  return mantissa === 1 ? `1e${k}` : `${mantissa}e${k}`;
}

function linearAxis(min: number, max: number, fixed: boolean): Axis {
  let lo = min;
  let hi = max;
  if (!(hi > lo)) {
    const d = lo === 0 ? 1 : Math.abs(lo) * 0.1;
    lo -= d;
    hi += d;
  }
  const step = niceStep((hi - lo) / 5);
  if (!fixed) {
    lo = Math.floor(lo / step + 1e-9) * step;
    hi = Math.ceil(hi / step - 1e-9) * step;
  }
  const ticks: { at: number; label: string }[] = [];
  for (let t = Math.ceil(lo / step - 1e-9) * step; t <= hi + step * 1e-9; t += step) ticks.push({ at: t, label: linearLabel(Math.abs(t) < step * 1e-9 ? 0 : t, step) });
  return { log: false, lo, hi, ticks };
}

function logAxis(min: number, max: number, fixed: boolean): Axis {
  let lo = Math.log10(min);
  let hi = Math.log10(max);
  if (!fixed) {
    lo = Math.floor(lo + 1e-9);
    hi = Math.ceil(hi - 1e-9);
  }
  if (!(hi > lo)) {
    lo = Math.floor(lo);
    hi = lo + 1;
  }
  const decades = hi - lo;
  const every = Math.max(1, Math.ceil(decades / 8));
  const ticks: { at: number; label: string }[] = [];
  for (let k = Math.ceil(lo - 1e-9); k <= Math.floor(hi + 1e-9); k++) {
    if ((k - Math.ceil(lo - 1e-9)) % every === 0) ticks.push({ at: k, label: logLabel(k) });
    if (decades <= 2) {
      for (const m of [2, 5]) {
        const at = k + Math.log10(m);
        if (at > lo + 1e-9 && at < hi - 1e-9) ticks.push({ at, label: logLabel(k, m) });
      }
    }
  }
  if (ticks.length < 2) ticks.push({ at: lo, label: logLabel(Math.floor(lo)) });
  return { log: true, lo, hi, ticks: ticks.sort((a, b) => a.at - b.at) };
}

function valid(v: number, log: boolean): boolean {
  return Number.isFinite(v) && (!log || v > 0);
}

function makeAxis(values: number[], log: boolean, range: readonly [number, number] | undefined, what: string, tight = false): Axis {
  if (range !== undefined) {
    const [a, b] = range;
    if (!(Number.isFinite(a) && Number.isFinite(b) && b > a) || (log && !(a > 0))) {
      throw new Error(`linePlot: ${what} range [${a}, ${b}] must be finite and increasing${log ? ' with a positive start (log axis)' : ''}.`);
    }
    return log ? logAxis(a, b, true) : linearAxis(a, b, true);
  }
  const ok = values.filter((v) => valid(v, log));
  if (ok.length === 0) return log ? logAxis(1, 10, false) : linearAxis(0, 1, false);
  let min = Infinity;
  let max = -Infinity;
  for (const v of ok) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  if (tight && max > min) return log ? logAxis(min, max, true) : linearAxis(min, max, true);
  return log ? logAxis(min, max, false) : linearAxis(min, max, false);
}

let clipCounter = 0;

function checkSeries(s: readonly PlotSeries[]): void {
  if (!Array.isArray(s)) throw new Error('linePlot: option series must be an array of { name, x, y }.');
  s.forEach((q, i) => {
    if (q === null || typeof q !== 'object' || typeof q.name !== 'string') throw new Error(`linePlot: series ${i} must be { name: string, x: number[], y: number[] }.`);
    if (q.x.length !== q.y.length) {
      throw new Error(`linePlot: series '${q.name}' has ${q.x.length} x values but ${q.y.length} y values; give one y per x.`);
    }
  });
}

/** One panel as an SVG group at (x0, y0), size w × h. */
function panel(o: LinePlotOptions, x0: number, y0: number, w: number, h: number): string {
  checkSeries(o.series);
  const logX = o.logX === true;
  const logY = o.logY === true;
  const xa = makeAxis(o.series.flatMap((s) => Array.from(s.x)), logX, o.xRange, 'x', true);
  const ya = makeAxis(
    o.series.flatMap((s) => Array.from(s.y)),
    logY,
    o.yRange,
    'y',
  );
  const pw = Math.max(10, w - MARGIN.left - MARGIN.right);
  const ph = Math.max(10, h - MARGIN.top - MARGIN.bottom);
  const px0 = x0 + MARGIN.left;
  const py0 = y0 + MARGIN.top;
  const sx = (v: number) => px0 + ((( logX ? Math.log10(v) : v) - xa.lo) / (xa.hi - xa.lo)) * pw;
  const sy = (v: number) => py0 + ph - (((logY ? Math.log10(v) : v) - ya.lo) / (ya.hi - ya.lo)) * ph;
  const ax = (t: number) => px0 + ((t - xa.lo) / (xa.hi - xa.lo)) * pw;
  const ay = (t: number) => py0 + ph - ((t - ya.lo) / (ya.hi - ya.lo)) * ph;
  const clip = `clip${++clipCounter}`;
  const out: string[] = [];
  out.push(`<g class="panel">`);
  out.push(`<clipPath id="${clip}"><rect x="${fmt(px0)}" y="${fmt(py0)}" width="${fmt(pw)}" height="${fmt(ph)}"/></clipPath>`);
  out.push(`<rect x="${fmt(px0)}" y="${fmt(py0)}" width="${fmt(pw)}" height="${fmt(ph)}" fill="#ffffff" stroke="#333333" stroke-width="1"/>`);
  // Grid and ticks.
  for (const t of xa.ticks) {
    const x = fmt(ax(t.at));
    out.push(`<line class="grid" x1="${x}" y1="${fmt(py0)}" x2="${x}" y2="${fmt(py0 + ph)}" stroke="#e5e5e5" stroke-width="1"/>`);
    out.push(`<line x1="${x}" y1="${fmt(py0 + ph)}" x2="${x}" y2="${fmt(py0 + ph + 4)}" stroke="#333333"/>`);
    out.push(`<text class="tick" x="${x}" y="${fmt(py0 + ph + 16)}" font-size="11" text-anchor="middle">${escapeXml(t.label)}</text>`);
  }
  for (const t of ya.ticks) {
    const y = fmt(ay(t.at));
    out.push(`<line class="grid" x1="${fmt(px0)}" y1="${y}" x2="${fmt(px0 + pw)}" y2="${y}" stroke="#e5e5e5" stroke-width="1"/>`);
    out.push(`<line x1="${fmt(px0 - 4)}" y1="${y}" x2="${fmt(px0)}" y2="${y}" stroke="#333333"/>`);
    out.push(`<text class="tick" x="${fmt(px0 - 6)}" y="${fmt(ay(t.at) + 4)}" font-size="11" text-anchor="end">${escapeXml(t.label)}</text>`);
  }
  // Series (drawn points are collected for the legend placement).
  const drawn: [number, number][] = [];
  o.series.forEach((s, i) => {
    const color = s.color ?? (PALETTE[i % PALETTE.length] as string);
    let d = '';
    let pen = false;
    let points = 0;
    const isolated: [number, number][] = [];
    for (let j = 0; j < s.x.length; j++) {
      const xv = s.x[j] as number;
      const yv = s.y[j] as number;
      if (!valid(xv, logX) || !valid(yv, logY)) {
        pen = false;
        continue;
      }
      const X = sx(xv);
      const Y = sy(yv);
      d += `${pen ? 'L' : 'M'}${fmt(X)} ${fmt(Y)}`;
      if (pen) {
        const [PX, PY] = drawn[drawn.length - 1] as [number, number];
        for (let t = 1; t < 8; t++) drawn.push([PX + ((X - PX) * t) / 8, PY + ((Y - PY) * t) / 8]);
      }
      drawn.push([X, Y]);
      points += 1;
      const prevOk = j > 0 && valid(s.x[j - 1] as number, logX) && valid(s.y[j - 1] as number, logY);
      const nextOk = j + 1 < s.x.length && valid(s.x[j + 1] as number, logX) && valid(s.y[j + 1] as number, logY);
      if (!prevOk && !nextOk) isolated.push([X, Y]);
      pen = true;
    }
    out.push(
      `<path class="series" data-series="${escapeXml(s.name)}" data-points="${points}" d="${d}" fill="none" stroke="${escapeXml(color)}" stroke-width="1.6"${
        s.dashed ? ' stroke-dasharray="5 3"' : ''
      } clip-path="url(#${clip})"/>`,
    );
    for (const [X, Y] of isolated) out.push(`<circle cx="${fmt(X)}" cy="${fmt(Y)}" r="2.2" fill="${escapeXml(color)}" clip-path="url(#${clip})"/>`);
  });
  // Labels.
  if (o.title) out.push(`<text class="title" x="${fmt(px0 + pw / 2)}" y="${fmt(y0 + 19)}" font-size="14" font-weight="bold" text-anchor="middle">${escapeXml(o.title)}</text>`);
  if (o.xLabel) out.push(`<text class="label" x="${fmt(px0 + pw / 2)}" y="${fmt(py0 + ph + 36)}" font-size="12" text-anchor="middle">${escapeXml(o.xLabel)}</text>`);
  if (o.yLabel) {
    const cx = fmt(x0 + 14);
    const cy = fmt(py0 + ph / 2);
    out.push(`<text class="label" x="${cx}" y="${cy}" font-size="12" text-anchor="middle" transform="rotate(-90 ${cx} ${cy})">${escapeXml(o.yLabel)}</text>`);
  }
  // Legend: inside the plot area, in the corner that hides the fewest points (top right on ties).
  if (o.legend !== false && o.series.length > 0) {
    const rows = o.series.length;
    const longest = Math.max(...o.series.map((s) => s.name.length));
    const lw = Math.min(pw - 8, 36 + 7 * longest);
    const lh = 6 + 15 * rows;
    const corners: [number, number][] = [
      [px0 + pw - lw - 6, py0 + 6],
      [px0 + 6, py0 + 6],
      [px0 + pw - lw - 6, py0 + ph - lh - 6],
      [px0 + 6, py0 + ph - lh - 6],
    ];
    const hidden = corners.map(([cx, cy]) => drawn.filter(([X, Y]) => X >= cx - 4 && X <= cx + lw + 4 && Y >= cy - 4 && Y <= cy + lh + 4).length);
    const best = hidden.indexOf(Math.min(...hidden));
    const [lx, ly] = corners[best] as [number, number];
    out.push(`<g class="legend">`);
    out.push(`<rect x="${fmt(lx)}" y="${fmt(ly)}" width="${fmt(lw)}" height="${fmt(lh)}" fill="#ffffff" fill-opacity="0.85" stroke="#bbbbbb"/>`);
    o.series.forEach((s, i) => {
      const color = s.color ?? (PALETTE[i % PALETTE.length] as string);
      const y = ly + 13 + 15 * i;
      out.push(
        `<line x1="${fmt(lx + 6)}" y1="${fmt(y - 4)}" x2="${fmt(lx + 24)}" y2="${fmt(y - 4)}" stroke="${escapeXml(color)}" stroke-width="2"${s.dashed ? ' stroke-dasharray="5 3"' : ''}/>`,
      );
      out.push(`<text x="${fmt(lx + 29)}" y="${fmt(y)}" font-size="11">${escapeXml(s.name)}</text>`);
    });
    out.push(`</g>`);
  }
  out.push(`</g>`);
  return out.join('\n');
}

function svgDocument(width: number, height: number, body: string): string {
  return [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    body,
    `</svg>`,
    '',
  ].join('\n');
}

function checkSize(what: string, v: number | undefined, dflt: number): number {
  const x = v ?? dflt;
  if (!Number.isFinite(x) || x < 100) throw new Error(`linePlot: ${what} must be a number ≥ 100 (pixels), got ${String(v)}.`);
  return x;
}

/** A standalone SVG document with one line plot. */
export function linePlotSvg(options: LinePlotOptions): string {
  const w = checkSize('width', options.width, 640);
  const h = checkSize('height', options.height, 400);
  return svgDocument(w, h, panel(options, 0, 0, w, h));
}

/** A standalone SVG document with a grid of line plots (row-major) and an optional title. */
export function figureSvg(options: FigureOptions): string {
  const n = options.panels.length;
  if (n === 0) throw new Error('figureSvg: give at least one panel.');
  const cols = options.columns ?? Math.min(2, n);
  if (!Number.isInteger(cols) || cols < 1) throw new Error(`figureSvg: columns must be an integer ≥ 1, got ${String(options.columns)}.`);
  const pw = checkSize('panelWidth', options.panelWidth, 480);
  const ph = checkSize('panelHeight', options.panelHeight, 320);
  const top = options.title ? 30 : 0;
  const rows = Math.ceil(n / cols);
  const W = cols * pw;
  const H = top + rows * ph;
  const parts: string[] = [];
  if (options.title) parts.push(`<text class="figure-title" x="${W / 2}" y="21" font-size="16" font-weight="bold" text-anchor="middle">${escapeXml(options.title)}</text>`);
  options.panels.forEach((p, i) => parts.push(panel(p, (i % cols) * pw, top + Math.floor(i / cols) * ph, pw, ph)));
  return svgDocument(W, H, parts.join('\n'));
}
