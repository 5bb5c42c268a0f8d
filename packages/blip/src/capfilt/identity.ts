// What a CapFilt run is made of, for resuming and merging safely: the options that change results,
// the input files (real path, size, mtime, and a content hash of list files), the image root and
// both checkpoints (a hash of every file in their folders). Also: --out may not hold any input.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, realpath, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { VlError } from '@vl/core';

export interface DataFileIdentity {
  path: string;
  size: number;
  mtimeMs: number;
  /** Content hash of list files (JSONL/CSV/JSON); shards (.tar) are identified by size and mtime. */
  sha256: string | null;
}

export interface CheckpointIdentity {
  dir: string;
  /** File name → SHA-256 of its content, for every file of the checkpoint folder. */
  files: Record<string, string>;
}

export interface RunIdentity {
  /** Options that change results (shard included: another shard is another run). */
  options: Record<string, unknown>;
  imageRoot: string;
  data: DataFileIdentity[];
  captioner: CheckpointIdentity;
  filter: CheckpointIdentity;
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) h.update(chunk);
  return h.digest('hex');
}

/** Real path of `p`, or of its nearest existing ancestor joined with the rest when it does not exist yet. */
export async function realpathLoose(p: string): Promise<string> {
  const abs = resolve(p);
  try {
    return await realpath(abs);
  } catch {
    const parent = dirname(abs);
    return parent === abs ? abs : join(await realpathLoose(parent), basename(abs));
  }
}

export async function dataIdentity(files: readonly string[]): Promise<DataFileIdentity[]> {
  const out: DataFileIdentity[] = [];
  for (const f of files) {
    const path = await realpathLoose(f);
    const st = await stat(path).catch(() => null);
    if (!st?.isFile()) throw new VlError('DATA_INVALID', 'dataset file not found (or not a regular file)', { subject: f });
    out.push({ path, size: st.size, mtimeMs: st.mtimeMs, sha256: path.toLowerCase().endsWith('.tar') ? null : await sha256File(path) });
  }
  return out;
}

/** Weights files: a checkpoint given as one of these is that file plus the other (non-weights) files of its folder. */
const WEIGHTS_FILE = /\.(safetensors|pth|pt|bin|ckpt)$/i;

/**
 * A checkpoint folder, every file hashed; or a weights file (e.g. an original BLIP `.pth`): that file and its
 * folder's other files that are not weights (config.json, vocab.txt, …), so a second checkpoint kept in the same
 * folder is not part of it.
 */
export async function checkpointIdentity(path: string): Promise<CheckpointIdentity> {
  const real = await realpathLoose(path);
  const isFile = (await stat(real).catch(() => null))?.isFile() ?? false;
  const dir = isFile ? dirname(real) : real;
  const files: Record<string, string> = {};
  let names: string[];
  try {
    names = (await readdir(dir)).sort();
  } catch (err) {
    throw new VlError('CONFIG_INVALID', `cannot read the checkpoint folder: ${(err as Error).message}`, { subject: path });
  }
  for (const name of names) {
    if (isFile && WEIGHTS_FILE.test(name) && name !== basename(real)) continue;
    const st = await stat(join(dir, name)).catch(() => null);
    if (st?.isFile()) files[name] = await sha256File(join(dir, name));
  }
  return { dir: isFile ? real : dir, files };
}

export function fingerprintOf(id: RunIdentity): string {
  return createHash('sha256').update(JSON.stringify(id)).digest('hex').slice(0, 16);
}

const show = (v: unknown) => (v === undefined ? 'none' : JSON.stringify(v));

function diffCheckpoint(role: string, a: CheckpointIdentity, b: CheckpointIdentity, out: string[]): void {
  if (a.dir !== b.dir) out.push(`${role} folder ${a.dir} → ${b.dir}`);
  for (const name of new Set([...Object.keys(a.files), ...Object.keys(b.files)])) {
    if (a.files[name] !== b.files[name])
      out.push(`${role} file ${name} ${a.files[name] === undefined ? 'added' : b.files[name] === undefined ? 'removed' : 'changed'}`);
  }
}

/**
 * What differs between the run a journal was written by and this one, in words. With `portable`
 * (merging shards run on other machines) paths and mtimes are not compared, only names, sizes,
 * content hashes and options other than the shard.
 */
export function diffIdentity(a: RunIdentity, b: RunIdentity, portable = false): string[] {
  const out: string[] = [];
  for (const k of new Set([...Object.keys(a.options), ...Object.keys(b.options)])) {
    if (portable && k === 'shard') continue;
    if (show(a.options[k]) !== show(b.options[k])) out.push(`option ${k} ${show(a.options[k])} → ${show(b.options[k])}`);
  }
  if (!portable && a.imageRoot !== b.imageRoot) out.push(`image root ${a.imageRoot} → ${b.imageRoot}`);
  if (a.data.length !== b.data.length) out.push(`${a.data.length} data files → ${b.data.length}`);
  a.data.forEach((d, i) => {
    const e = b.data[i];
    if (!e) return;
    const name = portable ? basename(d.path) : d.path;
    if (portable ? basename(d.path) !== basename(e.path) : d.path !== e.path) out.push(`data file ${d.path} → ${e.path}`);
    else if (d.size !== e.size) out.push(`data file ${name}: size ${d.size} → ${e.size} bytes`);
    else if (d.sha256 !== e.sha256) out.push(`data file ${name}: content changed`);
    else if (!portable && d.mtimeMs !== e.mtimeMs)
      out.push(`data file ${name}: modified (mtime ${new Date(d.mtimeMs).toISOString()} → ${new Date(e.mtimeMs).toISOString()})`);
  });
  const noDir = (c: CheckpointIdentity): CheckpointIdentity => (portable ? { dir: '', files: c.files } : c);
  diffCheckpoint('captioner', noDir(a.captioner), noDir(b.captioner), out);
  diffCheckpoint('filter', noDir(a.filter), noDir(b.filter), out);
  return out;
}

const inside = (child: string, parent: string) => child === parent || child.startsWith(parent.endsWith(sep) ? parent : parent + sep);

/** Refuses an output folder that is, or contains, an input file or the image root (OUTPUT_CONFLICT). */
export async function checkOutSeparate(out: string, inputs: readonly string[], imageRoot: string | null): Promise<void> {
  const realOut = await realpathLoose(out);
  const st = await stat(realOut).catch(() => null);
  if (st && !st.isDirectory()) throw new VlError('OUTPUT_CONFLICT', '--out exists and is not a folder', { subject: out });
  for (const f of inputs) {
    const real = await realpathLoose(f);
    if (inside(real, realOut)) {
      throw new VlError('OUTPUT_CONFLICT', `--out contains the input ${f}; its outputs could overwrite it`, {
        subject: out,
        hint: 'write to a new folder, e.g. a subfolder next to the data',
      });
    }
  }
  if (imageRoot !== null) {
    const real = await realpathLoose(imageRoot);
    if (inside(real, realOut)) {
      throw new VlError('OUTPUT_CONFLICT', `--out contains the image root ${imageRoot}`, {
        subject: out,
        hint: 'write to a new folder outside the images',
      });
    }
  }
}
