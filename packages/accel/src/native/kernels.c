/* Native kernels on raw float pointers: batched OpenBLAS sgemm with a fused epilogue, and the
 * element-wise kernels of elementwise.inc, compiled three times (AVX-512, AVX2+FMA and baseline
 * x86-64) and picked at load time, so one prebuilt binary runs on any x86-64 CPU. Work is split over the
 * thread pool; OpenBLAS itself runs single-threaded inside each task. */
#include "kernels.h"

#include <cblas.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"

#define VL_SUFFIX _generic
#include "elementwise.inc"
#undef VL_SUFFIX

#if defined(__x86_64__)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define VL_SUFFIX _avx2
#include "elementwise.inc"
#undef VL_SUFFIX
#pragma GCC pop_options
#define VL_HAVE_AVX2_BUILD 1
/* 16 floats per vector: the exp/erf polynomials and the row reductions do half the instructions. Sums
 * over a row are added in another order than the AVX2 build's (last-bit differences, no more). */
#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma,prefer-vector-width=512")
#define VL_SUFFIX _avx512
#include "elementwise.inc"
#undef VL_SUFFIX
#pragma GCC pop_options
#endif

static int use_avx2 = 0, use_avx512 = 0;

#ifdef VL_HAVE_AVX2_BUILD
#define DISPATCH(name, ...) \
  (use_avx512 ? name##_avx512(__VA_ARGS__) : use_avx2 ? name##_avx2(__VA_ARGS__) : name##_generic(__VA_ARGS__))
#else
#define DISPATCH(name, ...) name##_generic(__VA_ARGS__)
#endif

void vl_kernels_init(void) {
#ifdef VL_HAVE_AVX2_BUILD
  __builtin_cpu_init();
  /* VL_ACCEL_SIMD=avx2 or baseline caps the build (tests compare them; read once, at load). */
  const char *cap = getenv("VL_ACCEL_SIMD");
  int baseline = cap && strcmp(cap, "baseline") == 0;
  use_avx2 = !baseline && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  use_avx512 = use_avx2 && !(cap && strcmp(cap, "avx2") == 0) && __builtin_cpu_supports("avx512f") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw");
#endif
  /* Our pool parallelises; OpenBLAS's own threads would compete with it for the same cores. */
  openblas_set_num_threads(1);
}

int vl_kernels_avx512(void) { return use_avx512; }
const char *vl_kernels_simd(void) { return use_avx512 ? "avx512" : use_avx2 ? "avx2+fma" : "x86-64 baseline"; }
const char *vl_blas_config(void) { return openblas_get_config(); }
const char *vl_blas_core(void) { return openblas_get_corename(); }

/* Below this much work a kernel runs on the calling thread: waking a worker costs more. */
#define MIN_PARALLEL_ELEMENTS 32768
#define MIN_PARALLEL_FLOPS 4.0e6

static int row_tasks(int64_t rows, int64_t d) {
  int threads = vl_pool_threads();
  if (threads == 1 || rows * d < MIN_PARALLEL_ELEMENTS || rows < 2) return 1;
  /* A few tasks per thread, so a core slowed by another process does not hold up the rest. */
  int64_t tasks = (int64_t)threads * 4;
  return (int)(tasks < rows ? tasks : rows);
}

static void task_rows(int64_t rows, int ntasks, int task, int64_t *r0, int64_t *r1) {
  *r0 = rows * task / ntasks;
  *r1 = rows * (task + 1) / ntasks;
}

/* ---------- batched sgemm ---------- */

typedef struct {
  const vl_gemm_args *g;
  int split; /* 0: whole batches per task; 1: row blocks of one batch; 2: column blocks */
  int chunks;
  int ntasks;
} gemm_job;

static void gemm_block(const vl_gemm_args *g, int64_t bi, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
  const int64_t m = g->m, n = g->n, k = g->k;
  const float *a = g->a + bi * g->stride_a;
  const float *b = g->b + bi * g->stride_b;
  float *c = g->c + bi * g->stride_c;
  const int64_t rows = r1 - r0, cols = c1 - c0;
  if (rows <= 0 || cols <= 0) return;
  float *cblk = c + r0 * n + c0;
  float beta = 0.0f;
  if (g->bias || k == 0) {
    /* C starts as the bias (or zeros) and sgemm adds into it: the bias costs no extra pass. */
    for (int64_t r = 0; r < rows; r++) {
      float *row = cblk + r * n;
      if (!g->bias) {
        memset(row, 0, (size_t)cols * sizeof(float));
        continue;
      }
      const float *src = g->bias + bi * g->bias_batch_stride + (r0 + r) * g->bias_row_stride + c0 * g->bias_col_stride;
      if (g->bias_col_stride == 1) {
        memcpy(row, src, (size_t)cols * sizeof(float));
      } else {
        for (int64_t j = 0; j < cols; j++) row[j] = src[0];
      }
    }
    beta = 1.0f;
  }
  if (k > 0) {
    const float *ablk = g->trans_a ? a + r0 : a + r0 * k;
    const float *bblk = g->trans_b ? b + c0 * k : b + c0;
    cblas_sgemm(CblasRowMajor, g->trans_a ? CblasTrans : CblasNoTrans, g->trans_b ? CblasTrans : CblasNoTrans,
                (int)rows, (int)cols, (int)k, 1.0f, ablk, g->trans_a ? (int)m : (int)k, bblk,
                g->trans_b ? (int)k : (int)n, beta, cblk, (int)n);
  }
  if (g->activation != 0) {
    const float *prelu = g->prelu;
    if (prelu && g->prelu_size != 1) prelu += c0;
    DISPATCH(vl_activate, cblk, rows, cols, n, g->activation, g->leaky_alpha, prelu, g->prelu_size);
  }
}

static void gemm_task(void *ctx, int task) {
  const gemm_job *job = (const gemm_job *)ctx;
  const vl_gemm_args *g = job->g;
  if (job->split == 0) {
    int64_t b0, b1;
    task_rows(g->batch, job->ntasks, task, &b0, &b1);
    for (int64_t bi = b0; bi < b1; bi++) gemm_block(g, bi, 0, g->m, 0, g->n);
    return;
  }
  int64_t bi = task / job->chunks;
  int chunk = task % job->chunks;
  int64_t lo, hi;
  if (job->split == 1) {
    task_rows(g->m, job->chunks, chunk, &lo, &hi);
    gemm_block(g, bi, lo, hi, 0, g->n);
  } else {
    task_rows(g->n, job->chunks, chunk, &lo, &hi);
    gemm_block(g, bi, 0, g->m, lo, hi);
  }
}

void vl_gemm(const vl_gemm_args *g) {
  if (g->batch <= 0 || g->m <= 0 || g->n <= 0) return;
  const int threads = vl_pool_threads();
  const double flops = 2.0 * (double)g->batch * (double)g->m * (double)g->n * (double)g->k;
  gemm_job job = {g, 0, 1, 1};
  if (threads > 1 && flops >= MIN_PARALLEL_FLOPS) {
    if (g->batch >= threads) {
      /* Independent batches (attention heads): one whole sgemm per task, no shared packing. */
      int64_t tasks = g->batch < (int64_t)threads * 8 ? g->batch : (int64_t)threads * 8;
      job.ntasks = (int)tasks;
    } else {
      /* One big product: split the larger output side into blocks, four per thread when the
       * blocks stay large (≥ 96 rows or columns, where sgemm still runs at full speed): on a
       * shared machine a preempted thread then holds up a quarter of its share, not all of it.
       * Each block packs B (or A) again, which costs ~1% at these sizes. */
      job.split = g->m >= g->n ? 1 : 2;
      int64_t side = job.split == 1 ? g->m : g->n;
      job.chunks = side >= (int64_t)threads * 4 * 96 ? threads * 4 : side >= (int64_t)threads * 16 ? threads : 1;
      job.ntasks = (int)(g->batch * job.chunks);
    }
  }
  vl_parallel_for(gemm_task, &job, job.ntasks);
}

/* ---------- row-wise kernels ---------- */

typedef struct {
  const vl_rows_args *r;
  int ntasks;
  float *partials; /* ntasks × 2d: per-task dgamma and dbeta sums */
} rows_job;

static void layernorm_fwd_task(void *ctx, int task) {
  const rows_job *job = (const rows_job *)ctx;
  const vl_rows_args *a = job->r;
  int64_t r0, r1;
  task_rows(a->rows, job->ntasks, task, &r0, &r1);
  const int64_t d = a->d;
  DISPATCH(vl_layernorm_fwd, a->x + r0 * d, a->gamma, a->beta, a->y + r0 * d, a->mean ? a->mean + r0 : NULL,
           a->rstd ? a->rstd + r0 : NULL, r1 - r0, d, a->eps);
}

void vl_layernorm_fwd(const vl_rows_args *a) {
  rows_job job = {a, row_tasks(a->rows, a->d), NULL};
  vl_parallel_for(layernorm_fwd_task, &job, job.ntasks);
}

static void layernorm_bwd_task(void *ctx, int task) {
  const rows_job *job = (const rows_job *)ctx;
  const vl_rows_args *a = job->r;
  int64_t r0, r1;
  task_rows(a->rows, job->ntasks, task, &r0, &r1);
  const int64_t d = a->d;
  float *part = job->partials + (int64_t)task * 2 * d;
  DISPATCH(vl_layernorm_bwd, a->dy + r0 * d, a->x + r0 * d, a->mean ? a->mean + r0 : NULL, a->rstd ? a->rstd + r0 : NULL,
           a->gamma, a->dx + r0 * d, a->dgamma ? part : NULL, a->dbeta ? part + d : NULL, r1 - r0, d, a->eps);
}

int vl_layernorm_bwd(const vl_rows_args *a) {
  rows_job job = {a, row_tasks(a->rows, a->d), NULL};
  const int64_t d = a->d;
  job.partials = (float *)calloc((size_t)job.ntasks * 2 * (size_t)d, sizeof(float));
  if (!job.partials) return -1;
  vl_parallel_for(layernorm_bwd_task, &job, job.ntasks);
  /* Sum the per-task partials in task order: the result does not depend on thread timing. */
  for (int64_t j = 0; j < d; j++) {
    float g = 0.0f, bsum = 0.0f;
    for (int t = 0; t < job.ntasks; t++) {
      g += job.partials[(int64_t)t * 2 * d + j];
      bsum += job.partials[(int64_t)t * 2 * d + d + j];
    }
    if (a->dgamma) a->dgamma[j] = g;
    if (a->dbeta) a->dbeta[j] = bsum;
  }
  free(job.partials);
  return 0;
}

static void softmax_fwd_task(void *ctx, int task) {
  const rows_job *job = (const rows_job *)ctx;
  const vl_rows_args *a = job->r;
  int64_t r0, r1;
  task_rows(a->rows, job->ntasks, task, &r0, &r1);
  DISPATCH(vl_softmax_fwd, a->x + r0 * a->d, a->y + r0 * a->d, r1 - r0, a->d);
}

void vl_softmax_fwd(const vl_rows_args *a) {
  rows_job job = {a, row_tasks(a->rows, a->d), NULL};
  vl_parallel_for(softmax_fwd_task, &job, job.ntasks);
}

static void softmax_bwd_task(void *ctx, int task) {
  const rows_job *job = (const rows_job *)ctx;
  const vl_rows_args *a = job->r;
  int64_t r0, r1;
  task_rows(a->rows, job->ntasks, task, &r0, &r1);
  DISPATCH(vl_softmax_bwd, a->dy + r0 * a->d, a->y + r0 * a->d, a->dx + r0 * a->d, r1 - r0, a->d);
}

void vl_softmax_bwd(const vl_rows_args *a) {
  rows_job job = {a, row_tasks(a->rows, a->d), NULL};
  vl_parallel_for(softmax_bwd_task, &job, job.ntasks);
}

static void bias_add_task(void *ctx, int task) {
  const rows_job *job = (const rows_job *)ctx;
  const vl_rows_args *a = job->r;
  int64_t r0, r1;
  task_rows(a->rows, job->ntasks, task, &r0, &r1);
  DISPATCH(vl_bias_add, a->x + r0 * a->d, a->beta, a->y + r0 * a->d, r1 - r0, a->d);
}

void vl_bias_add(const vl_rows_args *a) {
  rows_job job = {a, row_tasks(a->rows, a->d), NULL};
  vl_parallel_for(bias_add_task, &job, job.ntasks);
}

static void col_sum_task(void *ctx, int task) {
  const rows_job *job = (const rows_job *)ctx;
  const vl_rows_args *a = job->r;
  int64_t r0, r1;
  task_rows(a->rows, job->ntasks, task, &r0, &r1);
  DISPATCH(vl_col_sum, a->x + r0 * a->d, job->partials + (int64_t)task * a->d, r1 - r0, a->d);
}

int vl_col_sum(const vl_rows_args *a) {
  rows_job job = {a, row_tasks(a->rows, a->d), NULL};
  job.partials = (float *)calloc((size_t)job.ntasks * (size_t)a->d, sizeof(float));
  if (!job.partials) return -1;
  vl_parallel_for(col_sum_task, &job, job.ntasks);
  for (int64_t j = 0; j < a->d; j++) {
    float s = 0.0f;
    for (int t = 0; t < job.ntasks; t++) s += job.partials[(int64_t)t * a->d + j];
    a->y[j] = s;
  }
  free(job.partials);
  return 0;
}

/* ---------- element-wise kernels ---------- */

typedef struct {
  const vl_map_args *m;
  int ntasks;
} map_job;

static int map_tasks(int64_t n) {
  int threads = vl_pool_threads();
  if (threads == 1 || n < MIN_PARALLEL_ELEMENTS) return 1;
  return threads * 4;
}

static void gelu_fwd_task(void *ctx, int task) {
  const map_job *job = (const map_job *)ctx;
  const vl_map_args *a = job->m;
  int64_t i0, i1;
  task_rows(a->n, job->ntasks, task, &i0, &i1);
  DISPATCH(vl_gelu_fwd, a->x + i0, a->y + i0, i1 - i0, a->approx);
}

void vl_gelu_fwd(const vl_map_args *a) {
  map_job job = {a, map_tasks(a->n)};
  vl_parallel_for(gelu_fwd_task, &job, job.ntasks);
}

static void gelu_bwd_task(void *ctx, int task) {
  const map_job *job = (const map_job *)ctx;
  const vl_map_args *a = job->m;
  int64_t i0, i1;
  task_rows(a->n, job->ntasks, task, &i0, &i1);
  DISPATCH(vl_gelu_bwd, a->dy + i0, a->x + i0, a->y + i0, i1 - i0, a->approx);
}

void vl_gelu_bwd(const vl_map_args *a) {
  map_job job = {a, map_tasks(a->n)};
  vl_parallel_for(gelu_bwd_task, &job, job.ntasks);
}

/* ---------- inference attention ---------- */

typedef struct {
  const vl_attention_args *a;
  int ntasks;
  int failed;
} attention_job;

void vl_attention_mask_softmax(const vl_attention_args *a, int64_t b, int64_t kb, int64_t h, int64_t i0, int64_t rows, float *s) {
  const int64_t tk = a->tk;
  if (a->mask) {
    const float *m = a->mask + (a->mask_by_kv_row ? kb : b) * a->m_batch + h * a->m_head;
    for (int64_t i = 0; i < rows; i++) {
      float *row = s + i * tk;
      const float *mr = m + (i0 + i) * a->m_row;
      if (a->m_col == 1) {
        for (int64_t j = 0; j < tk; j++) row[j] += mr[j];
      } else {
        for (int64_t j = 0; j < tk; j++) row[j] += mr[j * a->m_col];
      }
    }
  }
  DISPATCH(vl_softmax_fwd, s, s, rows, tk);
}

void vl_softmax_unnormalised_rows(float *s, int64_t rows, int64_t d, float *inv) { DISPATCH(vl_softmax_unnormalised, s, rows, d, inv); }

static void attention_one(const vl_attention_args *a, int64_t b, int64_t h, float *s) {
  const int64_t kb = a->kv_rows ? (int64_t)a->kv_rows[b] : b;
  const float *q = a->q + b * a->q_batch + h * a->q_head;
  const float *k = a->k + kb * a->k_batch + h * a->k_head;
  const float *v = a->v + kb * a->v_batch + h * a->v_head;
  float *o = a->out + b * a->o_batch + h * a->o_head;
  const int64_t tq = a->tq, tk = a->tk;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)tq, (int)tk, (int)a->dh, a->scale, q, (int)a->q_row, k,
              (int)a->k_row, 0.0f, s, (int)tk);
  vl_attention_mask_softmax(a, b, kb, h, 0, tq, s);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)tq, (int)a->dh, (int)tk, 1.0f, s, (int)tk, v, (int)a->v_row,
              0.0f, o, (int)a->o_row);
}

