/* N-API binding of the native kernels. Every kernel takes (heap: ArrayBuffer, params: Float64Array):
 * the wasm backend's heap and byte offsets into it, so tensors are read and written in place with
 * no copies. One typed array of numbers keeps the per-call overhead to two N-API look-ups.
 * Offsets and sizes are checked against the heap before any pointer is formed: a bad call throws
 * a RangeError, it never reads or writes outside the buffer. */
#define NAPI_VERSION 8
#include <node_api.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "kernels.h"
#include "pool.h"

/* Bumped whenever a kernel's params layout changes: the JS side refuses a binary from another
 * version (an old prebuilt next to new JS) instead of calling it with the wrong layout. */
#define VL_ACCEL_ABI 4

#define CHECK_NAPI(env, call)                                          \
  do {                                                                 \
    if ((call) != napi_ok) {                                           \
      napi_throw_error((env), "VL_ACCEL", "N-API call failed: " #call); \
      return NULL;                                                     \
    }                                                                  \
  } while (0)

typedef struct {
  uint8_t *base;
  size_t length;
  const double *p;
  size_t count;
} call_args;

/* Reads (heap, params) and checks that params has `expected` entries. */
static int read_args(napi_env env, napi_callback_info info, size_t expected, call_args *out) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2) {
    napi_throw_type_error(env, "VL_ACCEL", "expected (heap: ArrayBuffer, params: Float64Array)");
    return 0;
  }
  bool is_ab = false;
  napi_is_arraybuffer(env, argv[0], &is_ab);
  if (!is_ab) {
    napi_throw_type_error(env, "VL_ACCEL", "heap must be an ArrayBuffer");
    return 0;
  }
  void *data = NULL;
  if (napi_get_arraybuffer_info(env, argv[0], &data, &out->length) != napi_ok) {
    napi_throw_error(env, "VL_ACCEL", "cannot read the heap ArrayBuffer");
    return 0;
  }
  out->base = (uint8_t *)data;
  napi_typedarray_type type;
  size_t count = 0;
  void *pdata = NULL;
  bool is_ta = false;
  napi_is_typedarray(env, argv[1], &is_ta);
  if (!is_ta || napi_get_typedarray_info(env, argv[1], &type, &count, &pdata, NULL, NULL) != napi_ok ||
      type != napi_float64_array) {
    napi_throw_type_error(env, "VL_ACCEL", "params must be a Float64Array");
    return 0;
  }
  if (count < expected) {
    char msg[96];
    snprintf(msg, sizeof msg, "params has %zu entries, expected %zu", count, expected);
    napi_throw_range_error(env, "VL_ACCEL", msg);
    return 0;
  }
  out->p = (const double *)pdata;
  out->count = count;
  return 1;
}

/* A float pointer for `count` floats at byte offset `off`; offset < 0 means none (NULL) when
 * `optional`. Throws and returns 0 when it does not fit the heap. */
static int heap_floats(napi_env env, const call_args *a, double off, double count, int optional, float **out,
                       const char *what) {
  *out = NULL;
  if (off < 0 && optional) return 1;
  if (!(off >= 0) || !(count >= 0) || off != (double)(int64_t)off || ((int64_t)off & 3) != 0 ||
      off + count * 4.0 > (double)a->length) {
    char msg[160];
    snprintf(msg, sizeof msg, "%s: %.0f floats at byte %.0f do not fit the %zu-byte heap (or are misaligned)", what,
             count, off, a->length);
    napi_throw_range_error(env, "VL_ACCEL", msg);
    return 0;
  }
  *out = (float *)(a->base + (int64_t)off);
  return 1;
}

static int positive_ints(napi_env env, const double *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (!(p[i] >= 0) || p[i] != (double)(int64_t)p[i] || p[i] > 2147483647.0) {
      napi_throw_range_error(env, "VL_ACCEL", "sizes must be non-negative integers below 2^31");
      return 0;
    }
  }
  return 1;
}

/* gemm(heap, [transA, transB, m, n, k, batch, aOff, strideA, bOff, strideB, cOff, strideC,
 *             biasOff, biasBatchStride, activation, leakyAlpha, preluOff, preluSize,
 *             biasRowStride, biasColStride]) */
