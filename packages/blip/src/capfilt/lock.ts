// One writer per CapFilt output folder: `capfilt.lock` is created atomically (a temp file hard-linked
// to the lock name, which fails when the name exists) and holds the owner's pid, host and process
// start time. A lock whose owner is gone (same host, pid not running or reused) is stale and taken over.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { link, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { VlError } from '@vl/core';

export const LOCK_FILE = 'capfilt.lock';

export interface LockOwner {
  pid: number;
  host: string;
  /** Linux: the process start time in clock ticks (/proc/<pid>/stat field 22), to tell a reused pid apart. */
  procStart: string | null;
  /** Random per acquisition: two runs inside one process have the same pid. */
  token: string;
  since: string;
}

/** Tokens of the locks this process holds (a lock with our pid but another token is a leftover). */
const held = new Set<string>();

function procStart(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may contain spaces and parentheses) start after the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as { code?: string }).code === 'EPERM';
  }
}

/** Whether the recorded owner cannot still be running (only decidable on the owner's host). */
export function isStale(owner: LockOwner): boolean {
  if (owner.host !== hostname()) return false;
  if (owner.pid === process.pid) return !held.has(owner.token);
  if (!running(owner.pid)) return true;
  const start = procStart(owner.pid);
  return owner.procStart !== null && start !== null && start !== owner.procStart;
}

function describeOwner(o: LockOwner): string {
  return `pid ${o.pid} on ${o.host} since ${o.since}`;
}

async function readOwner(path: string): Promise<LockOwner | null> {
  try {
    const o = JSON.parse(await readFile(path, 'utf8')) as LockOwner;
    return typeof o.pid === 'number' && typeof o.host === 'string' ? o : null;
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return null;
    // Unreadable or not ours: treated as held, the user decides.
    return { pid: -1, host: 'unknown', procStart: null, token: '', since: 'unknown' };
  }
}

export interface OutLock {
  path: string;
  release(): Promise<void>;
}

/** Takes the folder's lock or refuses (OUTPUT_LOCKED, naming the holder). The folder must exist. */
export async function acquireOutLock(dir: string): Promise<OutLock> {
  const path = join(dir, LOCK_FILE);
  const owner: LockOwner = {
    pid: process.pid,
    host: hostname(),
    procStart: procStart(process.pid),
    token: randomBytes(8).toString('hex'),
    since: new Date().toISOString(),
  };
  const tmp = join(dir, `.${LOCK_FILE}.${owner.token}.tmp`);
  await writeFile(tmp, `${JSON.stringify(owner)}\n`);
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        await link(tmp, path);
        held.add(owner.token);
        break;
      } catch (err) {
        if ((err as { code?: string }).code !== 'EEXIST' || attempt >= 3) throw err;
      }
      const current = await readOwner(path);
      if (current === null) continue; // released in between
      if (!isStale(current)) {
        throw new VlError('OUTPUT_LOCKED', `another CapFilt run writes to this folder (${describeOwner(current)})`, {
          subject: dir,
          hint: `wait for it, or use another --out; if that process is gone (another machine, or a crash), delete ${path}`,
        });
      }
      // Stale: remove it only if it is still the same stale lock, then try again.
      const again = await readOwner(path);
      if (again && again.token === current.token) await rm(path, { force: true });
    }
  } finally {
    await rm(tmp, { force: true });
  }
  return {
    path,
    async release() {
      const current = await readOwner(path);
      if (current?.token === owner.token) await rm(path, { force: true });
      held.delete(owner.token);
    },
  };
}