static void attention_task(void *ctx, int task) {
  attention_job *job = (attention_job *)ctx;
  const vl_attention_args *a = job->a;
  const int64_t pairs = a->batch * a->heads;
  int64_t p0, p1;
  task_rows(pairs, job->ntasks, task, &p0, &p1);
  if (p1 <= p0) return;
  /* Head size 64 with AVX-512: the blocked kernel (attention_fused.c); else sgemm, softmax, sgemm. */
  const int fused = vl_attention_fused_applies(a);
  float *s = (float *)malloc((size_t)(fused ? vl_attention_fused_scratch(a) : a->tq * a->tk) * sizeof(float));
  if (!s) {
    job->failed = 1;
    return;
  }
  int64_t packed[2] = {-1, -1};
  for (int64_t p = p0; p < p1; p++) {
    if (fused) /* head-major, so query batches that share keys are neighbours */
      vl_attention_fused_pair(a, p % a->batch, p / a->batch, s, packed);
    else
      attention_one(a, p / a->heads, p % a->heads, s);
  }
  free(s);
}

int vl_attention(const vl_attention_args *a) {
  const int64_t pairs = a->batch * a->heads;
  if (pairs <= 0 || a->tq <= 0) return 0;
  const int threads = vl_pool_threads();
  const double flops = 4.0 * (double)pairs * (double)a->tq * (double)a->tk * (double)a->dh;
  attention_job job = {a, 1, 0};
  if (threads > 1 && flops >= MIN_PARALLEL_FLOPS && pairs >= 2) {
    int64_t tasks = (int64_t)threads * 4;
    job.ntasks = (int)(tasks < pairs ? tasks : pairs);
  }
  vl_parallel_for(attention_task, &job, job.ntasks);
  return job.failed ? -1 : 0;
}