static napi_value js_gemm(napi_env env, napi_callback_info info) {
  call_args a;
  if (!read_args(env, info, 20, &a)) return NULL;
  const double *p = a.p;
  if (!positive_ints(env, p + 2, 4) || !positive_ints(env, p + 7, 1) || !positive_ints(env, p + 9, 1) ||
      !positive_ints(env, p + 11, 1))
    return NULL;
  vl_gemm_args g;
  memset(&g, 0, sizeof g);
  g.trans_a = p[0] != 0;
  g.trans_b = p[1] != 0;
  g.m = (int64_t)p[2];
  g.n = (int64_t)p[3];
  g.k = (int64_t)p[4];
  g.batch = (int64_t)p[5];
  g.stride_a = (int64_t)p[7];
  g.stride_b = (int64_t)p[9];
  g.stride_c = (int64_t)p[11];
  if (!positive_ints(env, p + 13, 1) || !positive_ints(env, p + 18, 2)) return NULL;
  g.bias_batch_stride = (int64_t)p[13];
  g.bias_row_stride = (int64_t)p[18];
  g.bias_col_stride = (int64_t)p[19];
  g.activation = (int)p[14];
  g.leaky_alpha = (float)p[15];
  g.prelu_size = (int64_t)p[17];
  if (g.batch == 0 || g.m == 0 || g.n == 0) return NULL;
  const double last = (double)(g.batch - 1);
  float *pa, *pb, *pc, *pbias, *pprelu;
  if (!heap_floats(env, &a, p[6], last * p[7] + p[2] * p[4], 0, &pa, "gemm A")) return NULL;
  if (!heap_floats(env, &a, p[8], last * p[9] + p[4] * p[3], 0, &pb, "gemm B")) return NULL;
  if (!heap_floats(env, &a, p[10], last * p[11] + p[2] * p[3], 0, &pc, "gemm C")) return NULL;
  /* The last bias element read, plus one: every (batch, row, column) stays inside the checked span. */
  const double bias_span = last * p[13] + (p[2] - 1) * p[18] + (p[3] - 1) * p[19] + 1;
  if (!heap_floats(env, &a, p[12], bias_span, 1, &pbias, "gemm bias")) return NULL;
  if (g.activation < 0 || g.activation > 8) {
    napi_throw_range_error(env, "VL_ACCEL", "gemm activation code must be 0..8");
    return NULL;
  }
  if (g.activation == 3 && (p[16] < 0 || (g.prelu_size != 1 && g.prelu_size != g.n))) {
    napi_throw_range_error(env, "VL_ACCEL", "gemm prelu needs 1 or n alpha values");
    return NULL;
  }
  if (!heap_floats(env, &a, p[16], p[17], 1, &pprelu, "gemm prelu")) return NULL;
  g.a = pa;
  g.b = pb;
  g.c = pc;
  g.bias = pbias;
  g.prelu = pprelu;
  vl_gemm(&g);
  return NULL;
}

/* layerNormFwd(heap, [rows, d, xOff, gammaOff, betaOff, yOff, meanOff, rstdOff, eps]) */
static napi_value js_layernorm_fwd(napi_env env, napi_callback_info info) {
  call_args a;
  if (!read_args(env, info, 9, &a)) return NULL;
  const double *p = a.p;
  if (!positive_ints(env, p, 2)) return NULL;
  vl_rows_args r;
  memset(&r, 0, sizeof r);
  r.rows = (int64_t)p[0];
  r.d = (int64_t)p[1];
  r.eps = (float)p[8];
  if (r.rows == 0 || r.d == 0) return NULL;
  const double size = p[0] * p[1];
  float *x, *g, *b, *y, *mean, *rstd;
  if (!heap_floats(env, &a, p[2], size, 0, &x, "layerNorm x") || !heap_floats(env, &a, p[3], p[1], 1, &g, "layerNorm gamma") ||
      !heap_floats(env, &a, p[4], p[1], 1, &b, "layerNorm beta") || !heap_floats(env, &a, p[5], size, 0, &y, "layerNorm y") ||
      !heap_floats(env, &a, p[6], p[0], 1, &mean, "layerNorm mean") ||
      !heap_floats(env, &a, p[7], p[0], 1, &rstd, "layerNorm rstd"))
    return NULL;
  r.x = x;
  r.gamma = g;
  r.beta = b;
  r.y = y;
  r.mean = mean;
  r.rstd = rstd;
  vl_layernorm_fwd(&r);
  return NULL;
}

