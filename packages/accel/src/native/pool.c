/* The thread pool behind every parallel kernel (see pool.h). Workers spin briefly before sleeping
 * on a condition variable: kernels come back to back during a forward/backward pass, and a
 * futex wake-up costs tens of microseconds, which is a lot next to a 100 µs element-wise kernel. */
#include "pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

/* ~20-50 µs of polling: long enough to bridge the JS glue between two kernels, short enough not to
 * steal a shared core from other processes for long. */
#define SPIN_ITERATIONS 20000

static struct {
  int threads; /* including the caller */
  pthread_t *workers;
  pthread_mutex_t mu;
  pthread_cond_t start_cv;
  pthread_cond_t done_cv;
  /* Bumped for every job; workers compare it with the last one they ran. */
  atomic_ulong generation;
  int stopping;
  vl_task_fn fn;
  void *ctx;
  int ntasks;
  atomic_int next_task;
  atomic_int running; /* workers still inside the current job */
} pool = {
    .threads = 1,
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .start_cv = PTHREAD_COND_INITIALIZER,
    .done_cv = PTHREAD_COND_INITIALIZER,
};

/* One caller at a time: two Node threads (worker_threads) calling kernels would share the pool. */
static pthread_mutex_t call_mu = PTHREAD_MUTEX_INITIALIZER;

static void run_tasks(void) {
  for (;;) {
    int t = atomic_fetch_add_explicit(&pool.next_task, 1, memory_order_relaxed);
    if (t >= pool.ntasks) break;
    pool.fn(pool.ctx, t);
  }
}

static void *worker_main(void *arg) {
  /* The generation at creation, passed in: read here, a job posted before this thread first ran
   * would look already done and the pool would deadlock. */
  unsigned long seen = (unsigned long)(uintptr_t)arg;
  for (;;) {
    int spins = 0;
    while (atomic_load_explicit(&pool.generation, memory_order_acquire) == seen && spins < SPIN_ITERATIONS) {
      CPU_RELAX();
      spins++;
    }
    pthread_mutex_lock(&pool.mu);
    while (atomic_load(&pool.generation) == seen && !pool.stopping) pthread_cond_wait(&pool.start_cv, &pool.mu);
    if (pool.stopping) {
      pthread_mutex_unlock(&pool.mu);
      return NULL;
    }
    seen = atomic_load(&pool.generation);
    pthread_mutex_unlock(&pool.mu);

    run_tasks();

    if (atomic_fetch_sub_explicit(&pool.running, 1, memory_order_acq_rel) == 1) {
      pthread_mutex_lock(&pool.mu);
      pthread_cond_signal(&pool.done_cv);
      pthread_mutex_unlock(&pool.mu);
    }
  }
}

int vl_pool_start(int threads) {
  if (threads < 1) threads = 1;
  vl_pool_stop();
  if (threads == 1) return 0;
  pool.workers = (pthread_t *)calloc((size_t)(threads - 1), sizeof(pthread_t));
  if (!pool.workers) return -1;
  pool.stopping = 0;
  int started = 0;
  void *generation = (void *)(uintptr_t)atomic_load(&pool.generation);
  for (; started < threads - 1; started++) {
    if (pthread_create(&pool.workers[started], NULL, worker_main, generation) != 0) break;
  }
  pool.threads = started + 1;
  return started == threads - 1 ? 0 : -1;
}

void vl_pool_stop(void) {
  if (!pool.workers) return;
  pthread_mutex_lock(&pool.mu);
  pool.stopping = 1;
  pthread_cond_broadcast(&pool.start_cv);
  pthread_mutex_unlock(&pool.mu);
  for (int i = 0; i < pool.threads - 1; i++) pthread_join(pool.workers[i], NULL);
  free(pool.workers);
  pool.workers = NULL;
  pool.threads = 1;
  pool.stopping = 0;
}

int vl_pool_threads(void) { return pool.threads; }

void vl_parallel_for(vl_task_fn fn, void *ctx, int ntasks) {
  if (ntasks <= 0) return;
  if (pool.threads == 1 || ntasks == 1) {
    for (int t = 0; t < ntasks; t++) fn(ctx, t);
    return;
  }
  pthread_mutex_lock(&call_mu);
  pthread_mutex_lock(&pool.mu);
  pool.fn = fn;
  pool.ctx = ctx;
  pool.ntasks = ntasks;
  atomic_store(&pool.next_task, 0);
  atomic_store(&pool.running, pool.threads - 1);
  atomic_fetch_add_explicit(&pool.generation, 1, memory_order_release);
  pthread_cond_broadcast(&pool.start_cv);
  pthread_mutex_unlock(&pool.mu);

  run_tasks();

  /* Workers that find no task left still decrement `running`, so this always terminates. */
  int spins = 0;
  while (atomic_load_explicit(&pool.running, memory_order_acquire) > 0 && spins < SPIN_ITERATIONS) {
    CPU_RELAX();
    spins++;
  }
  pthread_mutex_lock(&pool.mu);
  while (atomic_load(&pool.running) > 0) pthread_cond_wait(&pool.done_cv, &pool.mu);
  pthread_mutex_unlock(&pool.mu);
  pthread_mutex_unlock(&call_mu);
}
