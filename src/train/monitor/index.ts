/** Monitoring: curvature statistics per step, JSON lines, SVG plots. */
export { CurvatureMonitor } from './monitor';
export type { CurvatureMonitorOptions, MonitorBlocks, MonitorBlock, MonitorRecord, DiagonalSummary, MonitorStep } from './monitor';
export { JsonlWriter, fileSink, toJsonLine, parseJsonl, readJsonl, writeTextFile } from './jsonl';
export type { JsonlSink } from './jsonl';
export { linePlotSvg, figureSvg } from './svgPlot';
export type { PlotSeries, LinePlotOptions, FigureOptions } from './svgPlot';
export { monitorFigure } from './figures';
export type { MonitorFigureOptions } from './figures';
