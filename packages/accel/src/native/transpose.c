/* Transpose of a tensor of 4-byte elements (float32, int32), any rank up to VL_TRANSPOSE_MAX_RANK.
 * The JS side has already dropped size-1 dims and merged dims that stay adjacent, so the two cases
 * left are:
 *   - the innermost input dim stays innermost: the output is a sequence of contiguous runs of the
 *     input, copied with memcpy (the ViT patch embedding, [B,C,gh,P,gw,P] → [B,gh,gw,C,P,P], and
 *     attention's head splits and merges, [B,T,H,dh] ↔ [B,H,T,dh]);
 *   - it moves: a 2-D transpose between the input's innermost dim and the output's, for every
 *     index of the other dims, done in cache-sized tiles of 8×8 blocks (AVX2 in-register
 *     transposes where the CPU has AVX2, scalar otherwise).
 * Large tensors (≥ 4 MB) are split over the thread pool; the rest (decoding's many small calls)
 * run on the calling thread, where waking a worker would cost more than the copy. */
#include <stdint.h>
#include <string.h>

#include "kernels.h"
#include "pool.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* Below this many elements (4 MB) the calling thread alone is faster: a copy is bound by memory, not
 * by compute, and waking a worker costs tens of µs. Measured on 2 shared cores: a [8,30,12,64] head
 * split took 0.23 ms split over the pool, 0.03 ms on one thread; 14 MB copies were no faster on two
 * threads, though on an idle machine with more cores a single thread does not saturate memory. */
#define MIN_PARALLEL_ELEMENTS (1 << 20)
/* Side of the square tiles of the 2-D case, in elements: two 64×64 float tiles (32 KB) sit in L1/L2. */
#define TILE 64

static int use_avx2 = 0;

void vl_transpose_init(void) {
#if defined(__x86_64__)
  __builtin_cpu_init();
  use_avx2 = __builtin_cpu_supports("avx2");
#endif
}

typedef struct {
  int rank; /* outer dims (all but the ones the inner copy handles) */
  int64_t size[VL_TRANSPOSE_MAX_RANK];
  int64_t in_stride[VL_TRANSPOSE_MAX_RANK];
  int64_t out_stride[VL_TRANSPOSE_MAX_RANK];
} outer_dims;

/* Input and output offsets of outer index `k` (row-major over the outer dims). */
static void outer_offsets(const outer_dims *o, int64_t k, int64_t *idx, int64_t *in_off, int64_t *out_off) {
  *in_off = 0;
  *out_off = 0;
  for (int d = o->rank - 1; d >= 0; d--) {
    idx[d] = k % o->size[d];
    k /= o->size[d];
    *in_off += idx[d] * o->in_stride[d];
    *out_off += idx[d] * o->out_stride[d];
  }
}

/* Advances the outer index by one (odometer), keeping both offsets in step. */
static void outer_next(const outer_dims *o, int64_t *idx, int64_t *in_off, int64_t *out_off) {
  for (int d = o->rank - 1; d >= 0; d--) {
    if (++idx[d] < o->size[d]) {
      *in_off += o->in_stride[d];
      *out_off += o->out_stride[d];
      return;
    }
    idx[d] = 0;
    *in_off -= (o->size[d] - 1) * o->in_stride[d];
    *out_off -= (o->size[d] - 1) * o->out_stride[d];
  }
}

/* ---------- case 1: contiguous runs ---------- */

typedef struct {
  const uint32_t *x;
  uint32_t *y;
  outer_dims o;
  int64_t run; /* elements per contiguous run */
  int64_t runs;
  int ntasks;
} runs_job;

static void runs_task(void *ctx, int task) {
  const runs_job *j = (const runs_job *)ctx;
  const int64_t k0 = j->runs * task / j->ntasks, k1 = j->runs * (task + 1) / j->ntasks;
  if (k0 >= k1) return;
  int64_t idx[VL_TRANSPOSE_MAX_RANK], in_off, out_off;
  outer_offsets(&j->o, k0, idx, &in_off, &out_off);
  const int64_t run = j->run;
  const size_t bytes = (size_t)run * 4;
  for (int64_t k = k0; k < k1; k++) {
    if (run < 8) {
      for (int64_t e = 0; e < run; e++) j->y[out_off + e] = j->x[in_off + e];
    } else {
      memcpy(j->y + out_off, j->x + in_off, bytes);
    }
    outer_next(&j->o, idx, &in_off, &out_off);
  }
}

