// A read-only zip reader (PKWARE APPNOTE 6.3) over random-access bytes: the central directory is read
// from the end of the file, each entry on demand, so a multi-GB archive is never held in memory. Browser-safe.
import { VlError, type VlErrorCode } from '../errors.js';

/** Random access to the bytes of one file (a file handle, a Blob, a buffer): what the zip reader reads from. */
export interface ByteSource {
  /** For messages: the file's path or name. */
  readonly name: string;
  readonly size: number;
  /** Exactly `length` bytes at `offset`; callers stay inside [0, size). */
  read(offset: number, length: number): Promise<Uint8Array>;
}

/** A ByteSource over bytes already in memory (reads are views, not copies). */
export function bytesSource(bytes: Uint8Array, name = '<buffer>'): ByteSource {
  return {
    name,
    size: bytes.length,
    read: (offset, length) => Promise.resolve(bytes.subarray(offset, offset + length)),
  };
}

export interface ZipEntry {
  name: string;
  /** 0 stored, 8 deflate (the only two read). */
  method: number;
  compressedSize: number;
  size: number;
  crc32: number;
  /** Offset of the entry's local header. */
  localHeaderOffset: number;
}

export interface ZipDirectory {
  source: ByteSource;
  /** Entries by name, in central-directory order. */
  entries: Map<string, ZipEntry>;
  /** Where the central directory starts: every entry's data ends before it. */
  directoryOffset: number;
  /** The CRC-32 used to check entries (a native one where the runtime has it). */
  crc32: (bytes: Uint8Array) => number;
}

export interface ZipOptions {
  /** A faster CRC-32 than the portable one (Node's zlib.crc32); must return an unsigned 32-bit value. */
  crc32?: (bytes: Uint8Array) => number;
}

/** Deflate can shrink data at most about 1032:1; a larger declared ratio is a lie (or a bomb). */
const MAX_DEFLATE_RATIO = 1032;
const EOCD_SIZE = 22;
const MAX_COMMENT = 0xffff;
const CDH_SIZE = 46;
const LFH_SIZE = 30;

export function zipError(
  code: VlErrorCode,
  source: ByteSource,
  entry: string | undefined,
  message: string,
  hint?: string,
  cause?: unknown,
): VlError {
  const subject = entry === undefined ? source.name : `${source.name}: ${entry}`;
  return new VlError(code, message, {
    subject,
    hint: hint ?? 'the file is damaged or is not a zip archive; download or save it again',
    cause,
  });
}

