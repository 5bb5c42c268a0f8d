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

int vl_attention_fused_applies(const vl_attention_args *a) {
  return vl_kernels_avx512() && a->dh == HEAD && a->tq >= ROWS && a->tk >= PANEL;
}

int64_t vl_attention_fused_scratch(const vl_attention_args *a) {
  return (a->tk + PANEL - 1) / PANEL * PANEL * HEAD + ROWS * a->tk;
}

/* Kᵀ as panels: kt[p][d][16] = k[16p + j][d], zero past the last key. */
static void pack_keys(const float *k, int64_t k_row, int64_t tk, float *kt) {
  const int64_t panels = (tk + PANEL - 1) / PANEL;
  for (int64_t p = 0; p < panels; p++) {
    float *panel = kt + p * HEAD * PANEL;
    for (int64_t j = 0; j < PANEL; j++) {
      const int64_t key = p * PANEL + j;
      if (key < tk) {
        const float *src = k + key * k_row;
        for (int d = 0; d < HEAD; d++) panel[d * PANEL + j] = src[d];
      } else {
        for (int d = 0; d < HEAD; d++) panel[d * PANEL + j] = 0.f;
      }
    }
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

/* The edges: `rows` ≤ 6 rows × panels [p0, panels), the last one masked to the keys that exist. */
VL_T static void qk_edge(const float *q, int64_t q_row, int rows, const float *kt, int64_t p0, int64_t tk, float scale, float *s) {
  const int64_t panels = (tk + PANEL - 1) / PANEL;
  for (int64_t p = p0; p < panels; p++) {
    const float *panel = kt + p * HEAD * PANEL;
    const int64_t left = tk - p * PANEL;
    const __mmask16 keep = left >= PANEL ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
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
#define PV_STORE(r)                                 \
  _mm512_storeu_ps(o + (r) * o_row, o##r##0);      \
  _mm512_storeu_ps(o + (r) * o_row + 16, o##r##1); \
  _mm512_storeu_ps(o + (r) * o_row + 32, o##r##2); \
  _mm512_storeu_ps(o + (r) * o_row + 48, o##r##3);

/* out rows = p · v for 6 rows of probabilities. */
VL_T static void pv_6x64(const float *s, int64_t tk, const float *v, int64_t v_row, float *o, int64_t o_row) {
  PV_ACC(0) PV_ACC(1) PV_ACC(2) PV_ACC(3) PV_ACC(4) PV_ACC(5)
  for (int64_t j = 0; j < tk; j++) {
    const float *vr = v + j * v_row;
    const __m512 v0 = _mm512_loadu_ps(vr), v1 = _mm512_loadu_ps(vr + 16), v2 = _mm512_loadu_ps(vr + 32), v3 = _mm512_loadu_ps(vr + 48);
    PV_FMA(0) PV_FMA(1) PV_FMA(2) PV_FMA(3) PV_FMA(4) PV_FMA(5)
  }
  PV_STORE(0) PV_STORE(1) PV_STORE(2) PV_STORE(3) PV_STORE(4) PV_STORE(5)
}

VL_T static void pv_edge(const float *s, int rows, int64_t tk, const float *v, int64_t v_row, float *o, int64_t o_row) {
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
    _mm512_storeu_ps(o + r * o_row, a0);
    _mm512_storeu_ps(o + r * o_row + 16, a1);
    _mm512_storeu_ps(o + r * o_row + 32, a2);
    _mm512_storeu_ps(o + r * o_row + 48, a3);
  }
}

void vl_attention_fused_pair(const vl_attention_args *a, int64_t b, int64_t h, float *scratch) {
  const int64_t kb = a->kv_rows ? (int64_t)a->kv_rows[b] : b;
  const float *q = a->q + b * a->q_batch + h * a->q_head;
  const float *k = a->k + kb * a->k_batch + h * a->k_head;
  const float *v = a->v + kb * a->v_batch + h * a->v_head;
  float *out = a->out + b * a->o_batch + h * a->o_head;
  const int64_t tq = a->tq, tk = a->tk, panels = (tk + PANEL - 1) / PANEL;
  const int64_t full = tk / (4 * PANEL) * 4; /* panels covered by 64-key tiles */
  float *kt = scratch, *s = scratch + panels * PANEL * HEAD;
  pack_keys(k, a->k_row, tk, kt);
  for (int64_t i0 = 0; i0 < tq; i0 += ROWS) {
    const int rows = (int)(tq - i0 < ROWS ? tq - i0 : ROWS);
    const float *qb = q + i0 * a->q_row;
    if (rows == ROWS) {
      for (int64_t p = 0; p < full; p += 4) qk_6x64(qb, a->q_row, kt, p, a->scale, s, tk);
      qk_edge(qb, a->q_row, rows, kt, full, tk, a->scale, s);
    } else {
      qk_edge(qb, a->q_row, rows, kt, 0, tk, a->scale, s);
    }
    vl_attention_mask_softmax(a, b, kb, h, i0, rows, s);
    if (rows == ROWS)
      pv_6x64(s, tk, v, a->v_row, out + i0 * a->o_row, a->o_row);
    else
      pv_edge(s, rows, tk, v, a->v_row, out + i0 * a->o_row, a->o_row);
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
void vl_attention_fused_pair(const vl_attention_args *a, int64_t b, int64_t h, float *scratch) {
  (void)a, (void)b, (void)h, (void)scratch;
}
#endif
