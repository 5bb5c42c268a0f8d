/* Dynamically quantised int8 linear layers for inference (PyTorch's quantize_dynamic, ONNX Runtime's
 * MatMulInteger): weights quantised once per output row to int8 (symmetric, scale max|w|/127),
 * activations per row at every call (symmetric, scale max|x|/127, stored as u8 = q + 128), int32
 * accumulation, then y = s_x·s_w·(Σ u·w − 128·Σ w) + bias. The u8 offset is what AVX512-VNNI's
 * vpdpbusd needs (u8 × s8, four products summed per int32 lane, no saturation).
 *
 * Packed weight layout (one buffer, so tfjs can own it as an int32 tensor):
 *   [np/16][kp/4][16][4] int8 weights (16 outputs × 4 inputs per 64-byte vector; padding is 0),
 *   then np float scales, then np int32 row sums (np = n rounded up to 32, kp = k rounded up to 4).
 * The integer sums are exact, so the VNNI and portable kernels differ only in the float epilogue's rounding (FMA contraction). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "pool.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define VL_X86 1
#endif

#define OUT_BLOCK 32 /* outputs per micro-kernel call: two vectors of 16 int32 */
#define ROW_BLOCK 8  /* activation rows per micro-kernel call */
#define ROW_CHUNK 256 /* rows whose u8 activations stay in L2 while every output block streams past */
#define K_SLICE 1024  /* inputs per pass: a 32-output block's weights (32 KB) stay in L1 across the chunk's rows */

static int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

int64_t vl_int8_packed_bytes(int64_t n, int64_t k) {
  int64_t np = round_up(n, OUT_BLOCK), kp = round_up(k, 4);
  return np * kp + 8 * np;
}

typedef struct {
  int64_t n, k, np, kp;
  const int8_t *w;
  const float *scale;
  const int32_t *rowsum;
} packed_view;

static packed_view view_of(const uint8_t *packed, int64_t n, int64_t k) {
  packed_view p = {n, k, round_up(n, OUT_BLOCK), round_up(k, 4), NULL, NULL, NULL};
  p.w = (const int8_t *)packed;
  p.scale = (const float *)(packed + p.np * p.kp);
  p.rowsum = (const int32_t *)(packed + p.np * p.kp + 4 * p.np);
  return p;
}

typedef struct {
  const float *w;
  int64_t n, k, np, kp;
  uint8_t *packed;
} pack_ctx;

/* Rows [16·task, 16·task + 16): one packed block, so tasks write disjoint bytes. */
static void pack_task(void *ctx_, int task) {
  const pack_ctx *c = (const pack_ctx *)ctx_;
  int8_t *q = (int8_t *)c->packed;
  float *scale = (float *)(c->packed + c->np * c->kp);
  int32_t *rowsum = (int32_t *)(c->packed + c->np * c->kp + 4 * c->np);
  int64_t end = (int64_t)task * 16 + 16 < c->n ? (int64_t)task * 16 + 16 : c->n;
  for (int64_t r = (int64_t)task * 16; r < end; r++) {
    const float *row = c->w + r * c->k;
    float amax = 0.f;
    for (int64_t i = 0; i < c->k; i++) amax = fmaxf(amax, fabsf(row[i]));
    float s = amax / 127.f;
    int32_t sum = 0;
    int8_t *block = q + (r / 16) * c->kp * 16 + (r % 16) * 4;
    for (int64_t i = 0; s > 0.f && i < c->k; i++) {
      float v = nearbyintf(row[i] / s);
      int32_t iv = v > 127.f ? 127 : v < -127.f ? -127 : (int32_t)v;
      block[(i / 4) * 64 + (i % 4)] = (int8_t)iv;
      sum += iv;
    }
    scale[r] = s;
    rowsum[r] = sum;
  }
}

void vl_int8_pack(const float *w, int64_t n, int64_t k, uint8_t *packed) {
  pack_ctx c = {w, n, k, round_up(n, OUT_BLOCK), round_up(k, 4), packed};
  memset(packed, 0, (size_t)vl_int8_packed_bytes(n, k));
  vl_parallel_for(pack_task, &c, (int)((n + 15) / 16));
}

/* ---- activations: one row to u8 (q + 128) and its scale ---- */

