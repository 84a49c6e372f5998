/**
 * Ready-made figures of CurvatureMonitor records: loss, the largest
 * eigenvalue per block, the top-k eigenvalues of one block, the traces,
 * and the gradient SNR along the top eigenvector.
 */
import type { MonitorRecord } from './monitor';
import type { FigureOptions, LinePlotOptions, PlotSeries } from './svgPlot';

export interface MonitorFigureOptions {
  /** Figure title. */
  title?: string;
  /** Block whose top-k eigenvalues get their own panel (default 'full' if recorded, else the first block). */
  topKBlock?: string;
  /** Panels per row (default 3). */
  columns?: number;
}

function blockNames(records: readonly MonitorRecord[]): string[] {
  const names: string[] = [];
  for (const r of records) for (const b of r.blocks) if (!names.includes(b.name)) names.push(b.name);
  return names;
}

function perBlock(records: readonly MonitorRecord[], names: readonly string[], value: (b: MonitorRecord['blocks'][number]) => number | undefined): PlotSeries[] {
  return names.map((name) => {
    const x: number[] = [];
    const y: number[] = [];
    for (const r of records) {
      const b = r.blocks.find((q) => q.name === name);
      x.push(r.step);
      y.push(b === undefined ? Number.NaN : (value(b) ?? Number.NaN));
    }
    return { name, x, y };
  });
}

/** Figure panels (for `figureSvg`) from monitor records (one model's records, ordered by step). */
export function monitorFigure(records: readonly MonitorRecord[], options: MonitorFigureOptions = {}): FigureOptions {
  if (records.length === 0) throw new Error('monitorFigure: no records; run some monitored steps first.');
  const names = blockNames(records);
  const steps = records.map((r) => r.step);
  const panels: LinePlotOptions[] = [
    { title: 'loss (recorded steps)', xLabel: 'step', yLabel: 'loss', series: [{ name: 'loss', x: steps, y: records.map((r) => r.loss) }], legend: false },
    { title: 'largest GGN eigenvalue per block', xLabel: 'step', yLabel: 'λ_max', logY: true, series: perBlock(records, names, (b) => b.topEvals[0]) },
  ];
  const focus = options.topKBlock ?? (names.includes('full') ? 'full' : (names[0] as string));
  const k = Math.max(0, ...records.map((r) => r.blocks.find((b) => b.name === focus)?.topEvals.length ?? 0));
  panels.push({
    title: `top-${k} GGN eigenvalues (${focus})`,
    xLabel: 'step',
    yLabel: 'λ',
    logY: true,
    series: Array.from({ length: k }, (_, i) => ({
      name: `λ${i + 1}`,
      x: steps,
      y: records.map((r) => r.blocks.find((b) => b.name === focus)?.topEvals[i] ?? Number.NaN),
    })),
  });
  panels.push({ title: 'GGN trace per block', xLabel: 'step', yLabel: 'trace', logY: true, series: perBlock(records, names, (b) => b.trace) });
  if (records.some((r) => r.blocks.some((b) => b.snr !== undefined))) {
    panels.push({ title: 'gradient SNR along the top eigenvector', xLabel: 'step', yLabel: 'SNR(e₁)', logY: true, series: perBlock(records, names, (b) => b.snr?.[0]) });
  }
  if (records.some((r) => r.diagonal !== undefined)) {
    panels.push({
      title: 'GGN-diagonal trace (all parameters)',
      xLabel: 'step',
      yLabel: 'Σ diag',
      logY: true,
      series: [{ name: 'Σ diag GGN', x: steps, y: records.map((r) => r.diagonal?.trace ?? Number.NaN) }, { name: 'Σ eigenvalues (full)', x: steps, y: records.map((r) => r.blocks.find((b) => b.name === 'full')?.trace ?? Number.NaN), dashed: true }],
    });
  }
  return { ...(options.title ? { title: options.title } : {}), columns: options.columns ?? 3, panels };
}
