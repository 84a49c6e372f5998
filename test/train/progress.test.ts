/** The progress line: only on TTYs, throttled, rewritten in place, clipped to the terminal width. */
import { describe, expect, it } from 'vitest';
import { ProgressLine, resolveProgress } from '../../src/train/progress';

function stream(isTTY: boolean, columns?: number) {
  return { isTTY, columns, out: [] as string[], write(s: string) { this.out.push(s); return true; } };
}

describe('ProgressLine', () => {
  it('rewrites the line at most every interval, ends with a newline', () => {
    const s = stream(true);
    let now = 0;
    const p = new ProgressLine(s, 100, () => now);
    p.update('a');
    now = 50;
    p.update('b'); // throttled
    p.update('c', true); // forced
    now = 200;
    p.update('d');
    p.end('done');
    expect(s.out).toEqual(['\r\x1b[2Ka', '\r\x1b[2Kc', '\r\x1b[2Kd', '\r\x1b[2Kdone\n']);
  });

  it('clips to the terminal width', () => {
    const s = stream(true, 6);
    new ProgressLine(s).update('0123456789');
    expect(s.out).toEqual(['\r\x1b[2K01234']);
  });

  it('is silent unless the stream is a TTY', () => {
    const pipe = stream(false);
    const p = new ProgressLine(resolveProgress(pipe));
    expect(p.enabled).toBe(false);
    p.update('x');
    p.end('y');
    expect(pipe.out).toEqual([]);
    expect(resolveProgress(false)).toBeUndefined();
    expect(() => resolveProgress(3 as unknown as boolean)).toThrow(/option 'progress' must be/);
    // 'auto' follows process.stdout (not a TTY under the test runner unless run in a terminal).
    expect(resolveProgress('auto')).toBe(process.stdout.isTTY ? process.stdout : undefined);
  });
});
