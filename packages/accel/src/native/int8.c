/* Dynamically quantised int8 linear layers for inference (PyTorch's quantize_dynamic, ONNX Runtime's
 * MatMulInteger): weights quantised once per output row to int8 (symmetric, scale max|w|/127),
 * activations per row at every call (symmetric, scale max|x|/127, stored as u8 = q + 128), int32
 * accumulation, then y = s_x·s_w·(Σ u·w − 128·Σ w) + bias. The u8 offset is what AVX512-VNNI's
 * vpdpbusd needs (u8 × s8, four products summed per int32 lane, no saturation).
 *
 * Packed weight layout (one buffer, so tfjs can own it as an int32 tensor):
 *   [np/16][kp/4][16][4] int8 weights (16 outputs × 4 inputs per 64-byte vector; padding is 0),
 *   then np float scales, then np int32 row sums (np = n rounded up to 32, kp = k rounded up to 4).
 * The integer sums are exact, so the kernels differ only in the float epilogue's rounding (FMA contraction); the AMX and VNNI
 * kernels share their epilogue and give identical outputs.
 *
 * The layout is also what AMX's tdpbusd reads as its B operand: 16 consecutive 64-byte rows of one 16-output block are a
 * 16 (inputs/4) × 64-byte tile, loaded in place with stride 64. So on CPUs with AMX-INT8 (Sapphire Rapids and later, once
 * Linux has granted the process the tile state) the same packed buffer feeds 16×16×64 tile products. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "pool.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define VL_X86 1
#endif
/* AMX intrinsics need GCC 11 / clang 12; the request for the tile state is Linux's arch_prctl. */
#if defined(VL_X86) && defined(__x86_64__) && defined(__linux__) && ((defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 11))
#include <sys/syscall.h>
#include <unistd.h>
#define VL_AMX 1
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

/* max |x| over a row, and 16 values rounded to int32 in [-127, 127] by the row's scale (IEEE division, round half to
 * even as nearbyintf in the default rounding mode): shared by weight packing and activation quantisation. */
static float absmax(const float *x, int64_t k) {
  float amax = 0.f;
  for (int64_t i = 0; i < k; i++) amax = fmaxf(amax, fabsf(x[i]));
  return amax;
}

#ifdef VL_X86
#define VL_AVX512 __attribute__((target("avx512f,avx512bw")))
VL_AVX512 static float absmax_avx512(const float *x, int64_t k) {
  __m512 vmax = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= k; i += 16) vmax = _mm512_max_ps(vmax, _mm512_abs_ps(_mm512_loadu_ps(x + i)));
  float amax = _mm512_reduce_max_ps(vmax);
  for (; i < k; i++) amax = fmaxf(amax, fabsf(x[i]));
  return amax;
}