static void quantize_row(const float *x, int64_t k, int64_t kp, uint8_t *u, float *scale) {
  float amax = 0.f;
  for (int64_t c = 0; c < k; c++) amax = fmaxf(amax, fabsf(x[c]));
  float s = amax / 127.f;
  *scale = s;
  if (s > 0.f) {
    for (int64_t c = 0; c < k; c++) {
      float v = nearbyintf(x[c] / s);
      v = v > 127.f ? 127.f : v < -127.f ? -127.f : v;
      u[c] = (uint8_t)((int32_t)v + 128);
    }
  } else {
    memset(u, 128, (size_t)k);
  }
  memset(u + k, 128, (size_t)(kp - k)); /* padded weights are 0: any value works, 128 keeps it tidy */
}

/* ---- the output epilogue, shared by both kernels so they round identically ---- */

static inline float dequantize(int32_t acc, int32_t rowsum, float sx, float sw, float bias) {
  float scale = sx * sw;
  float dot = (float)(acc - 128 * rowsum);
  return dot * scale + bias;
}

/* ---- portable kernel ---- */

/* A slice of the inputs for one micro-kernel call: steps [k4a, k4b) of 4 inputs. Partial int32 sums of
 * `rows` × 32 outputs carry over in `acc` between slices; the first slice starts from 0, the last one
 * writes the outputs. (Slicing keeps a block's weights in L1 when the inputs are many: K = 3072.) */
typedef struct {
  int64_t k4a, k4b;
  int32_t *acc;
  int first, last;
} k_slice;

static void block_portable(const packed_view *p, const uint8_t *u, const float *sx, int rows, int64_t nb, const float *bias, float *y,
                           const k_slice *ks) {
  for (int r = 0; r < rows; r++) {
    int32_t *acc = ks->acc + r * OUT_BLOCK;
    if (ks->first) memset(acc, 0, OUT_BLOCK * sizeof(int32_t));
    const uint8_t *a = u + r * p->kp;
    for (int half = 0; half < 2; half++) {
      const int8_t *w = p->w + (nb * 2 + half) * p->kp * 16;
      for (int64_t k4 = ks->k4a; k4 < ks->k4b; k4++) {
        const uint8_t *ak = a + 4 * k4;
        const int8_t *wk = w + 64 * k4;
        for (int j = 0; j < 16; j++) {
          acc[half * 16 + j] += ak[0] * wk[4 * j] + ak[1] * wk[4 * j + 1] + ak[2] * wk[4 * j + 2] + ak[3] * wk[4 * j + 3];
        }
      }
    }
    if (!ks->last) continue;
    for (int j = 0; j < OUT_BLOCK; j++) {
      int64_t col = nb * OUT_BLOCK + j;
      if (col >= p->n) break;
      y[r * p->n + col] = dequantize(acc[j], p->rowsum[col], sx[r], p->scale[col], bias ? bias[col] : 0.f);
    }
  }
}

#ifdef VL_X86
#define VL_VNNI __attribute__((target("avx512f,avx512bw,avx512vnni")))

/* Writes one row's 32 outputs (16 per accumulator) with the shared epilogue's arithmetic. */
VL_VNNI static inline void store_vnni(const packed_view *p, __m512i acc0, __m512i acc1, float sx, int64_t nb, const float *bias, float *yrow) {
  const __m512i accs[2] = {acc0, acc1};
  for (int half = 0; half < 2; half++) {
    int64_t col = nb * OUT_BLOCK + half * 16;
    if (col >= p->n) break;
    int64_t left = p->n - col;
    __mmask16 keep = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
    __m512i offset = _mm512_slli_epi32(_mm512_maskz_loadu_epi32(keep, p->rowsum + col), 7); /* 128·Σw */
    __m512 scale = _mm512_mul_ps(_mm512_set1_ps(sx), _mm512_maskz_loadu_ps(keep, p->scale + col));
    __m512 b = bias ? _mm512_maskz_loadu_ps(keep, bias + col) : _mm512_setzero_ps();
    __m512 dot = _mm512_cvtepi32_ps(_mm512_sub_epi32(accs[half], offset));
    _mm512_mask_storeu_ps(yrow + col, keep, _mm512_add_ps(_mm512_mul_ps(dot, scale), b));
  }
}

