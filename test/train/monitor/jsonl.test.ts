/**
 * JSON lines: one object per line, non-finite numbers → null, typed arrays →
 * arrays, files truncated or appended, parse errors naming the line.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { JsonlWriter, parseJsonl, readJsonl, toJsonLine, writeTextFile } from '../../../src/train/monitor/jsonl';

describe('JSON lines', () => {
  it('toJsonLine: one line, NaN/Infinity → null, Float64Array → array', () => {
    const line = toJsonLine({ a: Number.NaN, b: [1, Number.POSITIVE_INFINITY], c: Float64Array.from([0.5, 2]), d: 'x\ny' });
    expect(line.includes('\n')).toBe(false);
    expect(JSON.parse(line)).toEqual({ a: null, b: [1, null], c: [0.5, 2], d: 'x\ny' });
  });

  it('JsonlWriter: sink and file (truncated, or appended), round trip with readJsonl', () => {
    const lines: string[] = [];
    const w = new JsonlWriter((l) => lines.push(l));
    w.write({ step: 0 });
    w.write({ step: 1, v: [1, 2] });
    expect(w.count).toBe(2);
    expect(lines).toEqual(['{"step":0}', '{"step":1,"v":[1,2]}']);
    const dir = mkdtempSync(join(tmpdir(), 'curvpack-jsonl-'));
    const file = join(dir, 'a', 'b', 'log.jsonl');
    const f1 = new JsonlWriter(file);
    f1.write({ i: 1 });
    f1.write({ i: 2 });
    expect(readJsonl(file)).toEqual([{ i: 1 }, { i: 2 }]);
    new JsonlWriter(file, { append: true }).write({ i: 3 });
    expect(readJsonl(file)).toEqual([{ i: 1 }, { i: 2 }, { i: 3 }]);
    new JsonlWriter(file).write({ i: 4 });
    expect(readFileSync(file, 'utf8')).toBe('{"i":4}\n');
    writeTextFile(join(dir, 'c', 'x.svg'), '<svg/>');
    expect(readFileSync(join(dir, 'c', 'x.svg'), 'utf8')).toBe('<svg/>');
  });

  it('errors: non-object lines, bad targets, invalid JSON names the line', () => {
    const w = new JsonlWriter(() => undefined);
    expect(() => w.write([1] as never)).toThrow(/must be a JSON object, got an array/);
    expect(() => w.write(null as never)).toThrow(/must be a JSON object/);
    expect(() => new JsonlWriter(3 as never)).toThrow(/file path or a function/);
    expect(() => parseJsonl('{"a":1}\n\n{oops}\n')).toThrow(/line 3 is not valid JSON/);
    expect(parseJsonl('{"a":1}\n\n{"b":2}\n')).toEqual([{ a: 1 }, { b: 2 }]);
  });
});