/* layerNormBwd(heap, [rows, d, dyOff, xOff, meanOff, rstdOff, gammaOff, dxOff, dgammaOff, dbetaOff, eps]);
 * mean/rstd at -1: recomputed from x with eps. */
static napi_value js_layernorm_bwd(napi_env env, napi_callback_info info) {
  call_args a;
  if (!read_args(env, info, 11, &a)) return NULL;
  const double *p = a.p;
  if (!positive_ints(env, p, 2)) return NULL;
  vl_rows_args r;
  memset(&r, 0, sizeof r);
  r.rows = (int64_t)p[0];
  r.d = (int64_t)p[1];
  r.eps = (float)p[10];
  if (r.d == 0) return NULL;
  if ((p[4] < 0) != (p[5] < 0)) {
    napi_throw_range_error(env, "VL_ACCEL", "layerNormGrad: pass both mean and rstd, or neither");
    return NULL;
  }
  const double size = p[0] * p[1];
  float *dy, *x, *mean, *rstd, *g, *dx, *dg, *db;
  if (!heap_floats(env, &a, p[2], size, 0, &dy, "layerNormGrad dy") || !heap_floats(env, &a, p[3], size, 0, &x, "layerNormGrad x") ||
      !heap_floats(env, &a, p[4], p[0], 1, &mean, "layerNormGrad mean") ||
      !heap_floats(env, &a, p[5], p[0], 1, &rstd, "layerNormGrad rstd") ||
      !heap_floats(env, &a, p[6], p[1], 1, &g, "layerNormGrad gamma") ||
      !heap_floats(env, &a, p[7], size, 0, &dx, "layerNormGrad dx") ||
      !heap_floats(env, &a, p[8], p[1], 1, &dg, "layerNormGrad dgamma") ||
      !heap_floats(env, &a, p[9], p[1], 1, &db, "layerNormGrad dbeta"))
    return NULL;
  r.dy = dy;
  r.x = x;
  r.mean = mean;
  r.rstd = rstd;
  r.gamma = g;
  r.dx = dx;
  r.dgamma = dg;
  r.dbeta = db;
  if (vl_layernorm_bwd(&r) != 0) napi_throw_error(env, "VL_ACCEL", "layerNormGrad: out of memory");
  return NULL;
}

/* softmaxFwd(heap, [rows, d, xOff, yOff]) */
static napi_value js_softmax_fwd(napi_env env, napi_callback_info info) {
  call_args a;
  if (!read_args(env, info, 4, &a)) return NULL;
  const double *p = a.p;
  if (!positive_ints(env, p, 2)) return NULL;
  vl_rows_args r;
  memset(&r, 0, sizeof r);
  r.rows = (int64_t)p[0];
  r.d = (int64_t)p[1];
  if (r.rows == 0 || r.d == 0) return NULL;
  float *x, *y;
  if (!heap_floats(env, &a, p[2], p[0] * p[1], 0, &x, "softmax x") || !heap_floats(env, &a, p[3], p[0] * p[1], 0, &y, "softmax y"))
    return NULL;
  r.x = x;
  r.y = y;
  vl_softmax_fwd(&r);
  return NULL;
}

/* softmaxBwd(heap, [rows, d, dyOff, yOff, dxOff]) */
static napi_value js_softmax_bwd(napi_env env, napi_callback_info info) {
  call_args a;
  if (!read_args(env, info, 5, &a)) return NULL;
  const double *p = a.p;
  if (!positive_ints(env, p, 2)) return NULL;
  vl_rows_args r;
  memset(&r, 0, sizeof r);
  r.rows = (int64_t)p[0];
  r.d = (int64_t)p[1];
  if (r.rows == 0 || r.d == 0) return NULL;
  const double size = p[0] * p[1];
  float *dy, *y, *dx;
  if (!heap_floats(env, &a, p[2], size, 0, &dy, "softmaxGrad dy") || !heap_floats(env, &a, p[3], size, 0, &y, "softmaxGrad y") ||
      !heap_floats(env, &a, p[4], size, 0, &dx, "softmaxGrad dx"))
    return NULL;
  r.dy = dy;
  r.y = y;
  r.dx = dx;
  vl_softmax_bwd(&r);
  return NULL;
}

