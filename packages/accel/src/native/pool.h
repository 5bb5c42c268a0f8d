/* A tiny fixed thread pool: parallel_for over task indices, the calling thread taking part.
 * Own threads (not OpenBLAS's) so matmuls and element-wise kernels share one set of workers and
 * OpenBLAS runs single-threaded inside each task: no two pools spinning against each other on
 * a 2-core machine. */
#ifndef VL_ACCEL_POOL_H
#define VL_ACCEL_POOL_H

/* fn(ctx, task) runs once for every task in [0, ntasks). */
typedef void (*vl_task_fn)(void *ctx, int task);

/* Starts `threads - 1` workers (the caller is the last one). Returns 0 on success. */
int vl_pool_start(int threads);
/* Stops and joins the workers; the pool runs everything inline afterwards. */
void vl_pool_stop(void);
/* Total threads that run tasks, the caller included. */
int vl_pool_threads(void);
/* Runs every task, in parallel when the pool has workers; returns when all are done. */
void vl_parallel_for(vl_task_fn fn, void *ctx, int ntasks);

#endif
