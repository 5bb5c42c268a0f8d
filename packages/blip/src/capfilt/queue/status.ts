// `blip capfilt status --queue URL --job NAME`: a queued job's progress from any machine that reaches
// Redis: items by state, records done, workers connected, rate and ETA over the items finished so far.
import { Queue } from 'bullmq';
import { VlError } from '@vl/core';
import { connect, type ItemData, PREFIX, queueName, readMeta } from './connection.js';

const duration = (s: number) =>
  !Number.isFinite(s) ? '?' : s < 90 ? `${Math.round(s)} s` : s < 5400 ? `${Math.round(s / 60)} min` : `${(s / 3600).toFixed(1)} h`;

/** The status lines of job `job`; QUEUE_UNREACHABLE within seconds, INVALID_ARGUMENT for an unknown job. */
export async function queueStatus(url: string, job: string): Promise<string[]> {
  const redis = await connect(url);
  const queue = new Queue<ItemData>(queueName(job), { connection: redis, prefix: PREFIX });
  queue.on('error', () => undefined);
  try {
    const meta = await readMeta(redis, job);
    if (!meta)
      throw new VlError('INVALID_ARGUMENT', `no CapFilt job '${job}' on ${url}`, {
        subject: '--job',
        hint: 'start it with blip capfilt --queue … --job …',
      });
    const total = meta.header.sourceRecords;
    const lines = [
      `job ${job}: fingerprint ${meta.fingerprint}, created ${meta.created}, out ${meta.options.out}`,
      `  ${total} records in ${meta.items} items of ${meta.itemSize}, threshold ${meta.header.threshold}, ${meta.attempts} attempts per item`,
    ];
    if (meta.finished) return [...lines, `  finished ${meta.finished}`];
    const counts = await queue.getJobCounts('completed', 'active', 'waiting', 'delayed', 'failed', 'prioritized', 'waiting-children');
    const completed = await queue.getJobs(['completed']);
    const done = completed.reduce((n, j) => n + j.data.end - j.data.start, 0);
    const first = Math.min(...completed.map((j) => j.processedOn ?? Infinity));
    const rate = done > 0 ? done / ((Date.now() - first) / 1000) : NaN;
    const workers = await queue.getWorkersCount();
    lines.push(
      `  items: ${counts.completed ?? 0} done, ${counts.active ?? 0} active, ${(counts.waiting ?? 0) + (counts.prioritized ?? 0)} waiting, ${counts.delayed ?? 0} retrying, ${counts.failed ?? 0} failed`,
      `  records: ${done}/${total} (${((100 * done) / Math.max(1, total)).toFixed(1)}%), ${workers} workers, ${Number.isFinite(rate) ? rate.toFixed(2) : '?'} records/s, ETA ${duration((total - done) / rate)}`,
    );
    for (const j of await queue.getFailed()) lines.push(`  failed item ${j.data.id}: ${j.failedReason} (after ${j.attemptsMade} attempts)`);
    return lines;
  } finally {
    await queue.close().catch(() => undefined);
    redis.disconnect();
  }
}