/* biasAdd(heap, [rows, d, xOff, bOff, yOff]) */
static napi_value js_bias_add(napi_env env, napi_callback_info info) {
  call_args a;
  if (!read_args(env, info, 5, &a)) return NULL;
  const double *p = a.p;
  if (!positive_ints(env, p, 2)) return NULL;
  vl_rows_args r;
  memset(&r, 0, sizeof r);
  r.rows = (int64_t)p[0];
  r.d = (int64_t)p[1];
  if (r.rows == 0 || r.d == 0) return NULL;
  float *x, *b, *y;
  if (!heap_floats(env, &a, p[2], p[0] * p[1], 0, &x, "biasAdd x") || !heap_floats(env, &a, p[3], p[1], 0, &b, "biasAdd bias") ||
      !heap_floats(env, &a, p[4], p[0] * p[1], 0, &y, "biasAdd y"))
    return NULL;
  r.x = x;
  r.beta = b;
  r.y = y;
  vl_bias_add(&r);
  return NULL;
}

/* colSum(heap, [rows, d, xOff, yOff]) */
static napi_value js_col_sum(napi_env env, napi_callback_info info) {
  call_args a;
  if (!read_args(env, info, 4, &a)) return NULL;
  const double *p = a.p;
  if (!positive_ints(env, p, 2)) return NULL;
  vl_rows_args r;
  memset(&r, 0, sizeof r);
  r.rows = (int64_t)p[0];
  r.d = (int64_t)p[1];
  if (r.d == 0) return NULL;
  float *x, *y;
  if (!heap_floats(env, &a, p[2], p[0] * p[1], 0, &x, "colSum x") || !heap_floats(env, &a, p[3], p[1], 0, &y, "colSum y"))
    return NULL;
  r.x = x;
  r.y = y;
  if (vl_col_sum(&r) != 0) napi_throw_error(env, "VL_ACCEL", "colSum: out of memory");
  return NULL;
}

/* geluFwd(heap, [n, xOff, yOff, approx]) */
static napi_value js_gelu_fwd(napi_env env, napi_callback_info info) {
  call_args a;
  if (!read_args(env, info, 4, &a)) return NULL;
  const double *p = a.p;
  if (!positive_ints(env, p, 1)) return NULL;
  vl_map_args m;
  memset(&m, 0, sizeof m);
  m.n = (int64_t)p[0];
  m.approx = p[3] != 0;
  float *x, *y;
  if (!heap_floats(env, &a, p[1], p[0], 0, &x, "gelu x") || !heap_floats(env, &a, p[2], p[0], 0, &y, "gelu y")) return NULL;
  m.x = x;
  m.y = y;
  vl_gelu_fwd(&m);
  return NULL;
}

/* geluBwd(heap, [n, dyOff, xOff, dxOff, approx]) */
static napi_value js_gelu_bwd(napi_env env, napi_callback_info info) {
  call_args a;
  if (!read_args(env, info, 5, &a)) return NULL;
  const double *p = a.p;
  if (!positive_ints(env, p, 1)) return NULL;
  vl_map_args m;
  memset(&m, 0, sizeof m);
  m.n = (int64_t)p[0];
  m.approx = p[4] != 0;
  float *dy, *x, *dx;
  if (!heap_floats(env, &a, p[1], p[0], 0, &dy, "geluGrad dy") || !heap_floats(env, &a, p[2], p[0], 0, &x, "geluGrad x") ||
      !heap_floats(env, &a, p[3], p[0], 0, &dx, "geluGrad dx"))
    return NULL;
  m.dy = dy;
  m.x = x;
  m.y = dx;
  vl_gelu_bwd(&m);
  return NULL;
}

/* setThreads(n): restarts the pool with n threads (the caller included); returns the count. */
/* Floats a strided view reaches: the last element's index + 1 (all strides ≥ 0). */
static double view_extent(double n0, double s0, double n1, double s1, double n2, double s2, double n3, double s3) {
  if (n0 <= 0 || n1 <= 0 || n2 <= 0 || n3 <= 0) return 0;
  return (n0 - 1) * s0 + (n1 - 1) * s1 + (n2 - 1) * s2 + (n3 - 1) * s3 + 1;
}

