// The pickle interpreter against CPython's pickler: the same data written at protocols 0–5 (by the fixture
// generator) reads back to the same values, with shared objects still shared.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PickleCallable, PyDict, PySet, PyTuple, unpickle, type PyValue } from '../pickle.js';
import { findTorchGlobal } from '../torch-pickle.js';
import { catchVlError } from './helpers.js';
import { PickleWriter, TORCH_FIXTURES } from './torch-helpers.js';

type Tagged = null | boolean | number | string | Tagged[] | { [tag: string]: Tagged };

/** The generator's tagged JSON form (see make-fixtures.py `tagged`), with floats as plain numbers. */
function toTagged(v: PyValue): Tagged {
  if (v === null || typeof v === 'boolean' || typeof v === 'string' || typeof v === 'number') return v;
  if (typeof v === 'bigint') return { bigint: v.toString() };
  if (v instanceof Uint8Array) return { bytes: Buffer.from(v).toString('hex') };
  if (Array.isArray(v)) return v.map(toTagged);
  if (v instanceof PyTuple) return { tuple: v.items.map(toTagged) };
  if (v instanceof PySet) return { set: v.items.map(toTagged).sort() };
  if (v instanceof PyDict) return { dict: [...v.map].map(([k, x]) => [toTagged(k), toTagged(x)]) };
  throw new Error(`unexpected value ${String(v)}`);
}

function floatsToNumbers(v: Tagged): Tagged {
  if (Array.isArray(v)) return v.map(floatsToNumbers);
  if (v !== null && typeof v === 'object') {
    if (typeof v['float'] === 'string') return v['float'] === 'inf' ? Infinity : v['float'] === '-inf' ? -Infinity : Number(v['float']);
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, floatsToNumbers(x)]));
  }
  return v;
}

const hooks = { findGlobal: findTorchGlobal };

describe('pickle interpreter', () => {
  for (let protocol = 0; protocol <= 5; protocol++) {
    it(`reads CPython protocol ${protocol} to the same values`, async () => {
      const bytes = new Uint8Array(await readFile(join(TORCH_FIXTURES, 'pickles', `protocol-${protocol}.pkl`)));
      const want = floatsToNumbers(JSON.parse(await readFile(join(TORCH_FIXTURES, 'pickles', 'expected.json'), 'utf8')) as Tagged);
      const { value, placeholders } = unpickle(bytes, hooks, { subject: `protocol-${protocol}.pkl` });
      expect(toTagged(value)).toEqual(want);
      expect(placeholders.size).toBe(0);
      const dict = value as PyDict;
      expect(dict.map.get('shared')).toBe(dict.map.get('shared2'));
    });
  }

  it('allow-listed globals are plain functions; their argument checks fail as CHECKPOINT_INVALID', () => {
    expect(findTorchGlobal('collections', 'OrderedDict')).toBeInstanceOf(PickleCallable);
    expect(findTorchGlobal('argparse', 'Namespace')).toBeUndefined();
    const pkl = new PickleWriter().global('torch._utils', '_rebuild_tensor_v2').mark().str('not a storage').int(0).tuple().reduce().stop();
    const err = catchVlError(() => unpickle(pkl, hooks, { subject: 'x.pkl' }), 'CHECKPOINT_INVALID');
    expect(err.message).toContain('the storage argument is a str');
  });

  it('stack underflow, a missing MARK, an unknown memo slot and a missing STOP are CHECKPOINT_INVALID', () => {
    for (const [bytes, text] of [
      [[0x80, 2, 0x2e], 'pops an empty stack'],
      [[0x80, 2, 0x74, 0x2e], 'needs a MARK'],
      [[0x80, 2, 0x68, 9, 0x2e], 'memo entry 9 was never stored'],
      [[0x80, 2, 0x4e], 'ends without STOP'],
      [[0x80, 2, 0x58, 0xff, 0xff, 0xff, 0x7f], 'needs 2147483647 bytes'],
      [[0x80, 9], 'protocol 9'],
    ] as const) {
      const code = text === 'protocol 9' ? 'CHECKPOINT_UNSUPPORTED' : 'CHECKPOINT_INVALID';
      const err = catchVlError(() => unpickle(Uint8Array.from(bytes), hooks, { subject: 'x.pkl' }), code);
      expect(err.message).toContain(text);
      expect(err.subject).toBe('x.pkl');
    }
  });
});
