// The relative position indices on a 2×2 grid, written out by hand from the notes in
// fixtures/vlmo-official/README.md ("Relative position bias"), and the per-layer bias read off the table
// (column l·heads + h) for a depth ≠ heads table. The fixtures' own indices are compared exactly in parity.test.ts.
import * as tf from '@tensorflow/tfjs-core';
import { initRuntime, Rng } from '@vl/core';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  allNumRelativeDistance,
  fusionRelativePositionIndex,
  imageRelativePositionIndex,
  numRelativeDistance,
  relativePositionBias,
  textRelativePositionIndex,
} from '../relative-position.js';

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
});

const rows = (index: { size: number; data: Int32Array }) =>
  Array.from({ length: index.size }, (_, i) => [...index.data.slice(i * index.size, (i + 1) * index.size)]);

describe('relative position indices (grid 2, max_text_len_of_initckpt 4)', () => {
  it('table sizes: (2g−1)² + 3 image rows, 2M text rows, 2 cross rows; the released base table is 1126 rows', () => {
    expect(numRelativeDistance(2)).toBe(12);
    expect(allNumRelativeDistance(2, 4)).toBe(22);
    expect(allNumRelativeDistance(224 / 16, 196)).toBe(1126);
  });

  it('image: (Δrow + g − 1)(2g − 1) + Δcol + g − 1 between patches; CLS row 9, column 10, corner 11', () => {
    expect(rows(imageRelativePositionIndex(2))).toEqual([
      [11, 9, 9, 9, 9],
      [10, 4, 3, 1, 0],
      [10, 5, 4, 2, 1],
      [10, 7, 6, 4, 3],
      [10, 8, 7, 5, 4],
    ]);
  });

  it('text: (j − i) + M + numRel between tokens; [CLS] row all − 3, column all − 2, corner all − 1; shorter texts take the top-left block', () => {
    const four = textRelativePositionIndex(4, 2, 4);
    expect(rows(four)).toEqual([
      [21, 19, 19, 19],
      [20, 16, 17, 18],
      [20, 15, 16, 17],
      [20, 14, 15, 16],
    ]);
    expect(rows(textRelativePositionIndex(3, 2, 4))).toEqual(
      rows(four)
        .slice(0, 3)
        .map((r) => r.slice(0, 3)),
    );
  });

  it('fusion: [[text, numRel], [numRel + 1, image]], text first', () => {
    const fused = rows(fusionRelativePositionIndex(4, 2, 4));
    const text = rows(textRelativePositionIndex(4, 2, 4));
    const image = rows(imageRelativePositionIndex(2));
    expect(fused.length).toBe(9);
    for (let i = 0; i < 9; i++) {
      for (let j = 0; j < 9; j++) {
        const want = i < 4 && j < 4 ? text[i]![j] : i < 4 ? 12 : j < 4 ? 13 : image[i - 4]![j - 4];
        expect(fused[i]![j], `${i},${j}`).toBe(want);
      }
    }
  });
});

describe('relativePositionBias', () => {
  it('layer l, head h reads table column l·heads + h at the index (depth 3, heads 2)', () => {
    const depth = 3;
    const heads = 2;
    const index = fusionRelativePositionIndex(3, 2, 4); // 8 tokens
    const rowsN = allNumRelativeDistance(2, 4);
    const rng = new Rng(1);
    const values = Float32Array.from({ length: rowsN * depth * heads }, () => rng.normal());
    const table = tf.tensor2d(values, [rowsN, depth * heads]);
    const bias = relativePositionBias(table, index, depth, heads);
    expect(bias.length).toBe(depth);
    const n = index.size;
    for (let l = 0; l < depth; l++) {
      expect(bias[l]!.shape).toEqual([1, heads, n, n]);
      const got = bias[l]!.dataSync();
      for (let h = 0; h < heads; h++) {
        for (let i = 0; i < n; i++) {
          for (let j = 0; j < n; j++) {
            const want = values[index.data[i * n + j]! * depth * heads + l * heads + h]!;
            expect(got[(h * n + i) * n + j]).toBe(want);
          }
        }
      }
    }
    tf.dispose([table, ...bias]);
  });
});