/* attention(heap, [batch, heads, tq, tk, dh, kvBatch,
 *                  qOff, qBatch, qHead, qRow, kOff, kBatch, kHead, kRow, vOff, vBatch, vHead, vRow,
 *                  oOff, oBatch, oHead, oRow, kvRowsOff, maskOff, mBatch, mHead, mRow, mCol, scale,
 *                  maskByKvRow]) */
static napi_value js_attention(napi_env env, napi_callback_info info) {
  call_args a;
  if (!read_args(env, info, 30, &a)) return NULL;
  const double *p = a.p;
  if (!positive_ints(env, p, 6)) return NULL;
  const double strides[] = {p[7], p[8], p[9], p[11], p[12], p[13], p[15], p[16], p[17], p[19], p[20], p[21], p[24], p[25], p[26], p[27]};
  if (!positive_ints(env, strides, sizeof strides / sizeof strides[0])) return NULL;
  vl_attention_args t;
  memset(&t, 0, sizeof t);
  t.batch = (int64_t)p[0];
  t.heads = (int64_t)p[1];
  t.tq = (int64_t)p[2];
  t.tk = (int64_t)p[3];
  t.dh = (int64_t)p[4];
  const double kv_batch = p[5];
  if (t.batch == 0 || t.heads == 0 || t.tq == 0) return NULL;
  if (t.tk == 0 || t.dh == 0 || kv_batch == 0) {
    napi_throw_range_error(env, "VL_ACCEL", "attention: keys and head size must be non-empty");
    return NULL;
  }
  float *q, *k, *v, *o, *mask, *rows_f;
  if (!heap_floats(env, &a, p[6], view_extent(p[0], p[7], p[1], p[8], p[2], p[9], p[4], 1), 0, &q, "attention q") ||
      !heap_floats(env, &a, p[10], view_extent(kv_batch, p[11], p[1], p[12], p[3], p[13], p[4], 1), 0, &k, "attention k") ||
      !heap_floats(env, &a, p[14], view_extent(kv_batch, p[15], p[1], p[16], p[3], p[17], p[4], 1), 0, &v, "attention v") ||
      !heap_floats(env, &a, p[18], view_extent(p[0], p[19], p[1], p[20], p[2], p[21], p[4], 1), 0, &o, "attention out") ||
      !heap_floats(env, &a, p[22], p[0], 1, &rows_f, "attention kv rows") ||
      !heap_floats(env, &a, p[23], view_extent(p[29] != 0 ? kv_batch : p[0], p[24], p[1], p[25], p[2], p[26], p[3], p[27]), 1, &mask,
                   "attention mask"))
    return NULL;
  const int32_t *rows = (const int32_t *)rows_f;
  if (rows) {
    for (int64_t b = 0; b < t.batch; b++) {
      if (rows[b] < 0 || (double)rows[b] >= kv_batch) {
        napi_throw_range_error(env, "VL_ACCEL", "attention: a key/value row index is outside the key/value batch");
        return NULL;
      }
    }
  }
  t.q = q;
  t.k = k;
  t.v = v;
  t.out = o;
  t.q_batch = (int64_t)p[7];
  t.q_head = (int64_t)p[8];
  t.q_row = (int64_t)p[9];
  t.k_batch = (int64_t)p[11];
  t.k_head = (int64_t)p[12];
  t.k_row = (int64_t)p[13];
  t.v_batch = (int64_t)p[15];
  t.v_head = (int64_t)p[16];
  t.v_row = (int64_t)p[17];
  t.o_batch = (int64_t)p[19];
  t.o_head = (int64_t)p[20];
  t.o_row = (int64_t)p[21];
  t.kv_rows = rows;
  t.mask = mask;
  t.m_batch = (int64_t)p[24];
  t.m_head = (int64_t)p[25];
  t.m_row = (int64_t)p[26];
  t.m_col = (int64_t)p[27];
  t.scale = (float)p[28];
  t.mask_by_kv_row = p[29] != 0;
  if (vl_attention(&t) != 0) napi_throw_error(env, "VL_ACCEL", "attention: out of memory");
  return NULL;
}

