// Item files of a queued CapFilt job (no Redis needed): the ranges cover every position once, and an item
// file counts only when it is whole and this job's (fingerprint, range, one result per position in order).
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import type { RecordResult } from '../journal.js';
import { itemPath, itemRanges, listItemFiles, readItem, writeItem } from '../queue/items.js';

const out = mkdtempSync(join(tmpdir(), 'capfilt-items-'));
mkdirSync(join(out, 'items')); // the worker makes it before taking items
afterAll(() => rmSync(out, { recursive: true, force: true }));

const records = (start: number, end: number): RecordResult[] =>
  Array.from({ length: end - start }, (_, i) => ({ index: start + i, key: `train.jsonl:${start + i + 1}`, status: 'dropped' }));

it('splits positions 0…n-1 into items of the given size, the last one short', () => {
  const items = itemRanges(10, 4, 'fp');
  expect(items.map((i) => [i.start, i.end])).toEqual([
    [0, 4],
    [4, 8],
    [8, 10],
  ]);
  expect(items.map((i) => i.id)).toEqual(['0000000000-0000000004', '0000000004-0000000008', '0000000008-0000000010']);
  expect(itemRanges(0, 4, 'fp')).toEqual([]);
});

it('reads back what it wrote; a torn file, another fingerprint or a wrong range do not count', async () => {
  const [a, b] = itemRanges(8, 4, 'fp') as [ReturnType<typeof itemRanges>[0], ReturnType<typeof itemRanges>[0]];
  await writeItem(out, a, records(0, 4));
  expect(await readItem(out, a)).toEqual(records(0, 4));
  expect(await readItem(out, { ...a, fingerprint: 'other' })).toBeNull();
  expect(await readItem(out, b)).toBeNull(); // not written
  const text = readFileSync(itemPath(out, a.id), 'utf8');
  writeFileSync(itemPath(out, a.id), text.slice(0, text.length - 10)); // cut by a crash mid-write
  expect(await readItem(out, a)).toBeNull();
  await writeItem(out, b, records(4, 7)); // one record short
  expect(await readItem(out, b)).toBeNull();
  await writeItem(out, b, [...records(5, 8), ...records(4, 5)]); // out of order
  expect(await readItem(out, b)).toBeNull();
  expect([...(await listItemFiles(out))].sort()).toEqual([a.id, b.id]);
});

it('an item written twice holds the same bytes (at-least-once delivery is safe)', async () => {
  const [a] = itemRanges(4, 4, 'fp2') as [ReturnType<typeof itemRanges>[0]];
  await writeItem(out, a, records(0, 4));
  const first = readFileSync(itemPath(out, a.id));
  await writeItem(out, a, records(0, 4));
  expect(readFileSync(itemPath(out, a.id)).equals(first)).toBe(true);
});
