// Reference fp32 peak of this machine, measured in the same run as the bench: a tiny C loop of
// independent vector FMAs compiled with `cc -O3 -march=native`. Omitted when no compiler works.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';

export interface PeakMeasurement {
  /** GFLOP/s of one thread. */
  singleThreadGflops: number;
  /** GFLOP/s with one thread per core (what "the machine" can do). */
  allThreadsGflops: number;
  threads: number;
  method: string;
}

// 16 independent accumulators of 16 floats: enough in flight to cover FMA latency on two ports.
// vector_size(64) becomes one zmm FMA on AVX-512 and two ymm FMAs on AVX2; either way every
// accumulator update is a fused multiply-add (GNU C contracts a*b+c by default), kept in registers.
// The loop-carried chain cannot be folded without -ffast-math, and the sums are printed.
const FMA_SOURCE = String.raw`
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
typedef float v16 __attribute__((vector_size(64)));
#define ACC 16
static long iters;
static double sink[64];
static void *work(void *arg) {
  long id = (long)arg;
  v16 acc[ACC];
  v16 m, c;
  for (int l = 0; l < 16; l++) { m[l] = 0.999999f; c[l] = 1e-7f * (float)(id + 1); }
  for (int i = 0; i < ACC; i++) for (int l = 0; l < 16; l++) acc[i][l] = (float)(i + l) * 1e-3f;
  for (long it = 0; it < iters; it++) {
    for (int i = 0; i < ACC; i++) acc[i] = acc[i] * m + c;
  }
  double s = 0;
  for (int i = 0; i < ACC; i++) for (int l = 0; l < 16; l++) s += acc[i][l];
  sink[id % 64] = s;
  return 0;
}
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
int main(int argc, char **argv) {
  iters = atol(argv[1]);
  int threads = atoi(argv[2]);
  pthread_t th[256];
  double t0 = now();
  for (long i = 0; i < threads; i++) pthread_create(&th[i], 0, work, (void *)i);
  for (int i = 0; i < threads; i++) pthread_join(th[i], 0);
  double dt = now() - t0;
  double flops = (double)iters * ACC * 16 * 2 * threads;
  printf("%.3f %.6f\n", flops / dt / 1e9, sink[0]);
  return 0;
}
`;

function runBinary(binary: string, iterations: number, threads: number): number {
  const out = execFileSync(binary, [String(iterations), String(threads)], { encoding: 'utf8', timeout: 60_000 });
  const gflops = Number.parseFloat(out.trim().split(/\s+/)[0] ?? '');
  if (!Number.isFinite(gflops) || gflops <= 0) throw new Error(`unexpected peak output: ${out}`);
  return gflops;
}

/**
 * Compiles and runs the FMA loop (best of seven per thread count). `quick` runs ~10× shorter.
 * Returns null, with the reason in `onSkip`, when there is no working C compiler.
 */
export function measurePeak(quick: boolean, onSkip?: (reason: string) => void): PeakMeasurement | null {
  const dir = mkdtempSync(join(tmpdir(), 'vl-peak-'));
  try {
    const source = join(dir, 'fma.c');
    const binary = join(dir, 'fma');
    writeFileSync(source, FMA_SOURCE);
    execFileSync('cc', ['-O3', '-march=native', '-pthread', '-o', binary, source], { stdio: 'pipe', timeout: 60_000 });
    const iterations = quick ? 2_000_000 : 20_000_000;
    const threads = availableParallelism();
    // Short runs, best of seven: on a shared machine some run finds the cores free.
    const best = (n: number) => Math.max(...Array.from({ length: 7 }, () => runBinary(binary, iterations, n)));
    return {
      singleThreadGflops: best(1),
      allThreadsGflops: best(threads),
      threads,
      method: `C loop of 16×16-float vector FMAs, cc -O3 -march=native, best of 7, ${threads} thread(s)`,
    };
  } catch (err) {
    onSkip?.(`no reference peak: ${(err as Error).message.split('\n')[0]}`);
    return null;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The better of two measurements (e.g. taken before and after a bench), per figure. */
export function betterPeak(a: PeakMeasurement | null, b: PeakMeasurement | null): PeakMeasurement | null {
  if (!a || !b) return a ?? b;
  return {
    ...a,
    singleThreadGflops: Math.max(a.singleThreadGflops, b.singleThreadGflops),
    allThreadsGflops: Math.max(a.allThreadsGflops, b.allThreadsGflops),
    method: `${a.method}, measured before and after the bench`,
  };
}
