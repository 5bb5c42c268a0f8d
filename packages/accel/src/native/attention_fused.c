/* Inference attention for head size 64 on AVX-512, a block of 6 query rows at a time: the block's scores against
 * every key (keys packed once per head as 16-key panels of Kᵀ), the mask and the softmax while the block's 6 score
 * rows sit in L1, then the block's outputs from the probabilities and V read in place. The sgemm path in kernels.c
 * makes a [Tq, Tk] score matrix per head and runs two thin sgemms (inner size 64, 64 outputs) at about 70% of the
 * FMA peak with the softmax pass between them; here both products are register-blocked micro-kernels (6 rows × 64
 * keys, 6 rows × 64 outputs: 24 accumulators each) and the scores never leave the cache. Sums run in another order
 * than sgemm's, so results differ from the sgemm path by float rounding (tested to 1e-5). */
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define HEAD 64  /* head size this path handles */
#define ROWS 6   /* query rows per block */
#define PANEL 16 /* keys per packed panel */
#define VL_T __attribute__((target("avx512f,fma")))

/* The lanes of a 16-wide vector that hold one of the `left` remaining elements. */
static inline __mmask16 lanes(int64_t left) { return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1); }

int vl_attention_fused_applies(const vl_attention_args *a) {
  /* The gather's int32 offsets reach 15 rows of keys. */
  return vl_kernels_avx512() && a->dh == HEAD && a->tq >= ROWS && a->tk >= PANEL && a->k_row <= (1 << 26);
}

int64_t vl_attention_fused_scratch(const vl_attention_args *a) {
  return (a->tk + PANEL - 1) / PANEL * PANEL * HEAD + a->tk * HEAD + ROWS * a->tk;
}

/* Kᵀ as panels: kt[p][d][16] = k[16p + j][d], zero past the last key; a gather reads one input of 16 keys. */
VL_T static void pack_keys(const float *k, int64_t k_row, int64_t tk, float *kt) {
  const int64_t panels = (tk + PANEL - 1) / PANEL;
  const __m512i rows = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32((int)k_row));
  for (int64_t p = 0; p < panels; p++) {
    float *panel = kt + p * HEAD * PANEL;
    const float *base = k + p * PANEL * k_row;
    const __mmask16 keep = lanes(tk - p * PANEL);
    for (int d = 0; d < HEAD; d++)
      _mm512_storeu_ps(panel + d * PANEL, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), keep, rows, base + d, 4));
  }
}

#define QK_ACC(r) __m512 s##r##0 = _mm512_setzero_ps(), s##r##1 = s##r##0, s##r##2 = s##r##0, s##r##3 = s##r##0;
#define QK_FMA(r)                                                 \
  {                                                               \
    const __m512 x = _mm512_set1_ps(q[(r) * q_row + d]);          \
    s##r##0 = _mm512_fmadd_ps(x, k0, s##r##0);                    \
    s##r##1 = _mm512_fmadd_ps(x, k1, s##r##1);                    \
    s##r##2 = _mm512_fmadd_ps(x, k2, s##r##2);                    \
    s##r##3 = _mm512_fmadd_ps(x, k3, s##r##3);                    \
  }