/* x[i .. i+16) (masked past k) → int32 lanes; `keep` gets the lanes that exist. */
VL_AVX512 static inline __m512i quantize16_avx512(const float *x, int64_t i, int64_t k, float s, __mmask16 *keep) {
  int64_t left = k - i;
  *keep = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
  __m512 v = _mm512_roundscale_ps(_mm512_div_ps(_mm512_maskz_loadu_ps(*keep, x + i), _mm512_set1_ps(s)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  return _mm512_cvtps_epi32(_mm512_min_ps(_mm512_set1_ps(127.f), _mm512_max_ps(_mm512_set1_ps(-127.f), v)));
}
#endif

/* One weight row: its scale max|w|/127, its int8 values into its 4-byte column of the 16-row block (padding stays 0),
 * and their sum. */
static void pack_row(const float *row, int64_t k, int8_t *block, float *scale, int32_t *rowsum) {
  float s = absmax(row, k) / 127.f;
  int32_t sum = 0;
  for (int64_t i = 0; s > 0.f && i < k; i++) {
    float v = nearbyintf(row[i] / s);
    int32_t iv = v > 127.f ? 127 : v < -127.f ? -127 : (int32_t)v;
    block[(i / 4) * 64 + (i % 4)] = (int8_t)iv;
    sum += iv;
  }
  *scale = s;
  *rowsum = sum;
}

#ifdef VL_X86
/* pack_row with AVX-512: the same division and rounding, so the same bytes; 16 inputs become four 4-byte groups,
 * each landing in its own 64-byte row of the block. */
VL_AVX512 static void pack_row_avx512(const float *row, int64_t k, int8_t *block, float *scale, int32_t *rowsum) {
  float s = absmax_avx512(row, k) / 127.f;
  __m512i sum = _mm512_setzero_si512();
  for (int64_t i = 0; s > 0.f && i < k; i += 16) {
    __mmask16 keep;
    __m512i iv = quantize16_avx512(row, i, k, s, &keep);
    sum = _mm512_add_epi32(sum, iv);
    int32_t bytes[4];
    _mm_storeu_si128((__m128i *)bytes, _mm512_cvtepi32_epi8(iv));
    for (int g = 0; g < 4 && i + 4 * g < k; g++) memcpy(block + ((i / 4) + g) * 64, &bytes[g], 4); /* zeros past k: the padding */
  }
  *scale = s;
  *rowsum = _mm512_reduce_add_epi32(sum);
}
#endif

typedef void (*pack_row_fn)(const float *, int64_t, int8_t *, float *, int32_t *);
static pack_row_fn chosen_pack_row = pack_row;

/* Rows [16·task, 16·task + 16): one packed block, so tasks write disjoint bytes. */
static void pack_task(void *ctx_, int task) {
  const pack_ctx *c = (const pack_ctx *)ctx_;
  int8_t *q = (int8_t *)c->packed;
  float *scale = (float *)(c->packed + c->np * c->kp);
  int32_t *rowsum = (int32_t *)(c->packed + c->np * c->kp + 4 * c->np);
  int64_t end = (int64_t)task * 16 + 16 < c->n ? (int64_t)task * 16 + 16 : c->n;
  for (int64_t r = (int64_t)task * 16; r < end; r++)
    chosen_pack_row(c->w + r * c->k, c->k, q + (r / 16) * c->kp * 16 + (r % 16) * 4, scale + r, rowsum + r);
}

void vl_int8_pack(const float *w, int64_t n, int64_t k, uint8_t *packed) {
  pack_ctx c = {w, n, k, round_up(n, OUT_BLOCK), round_up(k, 4), packed};
  memset(packed, 0, (size_t)vl_int8_packed_bytes(n, k));
  vl_parallel_for(pack_task, &c, (int)((n + 15) / 16));
}

/* ---- activations: one row to u8 (q + 128) and its scale ---- */

static void quantize_row(const float *x, int64_t k, int64_t kp, uint8_t *u, float *scale) {
  float s = absmax(x, k) / 127.f;
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

#ifdef VL_X86
/* The same row quantisation with AVX-512: the division is IEEE and the rounding is to nearest even, as nearbyintf in
 * the default rounding mode, so the bytes equal quantize_row's. */
VL_AVX512 static void quantize_row_avx512(const float *x, int64_t k, int64_t kp, uint8_t *u, float *scale) {
  float s = absmax_avx512(x, k) / 127.f;
  *scale = s;
  if (s > 0.f) {
    for (int64_t c = 0; c < k; c += 16) {
      __mmask16 keep;
      __m512i q = _mm512_add_epi32(quantize16_avx512(x, c, k, s, &keep), _mm512_set1_epi32(128));
      _mm512_mask_cvtepi32_storeu_epi8(u + c, keep, q);
    }
  } else {
    memset(u, 128, (size_t)k);
  }
  memset(u + k, 128, (size_t)(kp - k));
}
#endif

typedef void (*quantize_fn)(const float *, int64_t, int64_t, uint8_t *, float *);
static quantize_fn chosen_quantize = quantize_row;

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

#ifdef VL_AMX
#define VL_AMX_TARGET __attribute__((target("avx512f,avx512bw,avx512vnni,amx-tile,amx-int8")))

/* Tiles 0–3: int32 sums (16 rows × 16 outputs); 4–5: 16 rows × 64 u8 inputs; 6–7: 16 × 64-byte weight rows. */
typedef struct {
  uint8_t palette, start_row, reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
} amx_config;

VL_AMX_TARGET static void amx_configure(void) {
  amx_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.palette = 1;
  for (int t = 0; t < 8; t++) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = 16;
  }
  _tile_loadconfig(&cfg);
}

/* 16 or 32 rows (u padded with zero rows to a multiple of 16) × the 32 outputs of block nb, over all inputs, then
 * the shared epilogue for the rows that exist. Needs kp % 64 == 0. */
VL_AMX_TARGET static void amx_block(const packed_view *p, const uint8_t *u, const float *sx, int rows, int64_t nb, const float *bias,
                                    float *y, int32_t *acc) {
  const int64_t kp = p->kp, tiles = kp / 64;
  const int8_t *w0 = p->w + (nb * 2) * kp * 16, *w1 = w0 + kp * 16;
  _tile_zero(0);
  _tile_zero(1);
  if (rows > 16) {
    _tile_zero(2);
    _tile_zero(3);
    for (int64_t t = 0; t < tiles; t++) {
      _tile_loadd(4, u + 64 * t, kp);
      _tile_loadd(5, u + 16 * kp + 64 * t, kp);
      _tile_loadd(6, w0 + 1024 * t, 64);
      _tile_loadd(7, w1 + 1024 * t, 64);
      _tile_dpbusd(0, 4, 6);
      _tile_dpbusd(1, 4, 7);
      _tile_dpbusd(2, 5, 6);
      _tile_dpbusd(3, 5, 7);
    }
    _tile_stored(2, acc + 16 * OUT_BLOCK, OUT_BLOCK * 4);
    _tile_stored(3, acc + 16 * OUT_BLOCK + 16, OUT_BLOCK * 4);
  } else {
    for (int64_t t = 0; t < tiles; t++) {
      _tile_loadd(4, u + 64 * t, kp);
      _tile_loadd(6, w0 + 1024 * t, 64);
      _tile_loadd(7, w1 + 1024 * t, 64);
      _tile_dpbusd(0, 4, 6);
      _tile_dpbusd(1, 4, 7);
    }
  }
  _tile_stored(0, acc, OUT_BLOCK * 4);
  _tile_stored(1, acc + 16, OUT_BLOCK * 4);
  for (int r = 0; r < rows; r++)
    store_vnni(p, _mm512_loadu_si512(acc + r * OUT_BLOCK), _mm512_loadu_si512(acc + r * OUT_BLOCK + 16), sx[r], nb, bias, y + r * p->n);
}

/* Linux hands out the 8 KB tile state only on request (once per process, for all its threads). */
static int amx_available(void) {
  if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") || !__builtin_cpu_supports("avx512vnni")) return 0;
  unsigned a, b, c, d;
  __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(0));
  if (!(d & (1u << 24)) || !(d & (1u << 25))) return 0; /* AMX-TILE, AMX-INT8 */
  const long ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18;
  return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
}
#endif

typedef void (*block_fn)(const packed_view *, const uint8_t *, const float *, int, int64_t, const float *, float *, const k_slice *);

static block_fn chosen_block = block_portable;
static const char *chosen_name = "portable C";
static int use_amx = 0; /* for layers whose input width is a multiple of 64; the others take chosen_block */

/* The best kernel this CPU and OS allow. VL_ACCEL_INT8_KERNEL=avx512-vnni or portable (or the older
 * VL_ACCEL_INT8_PORTABLE=1) caps it, for tests and comparisons. */
void vl_int8_init(void) {
  const char *cap = getenv("VL_ACCEL_INT8_KERNEL");
  int portable = getenv("VL_ACCEL_INT8_PORTABLE") != NULL || (cap && strcmp(cap, "portable") == 0);
  int no_amx = portable || (cap && strcmp(cap, "avx512-vnni") == 0);
#ifdef VL_X86
  __builtin_cpu_init();
  if (!portable && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni")) {
    chosen_block = block_vnni;
    chosen_quantize = quantize_row_avx512;
    chosen_pack_row = pack_row_avx512;
    chosen_name = "avx512-vnni";
  }
#endif
#ifdef VL_AMX
  if (!no_amx && amx_available()) {
    use_amx = 1;
    chosen_name = "amx-int8";
  }
#endif
  (void)no_amx;
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
  for (int64_t r = lo; r < hi; r++) chosen_quantize(c->a->x + r * c->p.k, c->p.k, c->p.kp, c->u + r * c->p.kp, c->sx + r);
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

#ifdef VL_AMX
/* The chunk's rows in blocks of 32 (16 at the end) for each of the group's output blocks, every input at once: the
 * tiles hold the sums, so no input slicing. Each thread sets its own tile configuration. */
VL_AMX_TARGET static void gemm_task_amx(void *ctx_, int task) {
  linear_ctx *c = (linear_ctx *)ctx_;
  int64_t chunk = task / c->groups, group = task % c->groups;
  int64_t r0 = chunk * ROW_CHUNK, r1 = r0 + ROW_CHUNK < c->a->m ? r0 + ROW_CHUNK : c->a->m;
  int64_t b0 = group * c->blocks / c->groups, b1 = (group + 1) * c->blocks / c->groups;
  int32_t acc[32 * OUT_BLOCK];
  amx_configure();
  for (int64_t nb = b0; nb < b1; nb++) {
    for (int64_t r = r0; r < r1; r += 32) {
      int rows = (int)(r1 - r < 32 ? r1 - r : 32);
      amx_block(&c->p, c->u + r * c->p.kp, c->sx + r, rows, nb, c->a->bias, c->a->y + r * c->p.n, acc);
    }
  }
  _tile_release();
}
#endif

int vl_int8_linear(const vl_int8_linear_args *a) {
  linear_ctx c;
  c.a = a;
  c.p = view_of(a->packed, a->n, a->k);
  if (a->m == 0 || a->n == 0) return 0;
  int amx = use_amx && c.p.kp % 64 == 0;
  /* AMX reads rows in tiles of 16: the rows past m are zeros (they only produce sums nobody stores). */
  int64_t rows_alloc = amx ? round_up(a->m, 16) : a->m;
  c.u = (uint8_t *)malloc((size_t)(rows_alloc * c.p.kp));
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
  if (rows_alloc > a->m) memset(c.u + a->m * c.p.kp, 0, (size_t)((rows_alloc - a->m) * c.p.kp));
  vl_parallel_for(quantize_task, &c, (int)c.chunks);
#ifdef VL_AMX
  if (amx) {
    vl_parallel_for(gemm_task_amx, &c, (int)(c.chunks * c.groups));
  } else
#endif
    vl_parallel_for(gemm_task, &c, (int)(c.chunks * c.groups));
  free(c.u);
  free(c.sx);
  return 0;
}
