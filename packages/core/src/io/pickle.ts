// A pickle interpreter (protocols 0–5) that never runs code: globals resolve only through a caller's
// allow-list of plain JS functions; anything else becomes an inert placeholder that records its name
// and arguments. Deny-listed names (os.system, builtins.eval, …) fail as CHECKPOINT_UNSAFE. Browser-safe.
import { VlError } from '../errors.js';

// ---------------------------------------------------------------------------------------------
// Values

/** A Python tuple (lists are plain arrays). */
export class PyTuple {
  constructor(readonly items: readonly PyValue[]) {}
}

/** A Python dict or OrderedDict: keys in insertion order, plus attributes set by BUILD (e.g. `_metadata`). */
export class PyDict {
  readonly map = new Map<PyValue, PyValue>();
  readonly attributes = new Map<string, PyValue>();
}

/** A Python set or frozenset. */
export class PySet {
  constructor(readonly items: PyValue[] = []) {}
}

/** A global that is not on the allow-list: it can be stored, listed and compared, never called. */
export class PickleGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}
  get qualifiedName(): string {
    return `${this.module}.${this.name}`;
  }
}

/**
 * What calling (REDUCE, NEWOBJ, INST, OBJ) a placeholder global produced: nothing ran; the call's
 * arguments, any BUILD state and any appended items are kept for inspection.
 */
export class PickleObject {
  state: PyValue | undefined = undefined;
  readonly listItems: PyValue[] = [];
  readonly dictItems = new Map<PyValue, PyValue>();
  constructor(
    readonly global: PickleGlobal,
    readonly args: readonly PyValue[],
    readonly kwargs: PyValue | undefined = undefined,
  ) {}
}

/** An allow-listed global: a JS function that builds a value from plain arguments and runs nothing else. */
export class PickleCallable {
  constructor(
    readonly qualifiedName: string,
    readonly call: (args: readonly PyValue[]) => PyValue,
  ) {}
}

/** Values the caller's hooks create (tensors, storages); the interpreter only moves them around. */
export interface PickleOpaque {
  readonly pickleOpaque: string;
}

export type PyValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PyValue[]
  | PyTuple
  | PyDict
  | PySet
  | PickleGlobal
  | PickleObject
  | PickleCallable
  | PickleOpaque;

export interface UnpickleHooks {
  /**
   * The allow-list: a PickleCallable (or an inert value such as a dtype marker) for `module.name`, or
   * undefined to get a PickleGlobal placeholder.
   */
  findGlobal(module: string, name: string): PyValue | undefined;
  /** Resolves a persistent id (torch.save's storages); absent: persistent ids are invalid. */
  persistentLoad?(pid: PyValue): PyValue;
}

export interface UnpickleOptions {
  /** For messages: the file and entry, e.g. `model.pth: model/data.pkl`. */
  subject: string;
  /** Deepest MARK nesting accepted (default 256). */
  maxMarkDepth?: number;
  /** Longest LONG accepted, in bytes (default 4096). */
  maxLongBytes?: number;
}

export interface UnpickleResult {
  value: PyValue;
  /** Off-list globals the pickle referenced, by qualified name, with how often. */
  placeholders: Map<string, number>;
}

// ---------------------------------------------------------------------------------------------
// The deny-list: names whose only use in a pickle is to run code. They fail loudly rather than
// becoming placeholders, so a booby-trapped file is reported as such.

