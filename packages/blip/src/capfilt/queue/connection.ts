// The Redis side of a queued CapFilt job: the connection (checked within seconds, then reconnecting
// forever), the BullMQ queue's name and prefix, and the job's record in Redis (its options, identity,
// threshold and item layout), which workers and `capfilt status` read.
import { Redis } from 'ioredis';
import { VlError } from '@vl/core';
import type { RunIdentity } from '../identity.js';
import type { JournalHeader } from '../journal.js';

/** Key prefix of every BullMQ key of a CapFilt job (`vl:capfilt-<job>:…`). */
export const PREFIX = 'vl';

/** How long the first connection may take before the URL is reported as unreachable. */
export const CONNECT_TIMEOUT_MS = 5000;

/** The BullMQ queue of job `job` (BullMQ queue names may not hold ':'). */
export const queueName = (job: string) => `capfilt-${job}`;

/** The key of the job's record: outside the queue's keys, so clearing the queue's jobs keeps it. */
export const metaKey = (job: string) => `${PREFIX}:capfilt-meta:${job}`;

/** Job names become Redis keys and file names: a safe alphabet only. */
export function checkJobName(job: string | undefined): string {
  if (job === undefined || !/^[A-Za-z0-9._-]{1,100}$/.test(job))
    throw new VlError('INVALID_ARGUMENT', `--job must be 1–100 of A–Z a–z 0–9 . _ -, got '${job ?? ''}'`, { subject: '--job' });
  return job;
}

export function checkQueueUrl(url: string | undefined): string {
  if (url === undefined || !/^rediss?:\/\/[^\s]+$/.test(url))
    throw new VlError('INVALID_ARGUMENT', `--queue must be a redis://HOST:PORT/DB URL, got '${url ?? ''}'`, { subject: '--queue' });
  return url;
}

/** The job as the coordinator recorded it in Redis. */
export interface JobMeta {
  kind: 'capfilt-queue-job';
  version: 1;
  /** The run's fingerprint (identity.ts): item files and workers must carry the same. */
  fingerprint: string;
  identity: RunIdentity;
  /** The journal header the finish step writes (the single-machine run's header). */
  header: JournalHeader;
  /** Paths and options as the coordinator was given them; a worker's own flags replace the paths. */
  options: QueuedOptions;
  itemSize: number;
  items: number;
  /** Failures (or stalls) after which an item goes to the failed set. */
  attempts: number;
  created: string;
  /** Set when the coordinator has written the outputs: workers exit. */
  finished?: string;
}

/** The CapFilt options a worker needs, JSON-safe (no callbacks). */
export interface QueuedOptions {
  data: string[];
  images: string;
  out: string;
  captioner: string;
  filter: string;
  numCaptions: number;
  topP: number;
  beam?: number;
  threshold?: number;
  keepRate?: number;
  calibrateOn?: number;
  itc: boolean;
  int8?: boolean;
  batchSize: number;
  seed: number;
  maxLength: number;
}

/** What a work item carries in BullMQ. */
export interface ItemData {
  id: string;
  start: number;
  end: number;
  fingerprint: string;
}

/**
 * Connects to `url`: answers within CONNECT_TIMEOUT_MS or fails with QUEUE_UNREACHABLE naming the URL
 * and the cause (not a hang). The returned client reconnects on its own afterwards (a Redis restart)
 * and queues commands meanwhile, as BullMQ workers need (`maxRetriesPerRequest: null`).
 */
export async function connect(url: string): Promise<Redis> {
  const probe = new Redis(url, {
    lazyConnect: true,
    connectTimeout: CONNECT_TIMEOUT_MS,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    enableOfflineQueue: false,
  });
  let cause: Error | undefined; // the socket's error (ECONNREFUSED, ENOTFOUND); the rejection only says "closed"
  probe.on('error', (err: Error) => (cause ??= err));
  try {
    await withTimeout(
      (async () => {
        await probe.connect();
        await probe.ping();
      })(),
      CONNECT_TIMEOUT_MS + 1000,
    );
  } catch (err) {
    throw new VlError('QUEUE_UNREACHABLE', `cannot reach the queue: ${(cause ?? (err as Error)).message}`, {
      subject: url,
      hint: 'start Redis there (redis-server), or fix --queue',
    });
  } finally {
    probe.disconnect();
  }
  const client = new Redis(url, { maxRetriesPerRequest: null, retryStrategy: (times) => Math.min(times * 100, 2000) });
  client.on('error', () => undefined); // reconnects on its own; a lasting outage shows as no progress
  return client;
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${ms / 1000} s`)), ms))),
  ]).finally(() => clearTimeout(timer));
}

export async function readMeta(redis: Redis, job: string): Promise<JobMeta | null> {
  const s = await redis.get(metaKey(job));
  return s === null ? null : (JSON.parse(s) as JobMeta);
}

export async function writeMeta(redis: Redis, job: string, meta: JobMeta): Promise<void> {
  await redis.set(metaKey(job), JSON.stringify(meta));
}