/* Byte range [off, off + bytes) of the heap, 4-byte aligned; throws and returns NULL when it does not fit. */
static uint8_t *heap_bytes(napi_env env, const call_args *a, double off, double bytes, const char *what) {
  if (!(off >= 0) || !(bytes >= 0) || off != (double)(int64_t)off || ((int64_t)off & 3) != 0 || off + bytes > (double)a->length) {
    char msg[160];
    snprintf(msg, sizeof msg, "%s: %.0f bytes at byte %.0f do not fit the %zu-byte heap (or are misaligned)", what, bytes, off,
             a->length);
    napi_throw_range_error(env, "VL_ACCEL", msg);
    return NULL;
  }
  return a->base + (int64_t)off;
}

/* int8Pack(heap, [n, k, weightOff, packedOff]): packs a float [n, k] weight (vl_int8_packed_bytes(n, k) bytes out). */
static napi_value js_int8_pack(napi_env env, napi_callback_info info) {
  call_args a;
  if (!read_args(env, info, 4, &a)) return NULL;
  const double *p = a.p;
  if (!positive_ints(env, p, 2)) return NULL;
  int64_t n = (int64_t)p[0], k = (int64_t)p[1];
  float *w;
  if (!heap_floats(env, &a, p[2], (double)n * (double)k, 0, &w, "int8Pack weight")) return NULL;
  uint8_t *packed = heap_bytes(env, &a, p[3], (double)vl_int8_packed_bytes(n, k), "int8Pack packed");
  if (!packed) return NULL;
  vl_int8_pack(w, n, k, packed);
  return NULL;
}

/* int8Linear(heap, [m, n, k, xOff, packedOff, biasOff (-1: none), yOff]). */
static napi_value js_int8_linear(napi_env env, napi_callback_info info) {
  call_args a;
  if (!read_args(env, info, 7, &a)) return NULL;
  const double *p = a.p;
  if (!positive_ints(env, p, 3)) return NULL;
  vl_int8_linear_args t;
  t.m = (int64_t)p[0];
  t.n = (int64_t)p[1];
  t.k = (int64_t)p[2];
  float *x, *bias, *y;
  if (!heap_floats(env, &a, p[3], p[0] * p[2], 0, &x, "int8Linear x") ||
      !heap_floats(env, &a, p[5], p[1], 1, &bias, "int8Linear bias") ||
      !heap_floats(env, &a, p[6], p[0] * p[1], 0, &y, "int8Linear y"))
    return NULL;
  uint8_t *packed = heap_bytes(env, &a, p[4], (double)vl_int8_packed_bytes(t.n, t.k), "int8Linear packed");
  if (!packed) return NULL;
  t.x = x;
  t.bias = bias;
  t.y = y;
  t.packed = packed;
  if (vl_int8_linear(&t) != 0) napi_throw_error(env, "VL_ACCEL", "int8Linear: out of memory");
  return NULL;
}

/* transpose(heap, [rank, xOff, yOff, shape[0..7], perm[0..7]]): 4-byte elements; y's dim i is x's dim perm[i]. */
static napi_value js_transpose(napi_env env, napi_callback_info info) {
  call_args a;
  if (!read_args(env, info, 3 + 2 * VL_TRANSPOSE_MAX_RANK, &a)) return NULL;
  const double *p = a.p;
  if (!positive_ints(env, p, 1)) return NULL;
  if (p[0] < 1 || p[0] > VL_TRANSPOSE_MAX_RANK) {
    napi_throw_range_error(env, "VL_ACCEL", "transpose: rank must be 1..8");
    return NULL;
  }
  vl_transpose_args t;
  memset(&t, 0, sizeof t);
  t.rank = (int)p[0];
  if (!positive_ints(env, p + 3, (size_t)t.rank)) return NULL;
  /* A permutation of 0..rank-1: then every index the kernel forms stays below the element count. */
  int seen[VL_TRANSPOSE_MAX_RANK] = {0};
  double n = 1;
  for (int d = 0; d < t.rank; d++) {
    const double q = p[3 + VL_TRANSPOSE_MAX_RANK + d];
    if (!(q >= 0) || q >= t.rank || q != (double)(int)q || seen[(int)q]) {
      napi_throw_range_error(env, "VL_ACCEL", "transpose: perm must be a permutation of 0..rank-1");
      return NULL;
    }
    seen[(int)q] = 1;
    t.perm[d] = (int)q;
    t.shape[d] = (int64_t)p[3 + d];
    n *= p[3 + d];
  }
  float *x, *y;
  if (!heap_floats(env, &a, p[1], n, 0, &x, "transpose x") || !heap_floats(env, &a, p[2], n, 0, &y, "transpose y")) return NULL;
  if (n == 0) return NULL;
  t.x = x;
  t.y = y;
  vl_transpose(&t);
  return NULL;
}

