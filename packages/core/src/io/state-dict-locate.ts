// Where a checkpoint keeps its state dict: bare, or under `model` (BLIP, BEiT-3, ALBEF), `state_dict`
// (Lightning, keys prefixed by the module attribute), `module` (DeepSpeed) — found, overridable, reported. Browser-safe.
import { VlError } from '../errors.js';
import { describe, PickleObject, PyDict, type PyValue } from './pickle.js';
import { TorchTensorRef } from './torch-pickle.js';

export interface StateDictOptions {
  /**
   * The top-level key holding the state dict ('' for the root object itself). Default: found
   * automatically (the root if it is a state dict, else the first of STATE_DICT_KEYS that is one).
   */
  key?: string;
  /**
   * A prefix to remove from every key. Default: `module.` when every key has it (DataParallel), and for a
   * Lightning checkpoint the first name segment when every key shares it. '' keeps keys as they are.
   */
  stripPrefix?: string;
}

/** The keys tried, in order, when `key` is not given. */
export const STATE_DICT_KEYS = ['state_dict', 'model', 'module', 'model_state_dict', 'model_state', 'net', 'network'] as const;

const LIGHTNING_MARKERS = ['pytorch-lightning_version', 'lightning_version', 'global_step', 'optimizer_states', 'callbacks', 'loops'];

export interface StateDictLocation {
  /** Tensors by their final (prefix-stripped) names, in the file's order. */
  tensors: Map<string, TorchTensorRef>;
  container: string;
  strippedPrefix: string;
  otherKeys: string[];
  skipped: string[];
}

/** A state dict: a dict with string keys whose values are tensors (None and `_extra_state` objects are tolerated). */
function tensorCount(v: PyValue | undefined): number {
  if (!(v instanceof PyDict) || v.map.size === 0) return 0;
  let tensors = 0;
  for (const [k, value] of v.map) {
    if (typeof k !== 'string') return 0;
    if (value instanceof TorchTensorRef) tensors++;
    else if (value !== null && !k.endsWith('_extra_state')) return 0;
  }
  return tensors;
}

function keysText(d: PyDict): string {
  const keys = [...d.map.keys()].slice(0, 12).map((k) => (typeof k === 'string' ? JSON.stringify(k) : describe(k)));
  return keys.join(', ') + (d.map.size > 12 ? `, … (${d.map.size} in all)` : '');
}

function commonFirstSegment(names: readonly string[]): string {
  if (names.length === 0) return '';
  const dot = names[0]!.indexOf('.');
  if (dot <= 0) return '';
  const head = names[0]!.slice(0, dot + 1);
  return names.every((n) => n.startsWith(head) && n.length > head.length) ? head : '';
}

/** Finds the state dict in an unpickled torch.save object; `subject` names the file for errors. */
export function locateStateDict(root: PyValue, options: StateDictOptions, subject: string): StateDictLocation {
  const rootDict = root instanceof PyDict ? root : undefined;
  let container: string;
  let dict: PyDict;
  if (options.key !== undefined && options.key !== '') {
    const value = rootDict?.map.get(options.key);
    if (!rootDict || value === undefined) {
      throw new VlError('CHECKPOINT_INVALID', `the checkpoint has no key ${JSON.stringify(options.key)}`, {
        subject,
        hint: rootDict ? `its top-level keys are ${keysText(rootDict)}` : `its top level is ${describe(root)}, not a dict`,
      });
    }
    if (tensorCount(value) === 0) {
      throw new VlError('CHECKPOINT_INVALID', `${JSON.stringify(options.key)} holds ${describe(value)}, not a state dict of tensors`, {
        subject,
        hint: 'choose another key',
      });
    }
    container = options.key;
    dict = value as PyDict;
  } else if (options.key === '' || tensorCount(root) > 0) {
    if (tensorCount(root) === 0)
      throw new VlError('CHECKPOINT_INVALID', `the top level is ${describe(root)}, not a state dict of tensors`, { subject });
    container = '(root)';
    dict = root as PyDict;
  } else {
    let found: string | undefined = rootDict ? STATE_DICT_KEYS.find((k) => tensorCount(rootDict.map.get(k)) > 0) : undefined;
    if (rootDict && found === undefined && [...rootDict.map].some(([k, v]) => typeof k === 'string' && v instanceof TorchTensorRef)) {
      // Last resort: tensors at the top level next to other things; the others are reported as skipped.
      found = '';
    }
    if (!rootDict || found === undefined) {
      throw new VlError(
        'CHECKPOINT_INVALID',
        `no state dict found: the top level is ${describe(root)}${rootDict ? ` with keys ${keysText(rootDict)}` : ''}`,
        {
          subject,
          hint:
            root instanceof PickleObject
              ? 'the file holds a pickled Python object (e.g. torch.save(model)), not a state dict; ' +
                'in Python: torch.save(torch.load(path, weights_only=False).state_dict(), "model.pth")'
              : `a state dict is a dict of tensors, bare or under one of ${STATE_DICT_KEYS.join(', ')}; ` +
                'name the key that holds it (key option / --key)',
        },
      );
    }
    container = found === '' ? '(root)' : found;
    dict = found === '' ? rootDict : (rootDict.map.get(found) as PyDict);
  }

  const names: string[] = [];
  const skipped: string[] = [];
  for (const [k, v] of dict.map) {
    if (v instanceof TorchTensorRef && typeof k === 'string') names.push(k);
    else skipped.push(`${String(k)}: ${describe(v)}`);
  }
  const isLightning = container === 'state_dict' && !!rootDict && LIGHTNING_MARKERS.some((m) => rootDict.map.has(m));
  let prefix = options.stripPrefix;
  if (prefix === undefined) {
    if (names.length > 0 && names.every((n) => n.startsWith('module.'))) prefix = 'module.';
    else prefix = isLightning ? commonFirstSegment(names) : '';
  }
  const tensors = new Map<string, TorchTensorRef>();
  for (const name of names) {
    const final = prefix && name.startsWith(prefix) ? name.slice(prefix.length) : name;
    if (tensors.has(final)) {
      throw new VlError('CHECKPOINT_INVALID', `stripping ${JSON.stringify(prefix)} makes two keys ${JSON.stringify(final)}`, {
        subject,
        hint: "pass stripPrefix: '' to keep the keys as they are",
      });
    }
    tensors.set(final, dict.map.get(name) as TorchTensorRef);
  }
  const otherKeys =
    container === '(root)' || !rootDict ? [] : [...rootDict.map.keys()].filter((k) => k !== container).map((k) => String(k));
  return { tensors, container, strippedPrefix: prefix, otherKeys, skipped };
}