const UNSAFE_MODULES = new Set([
  'os',
  'posix',
  'nt',
  'subprocess',
  'sys',
  'shutil',
  'socket',
  'runpy',
  'importlib',
  'pickle',
  '_pickle',
  'marshal',
  'ctypes',
  'code',
  'codeop',
  'pty',
  'webbrowser',
  'multiprocessing',
  'pdb',
  'bdb',
  'timeit',
  'types',
  'asyncio',
  'signal',
  'tempfile',
  'io',
  '_io',
  'urllib',
  'http',
  'requests',
  'commands',
  'popen2',
]);
const UNSAFE_NAMES = new Set([
  'builtins.eval',
  'builtins.exec',
  'builtins.compile',
  'builtins.open',
  'builtins.__import__',
  'builtins.getattr',
  'builtins.setattr',
  'builtins.delattr',
  'builtins.globals',
  'builtins.locals',
  'builtins.vars',
  'builtins.input',
  'builtins.breakpoint',
  'builtins.apply',
  'builtins.execfile',
  'operator.attrgetter',
  'operator.methodcaller',
  'operator.itemgetter',
  'functools.partial',
  'functools.reduce',
  'torch.load',
  'torch.hub.load',
  'numpy.load',
  'numpy.testing._private.utils.runstring',
  'torch.serialization.load',
  'copyreg._reconstructor_unsafe',
]);

function isUnsafe(module: string, name: string): boolean {
  const mod = module === '__builtin__' ? 'builtins' : module;
  const root = mod.split('.')[0]!;
  if (UNSAFE_MODULES.has(root) || UNSAFE_NAMES.has(`${mod}.${name}`)) return true;
  // Dunder names (__import__, __getattribute__, …) reach interpreter internals; copyreg's __newobj__ is the one benign use.
  return name.startsWith('__') && name !== '__newobj__' && name !== '__newobj_ex__';
}

// ---------------------------------------------------------------------------------------------
// Opcodes (CPython Lib/pickle.py)

const OP = {
  MARK: 0x28,
  STOP: 0x2e,
  POP: 0x30,
  POP_MARK: 0x31,
  DUP: 0x32,
  FLOAT: 0x46,
  INT: 0x49,
  BININT: 0x4a,
  BININT1: 0x4b,
  LONG: 0x4c,
  BININT2: 0x4d,
  NONE: 0x4e,
  PERSID: 0x50,
  BINPERSID: 0x51,
  REDUCE: 0x52,
  STRING: 0x53,
  BINSTRING: 0x54,
  SHORT_BINSTRING: 0x55,
  UNICODE: 0x56,
  BINUNICODE: 0x58,
  APPEND: 0x61,
  BUILD: 0x62,
  GLOBAL: 0x63,
  DICT: 0x64,
  EMPTY_DICT: 0x7d,
  APPENDS: 0x65,
  GET: 0x67,
  BINGET: 0x68,
  INST: 0x69,
  LONG_BINGET: 0x6a,
  LIST: 0x6c,
  EMPTY_LIST: 0x5d,
  OBJ: 0x6f,
  PUT: 0x70,
  BINPUT: 0x71,
  LONG_BINPUT: 0x72,
  SETITEM: 0x73,
  TUPLE: 0x74,
  EMPTY_TUPLE: 0x29,
  SETITEMS: 0x75,
  BINFLOAT: 0x47,
  PROTO: 0x80,
  NEWOBJ: 0x81,
  EXT1: 0x82,
  EXT2: 0x83,
  EXT4: 0x84,
  TUPLE1: 0x85,
  TUPLE2: 0x86,
  TUPLE3: 0x87,
  NEWTRUE: 0x88,
  NEWFALSE: 0x89,
  LONG1: 0x8a,
  LONG4: 0x8b,
  BINBYTES: 0x42,
  SHORT_BINBYTES: 0x43,
  SHORT_BINUNICODE: 0x8c,
  BINUNICODE8: 0x8d,
  BINBYTES8: 0x8e,
  EMPTY_SET: 0x8f,
  ADDITEMS: 0x90,
  FROZENSET: 0x91,
  NEWOBJ_EX: 0x92,
  STACK_GLOBAL: 0x93,
  MEMOIZE: 0x94,
  FRAME: 0x95,
  BYTEARRAY8: 0x96,
  NEXT_BUFFER: 0x97,
  READONLY_BUFFER: 0x98,
} as const;

// ---------------------------------------------------------------------------------------------
// The interpreter

const MARK_HINT = 'the pickle is damaged or was not written by pickle/torch.save; save the checkpoint again';