/* ---------- case 2: 2-D tiles ---------- */

/* out[u·out_ld + v] = in[v·in_ld + u] for u < nu, v < nv (a tile; nu, nv ≤ TILE). */
static void tile_scalar(const uint32_t *in, int64_t in_ld, uint32_t *out, int64_t out_ld, int64_t nv, int64_t nu) {
  for (int64_t v = 0; v < nv; v++) {
    const uint32_t *src = in + v * in_ld;
    for (int64_t u = 0; u < nu; u++) out[u * out_ld + v] = src[u];
  }
}

#if defined(__x86_64__)
/* The same with 8×8 blocks transposed in registers (unpack, shuffle, permute: 24 shuffles per 64
 * elements instead of 64 scalar strided stores); edges go to tile_scalar. */
__attribute__((target("avx2"))) static void tile_avx2(const uint32_t *in, int64_t in_ld, uint32_t *out, int64_t out_ld, int64_t nv,
                                                      int64_t nu) {
  const int64_t nv8 = nv & ~(int64_t)7, nu8 = nu & ~(int64_t)7;
  for (int64_t v = 0; v < nv8; v += 8) {
    for (int64_t u = 0; u < nu8; u += 8) {
      const float *s = (const float *)(in + v * in_ld + u);
      __m256 r0 = _mm256_loadu_ps(s), r1 = _mm256_loadu_ps(s + in_ld), r2 = _mm256_loadu_ps(s + 2 * in_ld),
             r3 = _mm256_loadu_ps(s + 3 * in_ld), r4 = _mm256_loadu_ps(s + 4 * in_ld), r5 = _mm256_loadu_ps(s + 5 * in_ld),
             r6 = _mm256_loadu_ps(s + 6 * in_ld), r7 = _mm256_loadu_ps(s + 7 * in_ld);
      __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1), t2 = _mm256_unpacklo_ps(r2, r3),
             t3 = _mm256_unpackhi_ps(r2, r3), t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
             t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
      r0 = _mm256_shuffle_ps(t0, t2, 0x44);
      r1 = _mm256_shuffle_ps(t0, t2, 0xEE);
      r2 = _mm256_shuffle_ps(t1, t3, 0x44);
      r3 = _mm256_shuffle_ps(t1, t3, 0xEE);
      r4 = _mm256_shuffle_ps(t4, t6, 0x44);
      r5 = _mm256_shuffle_ps(t4, t6, 0xEE);
      r6 = _mm256_shuffle_ps(t5, t7, 0x44);
      r7 = _mm256_shuffle_ps(t5, t7, 0xEE);
      float *d = (float *)(out + u * out_ld + v);
      /* Only moves and shuffles: the 32-bit patterns (NaN payloads, int32 values) pass through unchanged. */
      _mm256_storeu_ps(d, _mm256_permute2f128_ps(r0, r4, 0x20));
      _mm256_storeu_ps(d + out_ld, _mm256_permute2f128_ps(r1, r5, 0x20));
      _mm256_storeu_ps(d + 2 * out_ld, _mm256_permute2f128_ps(r2, r6, 0x20));
      _mm256_storeu_ps(d + 3 * out_ld, _mm256_permute2f128_ps(r3, r7, 0x20));
      _mm256_storeu_ps(d + 4 * out_ld, _mm256_permute2f128_ps(r0, r4, 0x31));
      _mm256_storeu_ps(d + 5 * out_ld, _mm256_permute2f128_ps(r1, r5, 0x31));
      _mm256_storeu_ps(d + 6 * out_ld, _mm256_permute2f128_ps(r2, r6, 0x31));
      _mm256_storeu_ps(d + 7 * out_ld, _mm256_permute2f128_ps(r3, r7, 0x31));
    }
  }
  if (nu8 < nu) tile_scalar(in + nu8, in_ld, out + nu8 * out_ld, out_ld, nv8, nu - nu8);
  if (nv8 < nv) tile_scalar(in + nv8 * in_ld, in_ld, out + nv8, out_ld, nv - nv8, nu);
}
#endif

typedef struct {
  const uint32_t *x;
  uint32_t *y;
  outer_dims o;
  int64_t nv, in_ld;  /* the output's innermost dim: size, input stride */
  int64_t nu, out_ld; /* the input's innermost dim: size, output stride */
  int64_t tiles_v, tiles_u, items;
  int ntasks;
} tiles_job;

