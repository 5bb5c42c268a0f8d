// Host-side inputs and references for backend parity tests: seeded values as plain arrays (tensors cannot cross
// backends, so each backend builds its own from the same bits) and a float64 matmul reference.

export interface HostArray {
  values: Float32Array;
  shape: number[];
}

/** Uniform values in [lo, hi) from a small LCG, so both backends get bit-identical inputs. */
export function seeded(shape: number[], seed: number, lo = -1, hi = 1): HostArray {
  const size = shape.reduce((a, b) => a * b, 1);
  const values = new Float32Array(size);
  let s = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    values[i] = lo + ((s >>> 8) / 16777216) * (hi - lo);
  }
  return { values, shape };
}

/** float64 batched matmul with numpy broadcasting of the batch dims (tfjs cpu gets mixed broadcasts wrong). */
export function referenceMatMul(a: HostArray, b: HostArray, transposeA: boolean, transposeB: boolean): number[] {
  const ra = a.shape.length;
  const rb = b.shape.length;
  const m = a.shape[transposeA ? ra - 1 : ra - 2] as number;
  const k = a.shape[transposeA ? ra - 2 : ra - 1] as number;
  const n = b.shape[transposeB ? rb - 2 : rb - 1] as number;
  const batchA = a.shape.slice(0, -2);
  const batchB = b.shape.slice(0, -2);
  const rank = Math.max(batchA.length, batchB.length);
  const padA = [...Array<number>(rank - batchA.length).fill(1), ...batchA];
  const padB = [...Array<number>(rank - batchB.length).fill(1), ...batchB];
  const outBatch = padA.map((d, i) => Math.max(d, padB[i] as number));
  const total = outBatch.reduce((x, y) => x * y, 1);
  const out: number[] = [];
  for (let flat = 0; flat < total; flat++) {
    let rest = flat;
    let ia = 0;
    let ib = 0;
    let strideA = 1;
    let strideB = 1;
    for (let d = rank - 1; d >= 0; d--) {
      const size = outBatch[d] as number;
      const idx = rest % size;
      rest = Math.floor(rest / size);
      const da = padA[d] as number;
      const db = padB[d] as number;
      ia += (da === 1 ? 0 : idx) * strideA;
      ib += (db === 1 ? 0 : idx) * strideB;
      strideA *= da;
      strideB *= db;
    }
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let p = 0; p < k; p++) {
          const av = a.values[ia * m * k + (transposeA ? p * m + i : i * k + p)] as number;
          const bv = b.values[ib * k * n + (transposeB ? j * k + p : p * n + j)] as number;
          s += av * bv;
        }
        out.push(s);
      }
    }
  }
  return out;
}
