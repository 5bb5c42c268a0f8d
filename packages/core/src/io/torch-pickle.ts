// What torch.save's pickle may build: storages, tensor views, OrderedDicts, sizes, dtypes. The allow-list
// maps each permitted global to a plain JS function; everything else stays a placeholder. Browser-safe.
import { describe, PickleCallable, PyDict, PySet, PyTuple, type PickleOpaque, type PyValue } from './pickle.js';
import type { SafetensorsDtype } from './safetensors.js';

// ---------------------------------------------------------------------------------------------
// What the pickle's allow-listed globals build

/** A storage class global (`torch.FloatStorage`…); `dtype` is undefined for kinds this reader cannot decode. */
export class TorchStorageType implements PickleOpaque {
  readonly pickleOpaque = 'a torch storage class';
  constructor(
    readonly name: string,
    readonly dtype: SafetensorsDtype | undefined,
  ) {}
}

/** A storage named by a persistent id: its bytes are the zip entry `data/<key>`, read only when needed. */
export class TorchStorageRef implements PickleOpaque {
  readonly pickleOpaque = 'a torch storage';
  constructor(
    readonly key: string,
    readonly type: TorchStorageType,
    readonly numel: number,
    readonly location: string,
  ) {}
}

/** A tensor as `_rebuild_tensor_v2` describes it: a strided view of a storage. */
export class TorchTensorRef implements PickleOpaque {
  readonly pickleOpaque = 'a tensor';
  constructor(
    readonly storage: TorchStorageRef,
    readonly offset: number,
    readonly shape: readonly number[],
    readonly stride: readonly number[],
  ) {}
}

/** `torch.float32` and friends, which appear as values (e.g. in configs); inert. */
export class TorchDtypeValue implements PickleOpaque {
  readonly pickleOpaque = 'a torch dtype';
  constructor(readonly name: string) {}
}

const STORAGE_DTYPES: Readonly<Record<string, SafetensorsDtype | undefined>> = {
  FloatStorage: 'F32',
  DoubleStorage: 'F64',
  HalfStorage: 'F16',
  BFloat16Storage: 'BF16',
  LongStorage: 'I64',
  IntStorage: 'I32',
  ShortStorage: 'I16',
  CharStorage: 'I8',
  ByteStorage: 'U8',
  BoolStorage: 'BOOL',
  UntypedStorage: 'U8',
  // Known to torch, not decodable here: listed so that a file using them in an unread part still loads.
  ComplexFloatStorage: undefined,
  ComplexDoubleStorage: undefined,
  QInt8Storage: undefined,
  QUInt8Storage: undefined,
  QInt32Storage: undefined,
  QUInt4x2Storage: undefined,
  QUInt2x4Storage: undefined,
};

const TORCH_DTYPES = new Set([
  'float32',
  'float',
  'float64',
  'double',
  'float16',
  'half',
  'bfloat16',
  'int64',
  'long',
  'int32',
  'int',
  'int16',
  'short',
  'int8',
  'uint8',
  'bool',
  'complex64',
  'complex128',
  'cfloat',
  'cdouble',
  'qint8',
  'quint8',
  'qint32',
]);

const RANK_LIMIT = 64;

function intArg(v: PyValue | undefined, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)
    throw new Error(`${what} must be a non-negative integer, got ${describe(v)}`);
  return v;
}

function intTuple(v: PyValue | undefined, what: string): number[] {
  const items = v instanceof PyTuple ? v.items : Array.isArray(v) ? v : undefined;
  if (!items) throw new Error(`${what} must be a tuple of integers, got ${describe(v)}`);
  if (items.length > RANK_LIMIT) throw new Error(`${what} has ${items.length} dims, more than ${RANK_LIMIT}`);
  return items.map((d, i) => intArg(d, `${what}[${i}]`));
}

function rebuildTensor(args: readonly PyValue[]): TorchTensorRef {
  const [storage, offset, size, stride] = args;
  if (!(storage instanceof TorchStorageRef)) throw new Error(`the storage argument is ${describe(storage)}, not a storage`);
  const shape = intTuple(size, 'size');
  const strides = intTuple(stride, 'stride');
  if (shape.length !== strides.length) throw new Error(`size has ${shape.length} dims but stride has ${strides.length}`);
  return new TorchTensorRef(storage, intArg(offset, 'storage_offset'), shape, strides);
}