function u16(b: Uint8Array, at: number): number {
  return b[at]! | (b[at + 1]! << 8);
}
function u32(b: Uint8Array, at: number): number {
  return (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
}
/** A u64 as a number; values past 2^53 cannot be real offsets in a file we can read. */
function u64(b: Uint8Array, at: number, fail: () => never): number {
  const v = u32(b, at) + u32(b, at + 4) * 2 ** 32;
  if (!Number.isSafeInteger(v)) fail();
  return v;
}

/** True when the source starts like a zip archive (a local file header, or an empty archive's end record). */
export async function looksLikeZip(source: ByteSource): Promise<boolean> {
  if (source.size < 4) return false;
  const sig = u32(await source.read(0, 4), 0);
  return sig === 0x04034b50 || sig === 0x06054b50;
}

/** Finds the end-of-central-directory record: the last signature whose comment length reaches the file's end. */
async function findEndRecord(source: ByteSource): Promise<{ tail: Uint8Array; tailStart: number; at: number }> {
  const tailLength = Math.min(source.size, EOCD_SIZE + MAX_COMMENT);
  const tailStart = source.size - tailLength;
  const tail = await source.read(tailStart, tailLength);
  for (let at = tail.length - EOCD_SIZE; at >= 0; at--) {
    if (u32(tail, at) === 0x06054b50 && at + EOCD_SIZE + u16(tail, at + 20) === tail.length) return { tail, tailStart, at };
  }
  throw zipError(
    'CHECKPOINT_INVALID',
    source,
    undefined,
    `no zip end-of-central-directory record in the last ${tailLength} bytes (the file is truncated or is not a zip)`,
  );
}

interface DirectoryLocation {
  count: number;
  offset: number;
  size: number;
}

async function locateDirectory(source: ByteSource): Promise<DirectoryLocation> {
  const { tail, tailStart, at } = await findEndRecord(source);
  const bad = (message: string): never => {
    throw zipError('CHECKPOINT_INVALID', source, undefined, message);
  };
  const disk = u16(tail, at + 4);
  const cdDisk = u16(tail, at + 6);
  let count = u16(tail, at + 10);
  let size = u32(tail, at + 12);
  let offset = u32(tail, at + 16);
  if (count === 0xffff || size === 0xffffffff || offset === 0xffffffff) {
    // ZIP64: a locator sits right before the end record and points at the 64-bit end record.
    const locatorAt = tailStart + at - 20;
    if (locatorAt < 0) bad('zip64 fields are set but there is no room for a zip64 locator');
    const locator = await source.read(locatorAt, 20);
    if (u32(locator, 0) !== 0x07064b50) bad('zip64 fields are set but the zip64 locator is missing');
    const recordAt = u64(locator, 8, () => bad('zip64 end record offset is out of range'));
    if (recordAt + 56 > locatorAt) bad(`zip64 end record offset ${recordAt} is outside the file`);
    const record = await source.read(recordAt, 56);
    if (u32(record, 0) !== 0x06064b50) bad(`no zip64 end record at offset ${recordAt}`);
    if (u32(record, 16) !== 0 || u32(record, 20) !== 0) bad('multi-disk zip archives are not supported');
    count = u64(record, 32, () => bad('zip64 entry count is out of range'));
    size = u64(record, 40, () => bad('zip64 directory size is out of range'));
    offset = u64(record, 48, () => bad('zip64 directory offset is out of range'));
  } else if (disk !== 0 || cdDisk !== 0) {
    bad('multi-disk zip archives are not supported');
  }
  if (offset + size > source.size)
    bad(`the central directory [${offset}, ${offset + size}) runs past the end of the file (${source.size} bytes; truncated?)`);
  if (count * CDH_SIZE > size) bad(`the central directory claims ${count} entries but is only ${size} bytes`);
  return { count, offset, size };
}

/** Applies a zip64 extra field (id 1) to the 32-bit fields that hold their 0xFFFF… markers. */
function applyZip64Extra(extra: Uint8Array, entry: ZipEntry, fail: (m: string) => never): void {
  for (let at = 0; at + 4 <= extra.length;) {
    const id = u16(extra, at);
    const len = u16(extra, at + 2);
    const body = at + 4;
    if (body + len > extra.length) fail('an extra field runs past its entry');
    if (id === 0x0001) {
      let p = body;
      const next = (): number => {
        if (p + 8 > body + len) fail('the zip64 extra field is too short');
        const v = u64(extra, p, () => fail('a zip64 size or offset is out of range'));
        p += 8;
        return v;
      };
      if (entry.size === 0xffffffff) entry.size = next();
      if (entry.compressedSize === 0xffffffff) entry.compressedSize = next();
      if (entry.localHeaderOffset === 0xffffffff) entry.localHeaderOffset = next();
    }
    at = body + len;
  }
}

/** Reads and checks the central directory. Names must be unique; every entry must lie inside the file. */
export async function readZipDirectory(source: ByteSource, options: ZipOptions = {}): Promise<ZipDirectory> {
  if (source.size < EOCD_SIZE) {
    throw zipError('CHECKPOINT_INVALID', source, undefined, `file is ${source.size} bytes, too short to be a zip archive (truncated?)`);
  }
  const where = await locateDirectory(source);
  const dir = await source.read(where.offset, where.size);
  const decoder = new TextDecoder('utf-8', { fatal: false });
  const entries = new Map<string, ZipEntry>();
  let at = 0;
  for (let i = 0; i < where.count; i++) {
    const fail = (message: string): never => {
      throw zipError('CHECKPOINT_INVALID', source, `central directory entry ${i}`, message);
    };
    if (at + CDH_SIZE > dir.length || u32(dir, at) !== 0x02014b50) fail(`no central directory header at directory byte ${at}`);
    const flags = u16(dir, at + 8);
    const nameLength = u16(dir, at + 28);
    const extraLength = u16(dir, at + 30);
    const commentLength = u16(dir, at + 32);
    const end = at + CDH_SIZE + nameLength + extraLength + commentLength;
    if (end > dir.length) fail('the entry runs past the central directory');
    const name = decoder.decode(dir.subarray(at + CDH_SIZE, at + CDH_SIZE + nameLength));
    const entry: ZipEntry = {
      name,
      method: u16(dir, at + 10),
      crc32: u32(dir, at + 16),
      compressedSize: u32(dir, at + 20),
      size: u32(dir, at + 24),
      localHeaderOffset: u32(dir, at + 42),
    };
    applyZip64Extra(dir.subarray(at + CDH_SIZE + nameLength, at + CDH_SIZE + nameLength + extraLength), entry, fail);
    if (flags & 1) {
      throw zipError('CHECKPOINT_UNSUPPORTED', source, name, 'the entry is encrypted', 'save the checkpoint again without encryption');
    }
    if (entries.has(name)) fail(`two entries are named ${JSON.stringify(name)}; which one is meant is ambiguous`);
    if (entry.localHeaderOffset + LFH_SIZE + entry.compressedSize > where.offset) {
      throw zipError(
        'CHECKPOINT_INVALID',
        source,
        name,
        `the entry's data (local header at ${entry.localHeaderOffset}, ${entry.compressedSize} bytes) ` +
          'overlaps the central directory or runs past the file',
      );
    }
    entries.set(name, entry);
    at = end;
  }
  return { source, entries, directoryOffset: where.offset, crc32: options.crc32 ?? crc32 };
}

/** Where an entry's data starts: after its local header, whose name and extra lengths may differ from the central ones. */
async function dataStart(source: ByteSource, entry: ZipEntry, directoryEnd: number): Promise<number> {
  const header = await source.read(entry.localHeaderOffset, LFH_SIZE);
  if (u32(header, 0) !== 0x04034b50) {
    throw zipError('CHECKPOINT_INVALID', source, entry.name, `no local file header at offset ${entry.localHeaderOffset}`);
  }
  const nameLength = u16(header, 26);
  const start = entry.localHeaderOffset + LFH_SIZE + nameLength + u16(header, 28);
  if (start + entry.compressedSize > directoryEnd) {
    throw zipError(
      'CHECKPOINT_INVALID',
      source,
      entry.name,
      `the entry's data [${start}, ${start + entry.compressedSize}) runs past the file's data (truncated?)`,
    );
  }
  const localName = new TextDecoder().decode(await source.read(entry.localHeaderOffset + LFH_SIZE, nameLength));
  if (localName !== entry.name) {
    throw zipError(
      'CHECKPOINT_INVALID',
      source,
      entry.name,
      `the local header names ${JSON.stringify(localName)}, not the central directory's name`,
    );
  }
  return start;
}

export interface ReadEntryOptions {
  /** Largest size accepted for the entry (after inflation); larger entries fail before anything is allocated. */
  maxBytes: number;
  /** Check the entry's CRC-32 (default true). */
  verifyCrc?: boolean;
}

/**
 * Reads one entry whole. Stored entries are read straight from the source; deflated ones are inflated
 * in a stream that stops as soon as the output passes the declared size, so a zip bomb costs at most
 * `maxBytes`. The CRC-32 is checked.
 */
export async function readZipEntry(zip: ZipDirectory, entry: ZipEntry, options: ReadEntryOptions): Promise<Uint8Array> {
  const { source } = zip;
  if (entry.size > options.maxBytes) {
    throw zipError(
      'CHECKPOINT_INVALID',
      source,
      entry.name,
      `the entry is ${entry.size} bytes, over the ${options.maxBytes}-byte limit for it`,
    );
  }
  const start = await dataStart(source, entry, zip.directoryOffset);
  let bytes: Uint8Array;
  if (entry.method === 0) {
    if (entry.compressedSize !== entry.size) {
      throw zipError(
        'CHECKPOINT_INVALID',
        source,
        entry.name,
        `a stored entry has compressed size ${entry.compressedSize} but size ${entry.size}`,
      );
    }
    bytes = await source.read(start, entry.size);
  } else if (entry.method === 8) {
    bytes = await inflateEntry(source, entry, start);
  } else {
    throw zipError(
      'CHECKPOINT_UNSUPPORTED',
      source,
      entry.name,
      `compression method ${entry.method} is not supported (only stored and deflate)`,
      'save the checkpoint again with torch.save, which stores entries uncompressed',
    );
  }
  if (options.verifyCrc !== false && zip.crc32(bytes) >>> 0 !== entry.crc32) {
    throw zipError('CHECKPOINT_INVALID', source, entry.name, "CRC-32 mismatch: the entry's bytes are damaged");
  }
  return bytes;
}

/** Reads `length` bytes at `offset` inside a stored entry (no CRC check: the entry is not read whole). */
export async function readStoredRange(zip: ZipDirectory, entry: ZipEntry, offset: number, length: number): Promise<Uint8Array> {
  const { source } = zip;
  if (entry.method !== 0) throw zipError('CHECKPOINT_INVALID', source, entry.name, 'a partial read needs a stored entry');
  if (offset < 0 || offset + length > entry.size) {
    throw zipError(
      'CHECKPOINT_INVALID',
      source,
      entry.name,
      `bytes [${offset}, ${offset + length}) are outside the entry's ${entry.size} bytes`,
    );
  }
  const start = await dataStart(source, entry, zip.directoryOffset);
  return source.read(start + offset, length);
}

const INFLATE_CHUNK = 1 << 20;

async function inflateEntry(source: ByteSource, entry: ZipEntry, start: number): Promise<Uint8Array> {
  if (entry.size > entry.compressedSize * MAX_DEFLATE_RATIO + 1024) {
    throw zipError(
      'CHECKPOINT_INVALID',
      source,
      entry.name,
      `declares ${entry.size} bytes from ${entry.compressedSize} compressed bytes, more than deflate can produce (a zip bomb?)`,
    );
  }
  if (typeof DecompressionStream === 'undefined') {
    throw zipError(
      'CHECKPOINT_UNSUPPORTED',
      source,
      entry.name,
      'the entry is deflated and this runtime has no DecompressionStream',
      'use Node 18+ or a current browser',
    );
  }
  const out = new Uint8Array(entry.size);
  let written = 0;
  const stream = new DecompressionStream('deflate-raw');
  const writer = stream.writable.getWriter();
  const reader = stream.readable.getReader();
  const feed = (async (): Promise<void> => {
    for (let at = 0; at < entry.compressedSize; at += INFLATE_CHUNK) {
      const n = Math.min(INFLATE_CHUNK, entry.compressedSize - at);
      await writer.write(await source.read(start + at, n));
    }
    await writer.close();
  })();
  feed.catch(() => undefined); // its failure surfaces through the reader below
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (written + value.length > entry.size) {
        throw zipError(
          'CHECKPOINT_INVALID',
          source,
          entry.name,
          `inflates past its declared ${entry.size} bytes (a zip bomb?); stopped there`,
        );
      }
      out.set(value, written);
      written += value.length;
    }
    await feed;
  } catch (cause) {
    await reader.cancel().catch(() => undefined);
    await writer.abort().catch(() => undefined);
    if (cause instanceof VlError) throw cause;
    throw zipError('CHECKPOINT_INVALID', source, entry.name, `deflate data is corrupt: ${(cause as Error).message}`, undefined, cause);
  }
  if (written !== entry.size) {
    throw zipError('CHECKPOINT_INVALID', source, entry.name, `inflates to ${written} bytes, not the declared ${entry.size}`);
  }
  return out;
}

let crcTable: Uint32Array | undefined;

/** CRC-32 (IEEE, as zip uses), slicing by one byte. */
export function crc32(bytes: Uint8Array): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  const table = crcTable;
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = table[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