static void tiles_task(void *ctx, int task) {
  const tiles_job *j = (const tiles_job *)ctx;
  const int64_t i0 = j->items * task / j->ntasks, i1 = j->items * (task + 1) / j->ntasks;
  const int64_t per_outer = j->tiles_v * j->tiles_u;
  for (int64_t i = i0; i < i1; i++) {
    int64_t idx[VL_TRANSPOSE_MAX_RANK], in_off, out_off;
    outer_offsets(&j->o, i / per_outer, idx, &in_off, &out_off);
    const int64_t t = i % per_outer;
    const int64_t v0 = (t / j->tiles_u) * TILE, u0 = (t % j->tiles_u) * TILE;
    const int64_t nv = j->nv - v0 < TILE ? j->nv - v0 : TILE, nu = j->nu - u0 < TILE ? j->nu - u0 : TILE;
    const uint32_t *in = j->x + in_off + v0 * j->in_ld + u0;
    uint32_t *out = j->y + out_off + u0 * j->out_ld + v0;
#if defined(__x86_64__)
    if (use_avx2) {
      tile_avx2(in, j->in_ld, out, j->out_ld, nv, nu);
      continue;
    }
#endif
    tile_scalar(in, j->in_ld, out, j->out_ld, nv, nu);
  }
}

static int task_count(int64_t n, int64_t items) {
  const int threads = vl_pool_threads();
  if (threads == 1 || n < MIN_PARALLEL_ELEMENTS || items < 2) return 1;
  /* A few tasks per thread, so a core slowed by another process does not hold up the rest. */
  const int64_t tasks = (int64_t)threads * 4;
  return (int)(tasks < items ? tasks : items);
}

void vl_transpose(const vl_transpose_args *a) {
  const int r = a->rank;
  int64_t in_stride[VL_TRANSPOSE_MAX_RANK], n = 1;
  for (int d = r - 1; d >= 0; d--) {
    in_stride[d] = n;
    n *= a->shape[d];
  }
  if (n == 0) return;
  /* Output dim i is input dim perm[i]: its size, input stride and (contiguous) output stride. */
  int64_t size[VL_TRANSPOSE_MAX_RANK], istr[VL_TRANSPOSE_MAX_RANK], ostr[VL_TRANSPOSE_MAX_RANK];
  int64_t s = 1;
  for (int i = r - 1; i >= 0; i--) {
    size[i] = a->shape[a->perm[i]];
    istr[i] = in_stride[a->perm[i]];
    ostr[i] = s;
    s *= size[i];
  }
  if (r == 0 || a->perm[r - 1] == r - 1) {
    runs_job j;
    memset(&j, 0, sizeof j);
    j.x = (const uint32_t *)a->x;
    j.y = (uint32_t *)a->y;
    j.run = r == 0 ? 1 : size[r - 1];
    j.runs = n / j.run;
    j.o.rank = r == 0 ? 0 : r - 1;
    for (int i = 0; i < j.o.rank; i++) {
      j.o.size[i] = size[i];
      j.o.in_stride[i] = istr[i];
      j.o.out_stride[i] = ostr[i];
    }
    j.ntasks = task_count(n, j.runs);
    vl_parallel_for(runs_task, &j, j.ntasks);
    return;
  }
  tiles_job j;
  memset(&j, 0, sizeof j);
  j.x = (const uint32_t *)a->x;
  j.y = (uint32_t *)a->y;
  int q = 0; /* the output position of the input's innermost dim */
  while (a->perm[q] != r - 1) q++;
  j.nv = size[r - 1];
  j.in_ld = istr[r - 1];
  j.nu = size[q];
  j.out_ld = ostr[q];
  for (int i = 0; i < r - 1; i++) {
    if (i == q) continue;
    j.o.size[j.o.rank] = size[i];
    j.o.in_stride[j.o.rank] = istr[i];
    j.o.out_stride[j.o.rank] = ostr[i];
    j.o.rank++;
  }
  j.tiles_v = (j.nv + TILE - 1) / TILE;
  j.tiles_u = (j.nu + TILE - 1) / TILE;
  j.items = (n / (j.nv * j.nu)) * j.tiles_v * j.tiles_u;
  j.ntasks = task_count(n, j.items);
  vl_parallel_for(tiles_task, &j, j.ntasks);
}