static napi_value js_set_threads(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK_NAPI(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t n = 1;
  if (argc < 1 || napi_get_value_int32(env, argv[0], &n) != napi_ok || n < 1 || n > 256) {
    napi_throw_range_error(env, "VL_ACCEL", "setThreads expects an integer in 1..256");
    return NULL;
  }
  if (n != vl_pool_threads()) vl_pool_start(n);
  napi_value out;
  CHECK_NAPI(env, napi_create_int32(env, vl_pool_threads(), &out));
  return out;
}

static napi_value make_string(napi_env env, const char *s) {
  napi_value v;
  if (napi_create_string_utf8(env, s ? s : "", NAPI_AUTO_LENGTH, &v) != napi_ok) return NULL;
  return v;
}

/* info(): what the binary runs with, for RuntimeInfo and bug reports. */
static napi_value js_info(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out, threads;
  CHECK_NAPI(env, napi_create_object(env, &out));
  CHECK_NAPI(env, napi_create_int32(env, vl_pool_threads(), &threads));
  CHECK_NAPI(env, napi_set_named_property(env, out, "threads", threads));
  CHECK_NAPI(env, napi_set_named_property(env, out, "simd", make_string(env, vl_kernels_simd())));
  CHECK_NAPI(env, napi_set_named_property(env, out, "blas", make_string(env, vl_blas_config())));
  CHECK_NAPI(env, napi_set_named_property(env, out, "blasCore", make_string(env, vl_blas_core())));
  CHECK_NAPI(env, napi_set_named_property(env, out, "int8", make_string(env, vl_int8_kernel())));
  napi_value abi;
  CHECK_NAPI(env, napi_create_int32(env, VL_ACCEL_ABI, &abi));
  CHECK_NAPI(env, napi_set_named_property(env, out, "abi", abi));
  return out;
}

/* The pool is per process; it stops when the last Node environment using the addon goes away. */
static int env_count = 0;

static void cleanup(void *arg) {
  (void)arg;
  if (--env_count == 0) vl_pool_stop();
}

static napi_value init(napi_env env, napi_value exports) {
  static int initialised = 0;
  if (!initialised) {
    vl_kernels_init();
    vl_int8_init();
    vl_transpose_init();
    initialised = 1;
  }
  env_count++;
  napi_add_env_cleanup_hook(env, cleanup, NULL);
  napi_property_descriptor props[] = {
      {"gemm", NULL, js_gemm, NULL, NULL, NULL, napi_default, NULL},
      {"layerNormFwd", NULL, js_layernorm_fwd, NULL, NULL, NULL, napi_default, NULL},
      {"layerNormBwd", NULL, js_layernorm_bwd, NULL, NULL, NULL, napi_default, NULL},
      {"softmaxFwd", NULL, js_softmax_fwd, NULL, NULL, NULL, napi_default, NULL},
      {"attention", NULL, js_attention, NULL, NULL, NULL, napi_default, NULL},
      {"softmaxBwd", NULL, js_softmax_bwd, NULL, NULL, NULL, napi_default, NULL},
      {"biasAdd", NULL, js_bias_add, NULL, NULL, NULL, napi_default, NULL},
      {"colSum", NULL, js_col_sum, NULL, NULL, NULL, napi_default, NULL},
      {"geluFwd", NULL, js_gelu_fwd, NULL, NULL, NULL, napi_default, NULL},
      {"geluBwd", NULL, js_gelu_bwd, NULL, NULL, NULL, napi_default, NULL},
      {"int8Pack", NULL, js_int8_pack, NULL, NULL, NULL, napi_default, NULL},
      {"int8Linear", NULL, js_int8_linear, NULL, NULL, NULL, napi_default, NULL},
      {"transpose", NULL, js_transpose, NULL, NULL, NULL, napi_default, NULL},
      {"setThreads", NULL, js_set_threads, NULL, NULL, NULL, napi_default, NULL},
      {"info", NULL, js_info, NULL, NULL, NULL, napi_default, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
