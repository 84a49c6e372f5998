/**
 * A one-line progress display for terminals: rewritten in place (`\r`),
 * throttled, and silent when the stream is not a TTY (logs, CI, browsers).
 */

/** The part of a writable stream the progress line uses (process.stdout fits). */
export interface ProgressStream {
  readonly isTTY?: boolean;
  readonly columns?: number;
  write(text: string): unknown;
}

/** process.stdout when it is a terminal, else undefined (no progress). */
export function defaultProgressStream(): ProgressStream | undefined {
  const proc = (globalThis as { process?: { stdout?: ProgressStream } }).process;
  const out = proc?.stdout;
  return out !== undefined && out.isTTY === true ? out : undefined;
}

/** `true`/`'auto'`: stdout if it is a TTY; `false`: none; a stream: that stream if it is a TTY. */
export type ProgressOption = boolean | 'auto' | ProgressStream;

export function resolveProgress(option: ProgressOption | undefined): ProgressStream | undefined {
  if (option === false) return undefined;
  if (option === undefined || option === true || option === 'auto') return defaultProgressStream();
  if (typeof option !== 'object' || typeof option.write !== 'function') {
    throw new Error(`option 'progress' must be true, false, 'auto' or a stream with write(text), got ${String(option)}.`);
  }
  return option.isTTY === true ? option : undefined;
}

export class ProgressLine {
  private last = 0;
  private shown = false;

  constructor(
    private readonly stream: ProgressStream | undefined,
    private readonly minIntervalMs = 100,
    private readonly now: () => number = () => Date.now(),
  ) {}

  get enabled(): boolean {
    return this.stream !== undefined;
  }

  private fit(text: string): string {
    const cols = this.stream?.columns;
    return cols !== undefined && cols > 1 && text.length >= cols ? text.slice(0, cols - 1) : text;
  }

  /** Rewrite the line (at most every `minIntervalMs` unless `force`). */
  update(text: string, force = false): void {
    if (this.stream === undefined) return;
    const t = this.now();
    if (!force && this.shown && t - this.last < this.minIntervalMs) return;
    this.last = t;
    this.shown = true;
    this.stream.write(`\r\x1b[2K${this.fit(text)}`);
  }

  /** Write the final text of this line and move to the next one. */
  end(text: string): void {
    if (this.stream === undefined) return;
    this.stream.write(`\r\x1b[2K${this.fit(text)}\n`);
    this.shown = false;
  }
}
