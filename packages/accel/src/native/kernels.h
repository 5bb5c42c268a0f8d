/* The native kernels' C interface: plain pointers and sizes, no N-API (addon.c does the binding). */
#ifndef VL_ACCEL_KERNELS_H
#define VL_ACCEL_KERNELS_H

#include <stdint.h>

/* Picks the instruction set and puts OpenBLAS in single-threaded mode. Call once. */
void vl_kernels_init(void);
const char *vl_kernels_simd(void);
const char *vl_blas_config(void);
const char *vl_blas_core(void);

/* C[b] = act(op(A[b]) · op(B[b]) + bias) for b < batch; row-major; strides in floats (0 = shared). */
typedef struct {
  const float *a, *b;
  float *c;
  int trans_a, trans_b;
  int64_t m, n, k, batch;
  int64_t stride_a, stride_b, stride_c;
  /* NULL, or a bias broadcast over C: element (b, r, c) reads
   * bias[b·bias_batch_stride + r·bias_row_stride + c·bias_col_stride] (strides 0 broadcast). */
  const float *bias;
  int64_t bias_batch_stride, bias_row_stride, bias_col_stride;
  int activation; /* 0 linear, 1 relu, 2 relu6, 3 prelu, 4 leakyrelu, 5 sigmoid, 6 elu, 7 gelu, 8 gelu tanh */
  float leaky_alpha;
  const float *prelu; /* prelu_size (1 or n) floats */
  int64_t prelu_size;
} vl_gemm_args;

void vl_gemm(const vl_gemm_args *g);

/* Kernels over `rows` rows of length d. Unused pointers are NULL. */
typedef struct {
  int64_t rows, d;
  const float *x, *dy;
  const float *gamma, *beta; /* LayerNorm affine; beta is also bias_add's bias */
  float *y, *dx;
  float *mean, *rstd; /* LayerNorm statistics, one per row */
  float *dgamma, *dbeta;
  float eps;
} vl_rows_args;

void vl_layernorm_fwd(const vl_rows_args *a);
int vl_layernorm_bwd(const vl_rows_args *a); /* -1: out of memory */
void vl_softmax_fwd(const vl_rows_args *a);
void vl_softmax_bwd(const vl_rows_args *a);
void vl_bias_add(const vl_rows_args *a); /* y = x + beta per row */
int vl_col_sum(const vl_rows_args *a);   /* y[j] = Σ_rows x[r, j]; -1: out of memory */

/* Element-wise over n floats: y = f(x), or for a backward y = dy · f'(x). */
typedef struct {
  int64_t n;
  const float *x, *dy;
  float *y;
  int approx; /* GELU: 0 erf, 1 tanh */
} vl_map_args;

void vl_gelu_fwd(const vl_map_args *a);
void vl_gelu_bwd(const vl_map_args *a);

/* Inference attention, one pass per (batch, head): S = scale·Q·Kᵀ (+ mask), row softmax, O = S·V.
 * Q, K, V and O are strided views (strides in floats, column stride 1), so packed projections
 * ([B, T, 3D] qkv, [B, T, D] q) are read and the merged [B, T, D] output is written in place: no
 * head-split copies. Query batch b reads key/value batch kv_rows[b] (NULL: b). */
typedef struct {
  int64_t batch, heads, tq, tk, dh;
  const float *q, *k, *v;
  float *out;
  int64_t q_batch, q_head, q_row;
  int64_t k_batch, k_head, k_row;
  int64_t v_batch, v_head, v_row;
  int64_t o_batch, o_head, o_row;
  const int32_t *kv_rows;
  /* NULL, or an additive mask/bias: element (b, h, i, j) at m_batch·b + m_head·h + m_row·i + m_col·j. */
  const float *mask;
  int64_t m_batch, m_head, m_row, m_col;
  int mask_by_kv_row; /* 1: the mask's batch index is the key/value row (one padding row per context row) */
  float scale;
} vl_attention_args;

int vl_attention(const vl_attention_args *a); /* -1: out of memory */

/* Pieces shared by the two attention paths: the mask added to rows [i0, i0 + rows) of one head's scores (row
 * stride tk) and their softmax; whether the element-wise kernels run their AVX-512 build. */
void vl_attention_mask_softmax(const vl_attention_args *a, int64_t b, int64_t kb, int64_t h, int64_t i0, int64_t rows, float *s);
int vl_kernels_avx512(void);
/* Rows of scores to e^(s − max) in place, inv[r] = 1/Σ (the softmax before its normalisation). */
void vl_softmax_unnormalised_rows(float *s, int64_t rows, int64_t d, float *inv);

/* The blocked AVX-512 path for head size 64 (attention_fused.c): whether it takes these arguments, the floats of
 * scratch one task needs, and one (batch, head) pair; `packed` ({key batch, head}, start {-1, -1}) names the keys
 * already packed in the scratch, so pairs that share them skip the packing. */
int vl_attention_fused_applies(const vl_attention_args *a);
int64_t vl_attention_fused_scratch(const vl_attention_args *a);
void vl_attention_fused_pair(const vl_attention_args *a, int64_t b, int64_t h, float *scratch, int64_t *packed);

/* Dynamically quantised int8 linear layers (int8.c): y[m, n] = x[m, :] · w[n, :] + bias[n] with w packed
 * once by vl_int8_pack and x quantised per row at every call. */
void vl_int8_init(void);
const char *vl_int8_kernel(void);
int64_t vl_int8_packed_bytes(int64_t n, int64_t k);
void vl_int8_pack(const float *w, int64_t n, int64_t k, uint8_t *packed);

typedef struct {
  int64_t m, n, k;
  const float *x;          /* [m, k] */
  const uint8_t *packed;   /* vl_int8_packed_bytes(n, k) bytes */
  const float *bias;       /* NULL or [n] */
  float *y;                /* [m, n] */
} vl_int8_linear_args;

int vl_int8_linear(const vl_int8_linear_args *a); /* -1: out of memory */

/* Transpose of 4-byte elements (transpose.c): y = x permuted, output dim i = input dim perm[i].
 * The caller passes a valid permutation of rank ≤ VL_TRANSPOSE_MAX_RANK (addon.c checks it). */
#define VL_TRANSPOSE_MAX_RANK 8

typedef struct {
  int rank;
  int64_t shape[VL_TRANSPOSE_MAX_RANK]; /* the input's */
  int perm[VL_TRANSPOSE_MAX_RANK];
  const void *x;
  void *y;
} vl_transpose_args;

void vl_transpose_init(void);
void vl_transpose(const vl_transpose_args *a);

#endif
