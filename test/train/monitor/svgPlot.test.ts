/**
 * SVG plot writer: well-formed XML (parsed by an independent strict parser),
 * one path per series with the right number of points (gaps for non-finite
 * and, on log axes, non-positive values), coordinates that respect the axis
 * mapping (linear and log), legend entries, escaping, figures of panels,
 * and clear errors.
 */
import { describe, expect, it } from 'vitest';
import { figureSvg, linePlotSvg } from '../../../src/train/monitor/svgPlot';
import { allElements, parseXml, type XmlElement } from './xml';

/** The points of a path's d attribute, split into M-started runs. */
function runs(d: string): [number, number][][] {
  const out: [number, number][][] = [];
  for (const m of d.matchAll(/([ML])(-?[\d.]+) (-?[\d.]+)/g)) {
    const p: [number, number] = [Number(m[2]), Number(m[3])];
    if (m[1] === 'M') out.push([p]);
    else out[out.length - 1]?.push(p);
  }
  return out;
}

function seriesPaths(root: XmlElement): XmlElement[] {
  return allElements(root).filter((e) => e.name === 'path' && e.attrs.class === 'series');
}

describe('linePlotSvg', () => {
  it('is well-formed XML with one path per series, the expected points, gaps and a legend', () => {
    const x = [0, 1, 2, 3, 4, 5];
    const svg = linePlotSvg({
      title: 'Eigenvalues <λ> & "co"',
      xLabel: 'step',
      yLabel: 'λ',
      series: [
        { name: 'a', x, y: [1, 2, 3, 4, 5, 6] },
        { name: 'b & <c>', x, y: [6, Number.NaN, 4, 3, Number.POSITIVE_INFINITY, 1] },
        { name: 'c', x, y: [2, 2, 2, 2, 2, 2], dashed: true },
      ],
    });
    const root = parseXml(svg);
    expect(root.name).toBe('svg');
    expect(root.attrs.xmlns).toBe('http://www.w3.org/2000/svg');
    const paths = seriesPaths(root);
    expect(paths.map((p) => p.attrs['data-series'])).toEqual(['a', 'b & <c>', 'c']);
    expect(paths.map((p) => Number(p.attrs['data-points']))).toEqual([6, 4, 6]);
    // b: NaN at 1 and ∞ at 4 give runs [0], [2, 3], [5]; isolated points get markers.
    expect(runs(paths[1]!.attrs.d as string).map((r) => r.length)).toEqual([1, 2, 1]);
    expect(allElements(root).filter((e) => e.name === 'circle')).toHaveLength(2);
    expect(paths[2]!.attrs['stroke-dasharray']).toBeDefined();
    const legend = allElements(root).find((e) => e.name === 'g' && e.attrs.class === 'legend') as XmlElement;
    expect(legend.children.filter((c) => c.name === 'text').map((c) => c.text)).toEqual(['a', 'b & <c>', 'c']);
    const title = allElements(root).find((e) => e.attrs.class === 'title') as XmlElement;
    expect(title.text).toBe('Eigenvalues <λ> & "co"');
  });

  it('maps coordinates linearly: equal steps in x and y give equal pixel steps, larger y is higher', () => {
    const svg = linePlotSvg({ series: [{ name: 's', x: [10, 20, 30, 40], y: [-1, 1, 3, 5] }] });
    const pts = runs(seriesPaths(parseXml(svg))[0]!.attrs.d as string)[0] as [number, number][];
    const dx = pts.slice(1).map((p, i) => p[0] - (pts[i] as [number, number])[0]);
    const dy = pts.slice(1).map((p, i) => p[1] - (pts[i] as [number, number])[1]);
    for (const v of dx) expect(v).toBeCloseTo(dx[0] as number, 1);
    for (const v of dy) expect(v).toBeCloseTo(dy[0] as number, 1);
    expect(dy[0]).toBeLessThan(0); // SVG y grows downwards
    // Tick labels are "nice" numbers covering the data.
    const ticks = allElements(parseXml(svg)).filter((e) => e.attrs.class === 'tick').map((e) => Number(e.text));
    expect(ticks.every((t) => Number.isFinite(t))).toBe(true);
    expect(Math.min(...ticks)).toBeLessThanOrEqual(-1);
    expect(Math.max(...ticks)).toBeGreaterThanOrEqual(40);
  });

  it('log scale: powers of ten equally spaced, non-positive values dropped, decade tick labels', () => {
    const svg = linePlotSvg({ logY: true, series: [{ name: 's', x: [0, 1, 2, 3, 4], y: [1e-3, 1e-2, 0, 1e-1, 1] }] });
    const root = parseXml(svg);
    const p = seriesPaths(root)[0] as XmlElement;
    expect(p.attrs['data-points']).toBe('4');
    const r = runs(p.attrs.d as string);
    expect(r.map((q) => q.length)).toEqual([2, 2]);
    const ys = r.flat().map((q) => q[1]);
    // 1e-3 → 1e-2 and 1e-1 → 1 are both one decade apart.
    expect(ys[0]! - ys[1]!).toBeCloseTo(ys[2]! - ys[3]!, 1);
    const labels = allElements(root).filter((e) => e.attrs.class === 'tick').map((e) => e.text);
    for (const l of ['1e-3', '0.01', '0.1', '1']) expect(labels).toContain(l);
  });

  it('figureSvg lays out panels in a grid with a title', () => {
    const panel = (n: string) => ({ title: n, series: [{ name: n, x: [0, 1], y: [1, 2] }] });
    const svg = figureSvg({ title: 'fig', columns: 2, panelWidth: 300, panelHeight: 200, panels: [panel('p1'), panel('p2'), panel('p3')] });
    const root = parseXml(svg);
    expect(root.attrs.width).toBe('600');
    expect(root.attrs.height).toBe(String(30 + 2 * 200));
    expect(allElements(root).filter((e) => e.attrs.class === 'panel')).toHaveLength(3);
    expect(seriesPaths(root).map((p) => p.attrs['data-series'])).toEqual(['p1', 'p2', 'p3']);
    // Each panel has its own clip path id.
    const ids = allElements(root).filter((e) => e.name === 'clipPath').map((e) => e.attrs.id);
    expect(new Set(ids).size).toBe(3);
  });

  it('an empty series list or all-invalid data still gives a valid document', () => {
    expect(seriesPaths(parseXml(linePlotSvg({ series: [] })))).toHaveLength(0);
    const root = parseXml(linePlotSvg({ logY: true, series: [{ name: 'z', x: [0, 1], y: [0, -1] }] }));
    expect(seriesPaths(root)[0]!.attrs['data-points']).toBe('0');
  });

  it('fails clearly on bad input', () => {
    expect(() => linePlotSvg({ series: [{ name: 's', x: [0, 1, 2], y: [1, 2] }] })).toThrow(/3 x values but 2 y values/);
    expect(() => linePlotSvg({ series: [], yRange: [1, 0] })).toThrow(/y range \[1, 0\]/);
    expect(() => linePlotSvg({ series: [], logY: true, yRange: [0, 1] })).toThrow(/positive start/);
    expect(() => linePlotSvg({ series: [], width: 10 })).toThrow(/width must be a number ≥ 100/);
    expect(() => figureSvg({ panels: [] })).toThrow(/at least one panel/);
  });
});

describe('parseXml (the test helper) rejects malformed documents', () => {
  it('catches unbalanced tags, bare ampersands and unquoted attributes', () => {
    expect(() => parseXml('<svg><g></svg>')).toThrow();
    expect(() => parseXml('<svg>a & b</svg>')).toThrow(/bare '&'/);
    expect(() => parseXml('<svg a=1/>')).toThrow(/not quoted/);
    expect(() => parseXml('<svg/><svg/>')).toThrow(/two root/);
  });
});