class Unpickler {
  private pos = 0;
  private stack: PyValue[] = [];
  private readonly marks: PyValue[][] = [];
  private readonly memo = new Map<number, PyValue>();
  private readonly placeholders = new Map<string, number>();
  private readonly latin1 = new TextDecoder('latin1');
  private readonly utf8 = new TextDecoder('utf-8');
  private readonly maxMarkDepth: number;
  private readonly maxLongBytes: number;
  private opStart = 0;

  constructor(
    private readonly bytes: Uint8Array,
    private readonly hooks: UnpickleHooks,
    private readonly options: UnpickleOptions,
  ) {
    this.maxMarkDepth = options.maxMarkDepth ?? 256;
    this.maxLongBytes = options.maxLongBytes ?? 4096;
  }

  fail(
    message: string,
    code: 'CHECKPOINT_INVALID' | 'CHECKPOINT_UNSAFE' | 'CHECKPOINT_UNSUPPORTED' = 'CHECKPOINT_INVALID',
    hint = MARK_HINT,
  ): never {
    throw new VlError(code, `pickle byte ${this.opStart}: ${message}`, { subject: this.options.subject, hint });
  }

  // --- reading -------------------------------------------------------------------------------

  private take(n: number): Uint8Array {
    if (!Number.isSafeInteger(n) || n < 0 || this.pos + n > this.bytes.length) {
      this.fail(`needs ${n} bytes but only ${this.bytes.length - this.pos} remain (truncated?)`);
    }
    const out = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  private need(n: number): void {
    if (this.pos + n > this.bytes.length) this.fail(`needs ${n} bytes but only ${this.bytes.length - this.pos} remain (truncated?)`);
  }
  private u8(): number {
    this.need(1);
    return this.bytes[this.pos++]!;
  }
  private u16(): number {
    this.need(2);
    const b = this.bytes;
    const v = b[this.pos]! | (b[this.pos + 1]! << 8);
    this.pos += 2;
    return v;
  }
  private u32(): number {
    this.need(4);
    const b = this.bytes;
    const p = this.pos;
    this.pos += 4;
    return (b[p]! | (b[p + 1]! << 8) | (b[p + 2]! << 16) | (b[p + 3]! << 24)) >>> 0;
  }
  private i32(): number {
    return this.u32() | 0;
  }
  private u64(): number {
    const lo = this.u32();
    const hi = this.u32();
    const v = hi * 2 ** 32 + lo;
    if (!Number.isSafeInteger(v)) this.fail(`length ${hi}·2^32+${lo} is out of range`);
    return v;
  }
  private line(): string {
    const end = this.bytes.indexOf(0x0a, this.pos);
    if (end < 0) this.fail('a text argument has no terminating newline (truncated?)');
    const text = this.latin1.decode(this.bytes.subarray(this.pos, end));
    this.pos = end + 1;
    return text;
  }

  // --- the stack -----------------------------------------------------------------------------

  private push(v: PyValue): void {
    this.stack.push(v);
  }
  private pop(): PyValue {
    if (this.stack.length === 0) this.fail('pops an empty stack (or reaches past a MARK)');
    return this.stack.pop()!;
  }
  private top(): PyValue {
    if (this.stack.length === 0) this.fail('needs a value but the stack is empty');
    return this.stack[this.stack.length - 1]!;
  }
  private popMark(): PyValue[] {
    const items = this.stack;
    const below = this.marks.pop();
    if (below === undefined) this.fail('needs a MARK but there is none');
    this.stack = below;
    return items;
  }
  private memoGet(index: number): PyValue {
    if (!this.memo.has(index)) this.fail(`memo entry ${index} was never stored`);
    return this.memo.get(index)!;
  }

  // --- helpers for objects ---------------------------------------------------------------------

  private global(module: string, name: string): PyValue {
    if (isUnsafe(module, name)) {
      this.fail(
        `refers to ${module}.${name}, which can run code; nothing was run`,
        'CHECKPOINT_UNSAFE',
        'do not use this file: it tries to run code when loaded. Get the checkpoint from its original source',
      );
    }
    const allowed = this.hooks.findGlobal(module, name);
    if (allowed !== undefined) return allowed;
    const key = `${module}.${name}`;
    this.placeholders.set(key, (this.placeholders.get(key) ?? 0) + 1);
    return new PickleGlobal(module, name);
  }

  private call(callee: PyValue, args: readonly PyValue[], kwargs?: PyValue): PyValue {
    if (callee instanceof PickleCallable) {
      try {
        return callee.call(args);
      } catch (cause) {
        if (cause instanceof VlError) throw cause;
        this.fail(`${callee.qualifiedName}: ${(cause as Error).message}`);
      }
    }
    if (callee instanceof PickleGlobal) return new PickleObject(callee, args, kwargs);
    return this.fail(`calls ${describe(callee)}, which is not a global`);
  }

  private argsOf(v: PyValue, what: string): readonly PyValue[] {
    if (v instanceof PyTuple) return v.items;
    if (Array.isArray(v)) return v;
    return this.fail(`${what} needs an argument tuple, got ${describe(v)}`);
  }

  private setItem(target: PyValue, key: PyValue, value: PyValue): void {
    if (target instanceof PyDict) target.map.set(key, value);
    else if (target instanceof PickleObject) target.dictItems.set(key, value);
    else this.fail(`SETITEM on ${describe(target)}, which is not a dict`);
  }

  private append(target: PyValue, items: readonly PyValue[]): void {
    if (Array.isArray(target)) for (const v of items) target.push(v);
    else if (target instanceof PickleObject) target.listItems.push(...items);
    else if (target instanceof PySet) target.items.push(...items);
    else this.fail(`APPEND on ${describe(target)}, which is not a list`);
  }

  private build(target: PyValue, state: PyValue): void {
    if (target instanceof PickleObject) {
      target.state = state;
      return;
    }
    if (target instanceof PyDict) {
      // OrderedDict's state is its __dict__ (e.g. {'_metadata': …}), possibly as (dict, slots).
      const parts = state instanceof PyTuple ? state.items : [state];
      for (const part of parts) {
        if (part === null) continue;
        if (!(part instanceof PyDict)) this.fail(`BUILD on a dict with state ${describe(part)}`);
        for (const [k, v] of part.map) {
          if (typeof k !== 'string') this.fail('BUILD on a dict with a non-string attribute name');
          target.attributes.set(k, v);
        }
      }
      return;
    }
    this.fail(`BUILD on ${describe(target)}`);
  }

  private decodeLong(b: Uint8Array): number | bigint {
    if (b.length > this.maxLongBytes) this.fail(`an integer of ${b.length} bytes is over the ${this.maxLongBytes}-byte limit`);
    if (b.length === 0) return 0;
    let hex = '';
    for (let i = b.length - 1; i >= 0; i--) hex += b[i]!.toString(16).padStart(2, '0');
    let v = BigInt(`0x${hex}`);
    if (b[b.length - 1]! & 0x80) v -= 1n << BigInt(8 * b.length);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }

  private textInt(text: string, long: boolean): number | bigint | boolean {
    const t = long && text.endsWith('L') ? text.slice(0, -1) : text;
    if (!long && t === '00') return false;
    if (!long && t === '01') return true;
    if (!/^[-+]?\d+$/.test(t) || t.length > this.maxLongBytes * 3) this.fail(`${JSON.stringify(text.slice(0, 40))} is not an integer`);
    const v = BigInt(t);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }

  // --- the loop ------------------------------------------------------------------------------

  run(): UnpickleResult {
    const b = this.bytes;
    while (this.pos < b.length) {
      this.opStart = this.pos;
      const op = b[this.pos++]!;
      switch (op) {
        case OP.PROTO: {
          const v = this.u8();
          if (v > 5) this.fail(`protocol ${v} is newer than 5`, 'CHECKPOINT_UNSUPPORTED', 'save the checkpoint with protocol 2–5');
          break;
        }
        case OP.FRAME:
          this.u64();
          break;
        case OP.STOP: {
          const value = this.pop();
          return { value, placeholders: this.placeholders };
        }
        case OP.MARK:
          if (this.marks.length >= this.maxMarkDepth) this.fail(`nests MARKs deeper than ${this.maxMarkDepth}`);
          this.marks.push(this.stack);
          this.stack = [];
          break;
        case OP.POP:
          if (this.stack.length > 0) this.stack.pop();
          else this.popMark(); // pickle.py: POP with an empty stack after a MARK drops the mark
          break;
        case OP.POP_MARK:
          this.popMark();
          break;
        case OP.DUP:
          this.push(this.top());
          break;

        // memo
        case OP.PUT:
          this.memo.set(Number(this.textInt(this.line(), false)), this.top());
          break;
        case OP.BINPUT:
          this.memo.set(this.u8(), this.top());
          break;
        case OP.LONG_BINPUT:
          this.memo.set(this.u32(), this.top());
          break;
        case OP.MEMOIZE:
          this.memo.set(this.memo.size, this.top());
          break;
        case OP.GET:
          this.push(this.memoGet(Number(this.textInt(this.line(), false))));
          break;
        case OP.BINGET:
          this.push(this.memoGet(this.u8()));
          break;
        case OP.LONG_BINGET:
          this.push(this.memoGet(this.u32()));
          break;

        // scalars
        case OP.NONE:
          this.push(null);
          break;
        case OP.NEWTRUE:
          this.push(true);
          break;
        case OP.NEWFALSE:
          this.push(false);
          break;
        case OP.INT:
          this.push(this.textInt(this.line(), false));
          break;
        case OP.LONG:
          this.push(this.textInt(this.line(), true));
          break;
        case OP.BININT:
          this.push(this.i32());
          break;
        case OP.BININT1:
          this.push(this.u8());
          break;
        case OP.BININT2:
          this.push(this.u16());
          break;
        case OP.LONG1:
          this.push(this.decodeLong(this.take(this.u8())));
          break;
        case OP.LONG4: {
          const n = this.i32();
          if (n < 0) this.fail('LONG4 with a negative length');
          this.push(this.decodeLong(this.take(n)));
          break;
        }
        case OP.FLOAT: {
          // Python's repr: digits, or inf/-inf/nan, which Number() does not read.
          const text = this.line().trim();
          const special = /^([-+]?)(inf|infinity|nan)$/i.exec(text);
          const v = special ? (special[2]!.toLowerCase() === 'nan' ? NaN : special[1] === '-' ? -Infinity : Infinity) : Number(text);
          if ((Number.isNaN(v) && !special) || text === '') this.fail(`${JSON.stringify(text.slice(0, 40))} is not a float`);
          this.push(v);
          break;
        }
        case OP.BINFLOAT: {
          const f = this.take(8);
          this.push(new DataView(f.buffer, f.byteOffset, 8).getFloat64(0, false));
          break;
        }

        // strings and bytes
        case OP.STRING:
          this.push(decodeQuoted(this.line(), (m) => this.fail(m)));
          break;
        case OP.BINSTRING: {
          const n = this.i32();
          if (n < 0) this.fail('BINSTRING with a negative length');
          this.push(this.latin1.decode(this.take(n)));
          break;
        }
        case OP.SHORT_BINSTRING:
          this.push(this.latin1.decode(this.take(this.u8())));
          break;
        case OP.UNICODE:
          this.push(decodeRawUnicodeEscape(this.line()));
          break;
        case OP.BINUNICODE:
          this.push(this.utf8.decode(this.take(this.u32())));
          break;
        case OP.SHORT_BINUNICODE:
          this.push(this.utf8.decode(this.take(this.u8())));
          break;
        case OP.BINUNICODE8:
          this.push(this.utf8.decode(this.take(this.u64())));
          break;
        case OP.BINBYTES:
          this.push(this.take(this.u32()).slice());
          break;
        case OP.SHORT_BINBYTES:
          this.push(this.take(this.u8()).slice());
          break;
        case OP.BINBYTES8:
        case OP.BYTEARRAY8:
          this.push(this.take(this.u64()).slice());
          break;
        case OP.NEXT_BUFFER:
          this.fail('uses out-of-band buffers (protocol 5 NEXT_BUFFER), which a file cannot carry', 'CHECKPOINT_UNSUPPORTED');
          break;
        case OP.READONLY_BUFFER:
          this.top();
          break;

        // containers
        case OP.EMPTY_TUPLE:
          this.push(new PyTuple([]));
          break;
        case OP.TUPLE1:
          this.push(new PyTuple([this.pop()]));
          break;
        case OP.TUPLE2: {
          const b2 = this.pop();
          this.push(new PyTuple([this.pop(), b2]));
          break;
        }
        case OP.TUPLE3: {
          const c3 = this.pop();
          const b3 = this.pop();
          this.push(new PyTuple([this.pop(), b3, c3]));
          break;
        }
        case OP.TUPLE:
          this.push(new PyTuple(this.popMark()));
          break;
        case OP.EMPTY_LIST:
          this.push([]);
          break;
        case OP.LIST:
          this.push(this.popMark());
          break;
        case OP.APPEND: {
          const v = this.pop();
          this.append(this.top(), [v]);
          break;
        }
        case OP.APPENDS: {
          const items = this.popMark();
          this.append(this.top(), items);
          break;
        }
        case OP.EMPTY_DICT:
          this.push(new PyDict());
          break;
        case OP.DICT: {
          const items = this.popMark();
          if (items.length % 2 !== 0) this.fail('DICT with an odd number of items');
          const d = new PyDict();
          for (let i = 0; i < items.length; i += 2) d.map.set(items[i]!, items[i + 1]!);
          this.push(d);
          break;
        }
        case OP.SETITEM: {
          const value = this.pop();
          const key = this.pop();
          this.setItem(this.top(), key, value);
          break;
        }
        case OP.SETITEMS: {
          const items = this.popMark();
          if (items.length % 2 !== 0) this.fail('SETITEMS with an odd number of items');
          const target = this.top();
          for (let i = 0; i < items.length; i += 2) this.setItem(target, items[i]!, items[i + 1]!);
          break;
        }
        case OP.EMPTY_SET:
          this.push(new PySet());
          break;
        case OP.ADDITEMS: {
          const items = this.popMark();
          const target = this.top();
          if (!(target instanceof PySet)) this.fail(`ADDITEMS on ${describe(target)}, which is not a set`);
          target.items.push(...items);
          break;
        }
        case OP.FROZENSET:
          this.push(new PySet(this.popMark()));
          break;

        // globals and objects
        case OP.GLOBAL: {
          const module = this.line();
          const name = this.line();
          this.push(this.global(module, name));
          break;
        }
        case OP.STACK_GLOBAL: {
          const name = this.pop();
          const module = this.pop();
          if (typeof module !== 'string' || typeof name !== 'string') this.fail('STACK_GLOBAL needs two strings');
          this.push(this.global(module, name));
          break;
        }
        case OP.EXT1:
        case OP.EXT2:
        case OP.EXT4: {
          const code = op === OP.EXT1 ? this.u8() : op === OP.EXT2 ? this.u16() : this.i32();
          this.fail(`uses copyreg extension code ${code}, which torch.save never writes`, 'CHECKPOINT_UNSUPPORTED');
          break;
        }
        case OP.REDUCE: {
          const args = this.argsOf(this.pop(), 'REDUCE');
          const callee = this.pop();
          this.push(this.call(callee, args));
          break;
        }
        case OP.NEWOBJ: {
          const args = this.argsOf(this.pop(), 'NEWOBJ');
          const cls = this.pop();
          this.push(this.call(cls, args));
          break;
        }
        case OP.NEWOBJ_EX: {
          const kwargs = this.pop();
          const args = this.argsOf(this.pop(), 'NEWOBJ_EX');
          const cls = this.pop();
          if (cls instanceof PickleCallable) this.fail(`NEWOBJ_EX with keyword arguments on ${cls.qualifiedName}`);
          this.push(this.call(cls, args, kwargs));
          break;
        }
        case OP.INST: {
          const module = this.line();
          const name = this.line();
          const args = this.popMark();
          this.push(this.call(this.global(module, name), args));
          break;
        }
        case OP.OBJ: {
          const items = this.popMark();
          if (items.length === 0) this.fail('OBJ without a class');
          this.push(this.call(items[0]!, items.slice(1)));
          break;
        }
        case OP.BUILD: {
          const state = this.pop();
          this.build(this.top(), state);
          break;
        }
        case OP.PERSID:
        case OP.BINPERSID: {
          const pid = op === OP.PERSID ? this.line() : this.pop();
          if (!this.hooks.persistentLoad) this.fail('has a persistent id, which this file type does not allow');
          this.push(this.hooks.persistentLoad(pid));
          break;
        }
        default:
          this.fail(`unknown opcode 0x${op.toString(16).padStart(2, '0')}`);
      }
    }
    this.opStart = this.pos;
    return this.fail('ends without STOP (truncated?)');
  }
}

/** Interprets a pickle. Every failure is a VlError naming `options.subject` and the byte. */
export function unpickle(bytes: Uint8Array, hooks: UnpickleHooks, options: UnpickleOptions): UnpickleResult {
  return new Unpickler(bytes, hooks, options).run();
}

// ---------------------------------------------------------------------------------------------
// Text forms (protocol 0)

/** A Python 2 `repr` string: quotes, then backslash escapes (\\ \' \" \n \t \r \xHH and octal). */
function decodeQuoted(text: string, fail: (m: string) => never): string {
  const q = text[0];
  if (text.length < 2 || (q !== "'" && q !== '"') || text[text.length - 1] !== q) fail('STRING argument is not quoted');
  const body = text.slice(1, -1);
  const simple: Record<string, string> = {
    n: '\n',
    t: '\t',
    r: '\r',
    '\\': '\\',
    "'": "'",
    '"': '"',
    a: '\x07',
    b: '\b',
    f: '\f',
    v: '\v',
  };
  return body.replace(/\\(x[0-9a-fA-F]{2}|[0-7]{1,3}|.)/g, (_, e: string) => {
    if (e[0] === 'x') return String.fromCharCode(parseInt(e.slice(1), 16));
    if (/^[0-7]/.test(e)) return String.fromCharCode(parseInt(e, 8) & 0xff);
    return simple[e] ?? `\\${e}`;
  });
}

/** Python's raw-unicode-escape: \uXXXX and \UXXXXXXXX, every other character as it is. */
function decodeRawUnicodeEscape(text: string): string {
  return text.replace(/\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})/g, (_, a: string | undefined, b: string | undefined) => {
    const cp = parseInt((a ?? b)!, 16);
    return cp <= 0x10ffff ? String.fromCodePoint(cp) : '\ufffd';
  });
}

// ---------------------------------------------------------------------------------------------
// Describing values (for messages and reports)

/** A short description of a value's type (never its content, which may be huge). */
export function describe(v: PyValue | undefined): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'None';
  if (typeof v === 'boolean') return 'a bool';
  if (typeof v === 'number' || typeof v === 'bigint') return 'an int/float';
  if (typeof v === 'string') return 'a str';
  if (v instanceof Uint8Array) return 'bytes';
  if (Array.isArray(v)) return 'a list';
  if (v instanceof PyTuple) return 'a tuple';
  if (v instanceof PyDict) return 'a dict';
  if (v instanceof PySet) return 'a set';
  if (v instanceof PickleGlobal) return `the global ${v.qualifiedName} (not allow-listed)`;
  if (v instanceof PickleObject) return `a placeholder ${v.global.qualifiedName}(…) (not allow-listed, not run)`;
  if (v instanceof PickleCallable) return `the function ${v.qualifiedName}`;
  return v.pickleOpaque;
}