function rebuildParameter(args: readonly PyValue[]): PyValue {
  const data = args[0];
  if (!(data instanceof TorchTensorRef)) throw new Error(`a parameter's data is ${describe(data)}, not a tensor`);
  return data;
}

/** `_rebuild_from_type_v2(func, new_type, args, state)`: tensor subclasses; the plain tensor is what matters here. */
function rebuildFromType(args: readonly PyValue[]): PyValue {
  const [func, , inner] = args;
  if (!(func instanceof PickleCallable)) throw new Error(`the rebuild function is ${describe(func)}`);
  const innerArgs = inner instanceof PyTuple ? inner.items : [];
  return func.call(innerArgs);
}

function orderedDict(args: readonly PyValue[]): PyDict {
  const d = new PyDict();
  const init = args[0];
  if (init === undefined || init === null) return d;
  const pairs = Array.isArray(init) ? init : init instanceof PyTuple ? init.items : undefined;
  if (!pairs) throw new Error(`OrderedDict(${describe(init)}) is not supported`);
  for (const pair of pairs) {
    const kv = pair instanceof PyTuple ? pair.items : Array.isArray(pair) ? pair : undefined;
    if (!kv || kv.length !== 2) throw new Error('OrderedDict items must be (key, value) pairs');
    d.map.set(kv[0]!, kv[1]!);
  }
  return d;
}

/** `_codecs.encode(text, 'latin1')`: how protocol 2 writes Python 3 bytes. */
function codecsEncode(args: readonly PyValue[]): Uint8Array {
  const [text, encoding] = args;
  if (typeof text !== 'string') throw new Error('_codecs.encode needs a str');
  if (encoding !== 'latin1' && encoding !== 'latin-1') throw new Error(`_codecs.encode with encoding ${String(encoding)} is not supported`);
  return Uint8Array.from(text, (c) => c.charCodeAt(0) & 0xff);
}

const ALLOWED: ReadonlyMap<string, PyValue> = new Map<string, PyValue>([
  ['collections.OrderedDict', new PickleCallable('collections.OrderedDict', orderedDict)],
  ['torch._utils._rebuild_tensor', new PickleCallable('torch._utils._rebuild_tensor', rebuildTensor)],
  ['torch._utils._rebuild_tensor_v2', new PickleCallable('torch._utils._rebuild_tensor_v2', rebuildTensor)],
  ['torch._utils._rebuild_parameter', new PickleCallable('torch._utils._rebuild_parameter', rebuildParameter)],
  ['torch._utils._rebuild_parameter_with_state', new PickleCallable('torch._utils._rebuild_parameter_with_state', rebuildParameter)],
  ['torch._tensor._rebuild_from_type_v2', new PickleCallable('torch._tensor._rebuild_from_type_v2', rebuildFromType)],
  ['torch.Size', new PickleCallable('torch.Size', (a) => new PyTuple(intTuple(a[0] ?? new PyTuple([]), 'torch.Size')))],
  [
    'builtins.set',
    new PickleCallable('builtins.set', (a) => new PySet(a[0] instanceof PyTuple ? [...a[0].items] : Array.isArray(a[0]) ? [...a[0]] : [])),
  ],
  [
    'builtins.frozenset',
    new PickleCallable(
      'builtins.frozenset',
      (a) => new PySet(a[0] instanceof PyTuple ? [...a[0].items] : Array.isArray(a[0]) ? [...a[0]] : []),
    ),
  ],
  ['_codecs.encode', new PickleCallable('_codecs.encode', codecsEncode)],
]);

export function findTorchGlobal(module: string, name: string): PyValue | undefined {
  const mod = module === '__builtin__' ? 'builtins' : module;
  const known = ALLOWED.get(`${mod}.${name}`);
  if (known) return known;
  if ((mod === 'torch' || mod === 'torch.storage') && Object.prototype.hasOwnProperty.call(STORAGE_DTYPES, name)) {
    return new TorchStorageType(name, STORAGE_DTYPES[name]);
  }
  if (mod === 'torch' && TORCH_DTYPES.has(name)) return new TorchDtypeValue(name);
  return undefined;
}