#define QK_STORE(r)                                                          \
  _mm512_storeu_ps(s + (r) * tk + j0, _mm512_mul_ps(s##r##0, vscale));      \
  _mm512_storeu_ps(s + (r) * tk + j0 + 16, _mm512_mul_ps(s##r##1, vscale)); \
  _mm512_storeu_ps(s + (r) * tk + j0 + 32, _mm512_mul_ps(s##r##2, vscale)); \
  _mm512_storeu_ps(s + (r) * tk + j0 + 48, _mm512_mul_ps(s##r##3, vscale));

/* scale·q·kᵀ for 6 rows × the 64 keys from panel p (all inside tk). */
VL_T static void qk_6x64(const float *q, int64_t q_row, const float *kt, int64_t p, float scale, float *s, int64_t tk) {
  const int64_t j0 = p * PANEL;
  const float *panel = kt + p * HEAD * PANEL;
  QK_ACC(0) QK_ACC(1) QK_ACC(2) QK_ACC(3) QK_ACC(4) QK_ACC(5)
  for (int d = 0; d < HEAD; d++) {
    const __m512 k0 = _mm512_loadu_ps(panel + d * PANEL), k1 = _mm512_loadu_ps(panel + HEAD * PANEL + d * PANEL),
                 k2 = _mm512_loadu_ps(panel + 2 * HEAD * PANEL + d * PANEL), k3 = _mm512_loadu_ps(panel + 3 * HEAD * PANEL + d * PANEL);
    QK_FMA(0) QK_FMA(1) QK_FMA(2) QK_FMA(3) QK_FMA(4) QK_FMA(5)
  }
  const __m512 vscale = _mm512_set1_ps(scale);
  QK_STORE(0) QK_STORE(1) QK_STORE(2) QK_STORE(3) QK_STORE(4) QK_STORE(5)
}

/* 6 rows × the 16 keys of panel p (the last one masked to the keys that exist): the tiles' right edge, with six
 * accumulators so the FMA latency is hidden as in the tiles. */
VL_T static void qk_6x16(const float *q, int64_t q_row, const float *kt, int64_t p, int64_t tk, float scale, float *s) {
  const float *panel = kt + p * HEAD * PANEL;
  __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0;
  for (int d = 0; d < HEAD; d++) {
    const __m512 k = _mm512_loadu_ps(panel + d * PANEL);
    c0 = _mm512_fmadd_ps(_mm512_set1_ps(q[d]), k, c0);
    c1 = _mm512_fmadd_ps(_mm512_set1_ps(q[q_row + d]), k, c1);
    c2 = _mm512_fmadd_ps(_mm512_set1_ps(q[2 * q_row + d]), k, c2);
    c3 = _mm512_fmadd_ps(_mm512_set1_ps(q[3 * q_row + d]), k, c3);
    c4 = _mm512_fmadd_ps(_mm512_set1_ps(q[4 * q_row + d]), k, c4);
    c5 = _mm512_fmadd_ps(_mm512_set1_ps(q[5 * q_row + d]), k, c5);
  }
  const __mmask16 keep = lanes(tk - p * PANEL);
  const __m512 vscale = _mm512_set1_ps(scale);
  float *out = s + p * PANEL;
  _mm512_mask_storeu_ps(out, keep, _mm512_mul_ps(c0, vscale));
  _mm512_mask_storeu_ps(out + tk, keep, _mm512_mul_ps(c1, vscale));
  _mm512_mask_storeu_ps(out + 2 * tk, keep, _mm512_mul_ps(c2, vscale));
  _mm512_mask_storeu_ps(out + 3 * tk, keep, _mm512_mul_ps(c3, vscale));
  _mm512_mask_storeu_ps(out + 4 * tk, keep, _mm512_mul_ps(c4, vscale));
  _mm512_mask_storeu_ps(out + 5 * tk, keep, _mm512_mul_ps(c5, vscale));
}

/* The last block's rows (fewer than 6) against every panel, the last one masked. */
VL_T static void qk_edge(const float *q, int64_t q_row, int rows, const float *kt, int64_t tk, float scale, float *s) {
  const int64_t panels = (tk + PANEL - 1) / PANEL;
  for (int64_t p = 0; p < panels; p++) {
    const float *panel = kt + p * HEAD * PANEL;
    const __mmask16 keep = lanes(tk - p * PANEL);
    for (int r = 0; r < rows; r++) {
      __m512 acc = _mm512_setzero_ps();
      for (int d = 0; d < HEAD; d++) acc = _mm512_fmadd_ps(_mm512_set1_ps(q[r * q_row + d]), _mm512_loadu_ps(panel + d * PANEL), acc);
      _mm512_mask_storeu_ps(s + r * tk + p * PANEL, keep, _mm512_mul_ps(acc, _mm512_set1_ps(scale)));
    }
  }
}

#define PV_ACC(r) __m512 o##r##0 = _mm512_setzero_ps(), o##r##1 = o##r##0, o##r##2 = o##r##0, o##r##3 = o##r##0;
#define PV_FMA(r)                                        \
  {                                                      \
    const __m512 x = _mm512_set1_ps(s[(r) * tk + j]);    \
    o##r##0 = _mm512_fmadd_ps(x, v0, o##r##0);           \
    o##r##1 = _mm512_fmadd_ps(x, v1, o##r##1);           \
    o##r##2 = _mm512_fmadd_ps(x, v2, o##r##2);           \
    o##r##3 = _mm512_fmadd_ps(x, v3, o##r##3);           \
  }
#define PV_STORE(r)                                                                   \
  {                                                                                   \
    const __m512 w = _mm512_set1_ps(inv[r]);                                          \
    _mm512_storeu_ps(o + (r) * o_row, _mm512_mul_ps(o##r##0, w));                     \
    _mm512_storeu_ps(o + (r) * o_row + 16, _mm512_mul_ps(o##r##1, w));                \
    _mm512_storeu_ps(o + (r) * o_row + 32, _mm512_mul_ps(o##r##2, w));                \
    _mm512_storeu_ps(o + (r) * o_row + 48, _mm512_mul_ps(o##r##3, w));                \
  }

/* out rows = inv · (p · v) for 6 rows of (unnormalised) probabilities. */
VL_T static void pv_6x64(const float *s, int64_t tk, const float *v, int64_t v_row, const float *inv, float *o, int64_t o_row) {
  PV_ACC(0) PV_ACC(1) PV_ACC(2) PV_ACC(3) PV_ACC(4) PV_ACC(5)
  for (int64_t j = 0; j < tk; j++) {
    const float *vr = v + j * v_row;
    const __m512 v0 = _mm512_loadu_ps(vr), v1 = _mm512_loadu_ps(vr + 16), v2 = _mm512_loadu_ps(vr + 32), v3 = _mm512_loadu_ps(vr + 48);
    PV_FMA(0) PV_FMA(1) PV_FMA(2) PV_FMA(3) PV_FMA(4) PV_FMA(5)
  }
  PV_STORE(0) PV_STORE(1) PV_STORE(2) PV_STORE(3) PV_STORE(4) PV_STORE(5)
}

VL_T static void pv_edge(const float *s, int rows, int64_t tk, const float *v, int64_t v_row, const float *inv, float *o, int64_t o_row) {
  for (int r = 0; r < rows; r++) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t j = 0; j < tk; j++) {
      const __m512 x = _mm512_set1_ps(s[r * tk + j]);
      const float *vr = v + j * v_row;
      a0 = _mm512_fmadd_ps(x, _mm512_loadu_ps(vr), a0);
      a1 = _mm512_fmadd_ps(x, _mm512_loadu_ps(vr + 16), a1);
      a2 = _mm512_fmadd_ps(x, _mm512_loadu_ps(vr + 32), a2);
      a3 = _mm512_fmadd_ps(x, _mm512_loadu_ps(vr + 48), a3);
    }
    const __m512 w = _mm512_set1_ps(inv[r]);
    _mm512_storeu_ps(o + r * o_row, _mm512_mul_ps(a0, w));
    _mm512_storeu_ps(o + r * o_row + 16, _mm512_mul_ps(a1, w));
    _mm512_storeu_ps(o + r * o_row + 32, _mm512_mul_ps(a2, w));
    _mm512_storeu_ps(o + r * o_row + 48, _mm512_mul_ps(a3, w));
  }
}

void vl_attention_fused_pair(const vl_attention_args *a, int64_t b, int64_t h, float *scratch, int64_t *packed) {
  const int64_t kb = a->kv_rows ? (int64_t)a->kv_rows[b] : b;
  const float *q = a->q + b * a->q_batch + h * a->q_head;
  const float *k = a->k + kb * a->k_batch + h * a->k_head;
  const float *v = a->v + kb * a->v_batch + h * a->v_head;
  float *out = a->out + b * a->o_batch + h * a->o_head;
  const int64_t tq = a->tq, tk = a->tk, panels = (tk + PANEL - 1) / PANEL;
  const int64_t full = tk / (4 * PANEL) * 4; /* panels covered by 64-key tiles */
  float *kt = scratch, *vp = kt + panels * PANEL * HEAD, *s = vp + tk * HEAD;
  /* Query rows that share their keys (captions of one image, beams) follow each other: pack once for them. V is
   * copied to contiguous rows too: in a packed [B, T, 3D] qkv its rows are 9 KB apart, one TLB page each. */
  if (packed[0] != kb || packed[1] != h) {
    pack_keys(k, a->k_row, tk, kt);
    for (int64_t j = 0; j < tk; j++) memcpy(vp + j * HEAD, v + j * a->v_row, HEAD * sizeof(float));
    packed[0] = kb;
    packed[1] = h;
  }
  for (int64_t i0 = 0; i0 < tq; i0 += ROWS) {
    const int rows = (int)(tq - i0 < ROWS ? tq - i0 : ROWS);
    const float *qb = q + i0 * a->q_row;
    if (rows == ROWS) {
      for (int64_t p = 0; p < full; p += 4) qk_6x64(qb, a->q_row, kt, p, a->scale, s, tk);
      for (int64_t p = full; p < panels; p++) qk_6x16(qb, a->q_row, kt, p, tk, a->scale, s);
    } else {
      qk_edge(qb, a->q_row, rows, kt, tk, a->scale, s);
    }
    float inv[ROWS] = {1.f, 1.f, 1.f, 1.f, 1.f, 1.f};
    if (a->mask)
      vl_attention_mask_softmax(a, b, kb, h, i0, rows, s); /* normalised there */
    else
      vl_softmax_unnormalised_rows(s, rows, tk, inv); /* normalised after P·V */
    if (rows == ROWS)
      pv_6x64(s, tk, vp, HEAD, inv, out + i0 * a->o_row, a->o_row);
    else
      pv_edge(s, rows, tk, vp, HEAD, inv, out + i0 * a->o_row, a->o_row);
  }
}

#else
int vl_attention_fused_applies(const vl_attention_args *a) {
  (void)a;
  return 0;
}
int64_t vl_attention_fused_scratch(const vl_attention_args *a) {
  (void)a;
  return 0;
}
void vl_attention_fused_pair(const vl_attention_args *a, int64_t b, int64_t h, float *scratch, int64_t *packed) {
  (void)a, (void)b, (void)h, (void)scratch, (void)packed;
}
#endif