static inline int32_t load4(const uint8_t *src) {
  int32_t v;
  memcpy(&v, src, 4);
  return v;
}

/* R rows × 32 outputs with named accumulators (an array of vectors makes GCC shuffle them through
 * the stack every step). */
#define VL_ACC(r)                                                                                 \
  __m512i c##r##a = ks->first ? _mm512_setzero_si512() : _mm512_loadu_si512(ks->acc + (r) * OUT_BLOCK), \
          c##r##b = ks->first ? _mm512_setzero_si512() : _mm512_loadu_si512(ks->acc + (r) * OUT_BLOCK + 16);
#define VL_DOT(r)                                                   \
  {                                                                 \
    __m512i av = _mm512_set1_epi32(load4(u + (r) * kp + 4 * k4));   \
    c##r##a = _mm512_dpbusd_epi32(c##r##a, av, b0);                 \
    c##r##b = _mm512_dpbusd_epi32(c##r##b, av, b1);                 \
  }
#define VL_OUT(r)                                                    \
  if (ks->last)                                                      \
    store_vnni(p, c##r##a, c##r##b, sx[r], nb, bias, y + (r) * p->n); \
  else {                                                             \
    _mm512_storeu_si512(ks->acc + (r) * OUT_BLOCK, c##r##a);          \
    _mm512_storeu_si512(ks->acc + (r) * OUT_BLOCK + 16, c##r##b);     \
  }
#define VL_KERNEL(NAME, ACCS, DOTS, OUTS)                                                                                   \
  VL_VNNI static void NAME(const packed_view *p, const uint8_t *u, const float *sx, int64_t nb, const float *bias, float *y,     \
                           const k_slice *ks) {                                                                                \
    const int64_t kp = p->kp;                                                                                                  \
    const int8_t *w0 = p->w + (nb * 2) * kp * 16, *w1 = w0 + kp * 16;                                                          \
    ACCS                                                                                                                       \
    for (int64_t k4 = ks->k4a; k4 < ks->k4b; k4++) {                                                                           \
      __m512i b0 = _mm512_loadu_si512((const void *)(w0 + 64 * k4));                                                          \
      __m512i b1 = _mm512_loadu_si512((const void *)(w1 + 64 * k4));                                                          \
      DOTS                                                                                                                     \
    }                                                                                                                          \
    OUTS                                                                                                                       \
  }

VL_KERNEL(vnni_rows8, VL_ACC(0) VL_ACC(1) VL_ACC(2) VL_ACC(3) VL_ACC(4) VL_ACC(5) VL_ACC(6) VL_ACC(7),
          VL_DOT(0) VL_DOT(1) VL_DOT(2) VL_DOT(3) VL_DOT(4) VL_DOT(5) VL_DOT(6) VL_DOT(7),
          VL_OUT(0) VL_OUT(1) VL_OUT(2) VL_OUT(3) VL_OUT(4) VL_OUT(5) VL_OUT(6) VL_OUT(7))
VL_KERNEL(vnni_rows4, VL_ACC(0) VL_ACC(1) VL_ACC(2) VL_ACC(3), VL_DOT(0) VL_DOT(1) VL_DOT(2) VL_DOT(3),
          VL_OUT(0) VL_OUT(1) VL_OUT(2) VL_OUT(3))
VL_KERNEL(vnni_rows2, VL_ACC(0) VL_ACC(1), VL_DOT(0) VL_DOT(1), VL_OUT(0) VL_OUT(1))
VL_KERNEL(vnni_rows1, VL_ACC(0), VL_DOT(0), VL_OUT(0))

/* Up to ROW_BLOCK rows as 8 + 4 + 2 + 1. */
VL_VNNI static void block_vnni(const packed_view *p, const uint8_t *u, const float *sx, int rows, int64_t nb, const float *bias, float *y,
                               const k_slice *ks) {
  int r = 0;
  k_slice part = *ks;
  if (rows - r >= 8) vnni_rows8(p, u, sx, nb, bias, y, &part), r += 8;
  part.acc = ks->acc + r * OUT_BLOCK;
  if (rows - r >= 4) vnni_rows4(p, u + r * p->kp, sx + r, nb, bias, y + r * p->n, &part), r += 4;
  part.acc = ks->acc + r * OUT_BLOCK;
  if (rows - r >= 2) vnni_rows2(p, u + r * p->kp, sx + r, nb, bias, y + r * p->n, &part), r += 2;
  part.acc = ks->acc + r * OUT_BLOCK;
  if (rows - r >= 1) vnni_rows1(p, u + r * p->kp, sx + r, nb, bias, y + r * p->n, &part);
}
#endif

typedef void (*block_fn)(const packed_view *, const uint8_t *, const float *, int, int64_t, const float *, float *, const k_slice *);

static block_fn chosen_block = block_portable;
static const char *chosen_name = "portable C";

void vl_int8_init(void) {
#ifdef VL_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni")) {
    chosen_block = block_vnni;
    chosen_name = "avx512-vnni";
  }
#endif
  if (getenv("VL_ACCEL_INT8_PORTABLE")) {
    chosen_block = block_portable;
    chosen_name = "portable C";
  }
}

const char *vl_int8_kernel(void) { return chosen_name; }

/* ---- the driver: quantise activations, then (row chunk × output-block group) tasks ---- */

typedef struct {
  const vl_int8_linear_args *a;
  packed_view p;
  uint8_t *u;
  float *sx;
  int64_t chunks, groups, blocks;
} linear_ctx;

static void quantize_task(void *ctx_, int task) {
  linear_ctx *c = (linear_ctx *)ctx_;
  int64_t lo = task * ROW_CHUNK, hi = lo + ROW_CHUNK < c->a->m ? lo + ROW_CHUNK : c->a->m;
  for (int64_t r = lo; r < hi; r++) quantize_row(c->a->x + r * c->p.k, c->p.k, c->p.kp, c->u + r * c->p.kp, c->sx + r);
}

static void gemm_task(void *ctx_, int task) {
  linear_ctx *c = (linear_ctx *)ctx_;
  int64_t chunk = task / c->groups, group = task % c->groups;
  int64_t r0 = chunk * ROW_CHUNK, r1 = r0 + ROW_CHUNK < c->a->m ? r0 + ROW_CHUNK : c->a->m;
  int64_t b0 = group * c->blocks / c->groups, b1 = (group + 1) * c->blocks / c->groups;
  int32_t acc[ROW_CHUNK * OUT_BLOCK]; /* partial sums of the chunk's rows between input slices (32 KB) */
  const int64_t steps = c->p.kp / 4;
  for (int64_t nb = b0; nb < b1; nb++) {
    for (int64_t k4 = 0; k4 < steps; k4 += K_SLICE / 4) {
      k_slice ks = {k4, k4 + K_SLICE / 4 < steps ? k4 + K_SLICE / 4 : steps, NULL, k4 == 0, k4 + K_SLICE / 4 >= steps};
      for (int64_t r = r0; r < r1; r += ROW_BLOCK) {
        int rows = (int)(r1 - r < ROW_BLOCK ? r1 - r : ROW_BLOCK);
        ks.acc = acc + (r - r0) * OUT_BLOCK;
        chosen_block(&c->p, c->u + r * c->p.kp, c->sx + r, rows, nb, c->a->bias, c->a->y + r * c->p.n, &ks);
      }
    }
  }
}

int vl_int8_linear(const vl_int8_linear_args *a) {
  linear_ctx c;
  c.a = a;
  c.p = view_of(a->packed, a->n, a->k);
  if (a->m == 0 || a->n == 0) return 0;
  c.u = (uint8_t *)malloc((size_t)(a->m * c.p.kp));
  c.sx = (float *)malloc((size_t)a->m * sizeof(float));
  if (!c.u || !c.sx) {
    free(c.u);
    free(c.sx);
    return -1;
  }
  c.chunks = (a->m + ROW_CHUNK - 1) / ROW_CHUNK;
  c.blocks = c.p.np / OUT_BLOCK;
  /* Enough tasks for every thread: split the outputs when there are few row chunks (decoding). */
  int64_t want = 2 * vl_pool_threads();
  c.groups = c.chunks >= want ? 1 : (want + c.chunks - 1) / c.chunks;
  if (c.groups > c.blocks) c.groups = c.blocks;
  vl_parallel_for(quantize_task, &c, (int)c.chunks);
  vl_parallel_for(gemm_task, &c, (int)(c.chunks * c.groups));
  free(c.u);
  free(c.sx);
  return 0;
}
