// BLIP checkpoint folders and files, in either key layout:
// - ours = Hugging Face's (`config.json` + `model.safetensors`, a sharded index or `pytorch_model.bin`, + tokenizer
//   files), read and written with the exact key names of transformers' BLIP. Known differences between such files
//   and our tree: the tied `text_decoder.cls.predictions.decoder.bias` (same tensor as `cls.predictions.bias`,
//   absent from files; dropped if a file has it) and `*.embeddings.position_ids` (a buffer newer transformers
//   versions no longer save; kept at 0…P-1 when absent).
// - Salesforce's original code (`visual_encoder.*`, `{"model": state_dict}` .pth files as released, or their
//   safetensors twin), mapped by official-keys.ts, with the original `config.json` form (official-config.ts), or
//   the sizes read from the tensor shapes when the folder has no config.json.
// The layout is told from the key names. Every official key the target class does not read is listed with the
// reason, and every key of ours that the file lacks and that may start at its initial value too.
import { copyFile, mkdir, stat } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { type HostTensor, interpolatePositionEmbedding, type LoadReport, type Module, stateDictToHost, VlError } from '@vl/core';
import { readCheckpoint, readJsonFile, writeJsonFile, writeSafetensorsFile } from '@vl/core/node';
import { type BlipConfig, blipConfigFromJson, blipConfigToJson } from './config.js';
import { blipConfigFromOfficial, blipConfigFromOfficialState, isOfficialBlipConfig, type OfficialBlipSettings } from './official-config.js';
import {
  type BlipLayout,
  type BlipTarget,
  detectBlipLayout,
  fromOfficialState,
  OFFICIAL_CLASS_TARGET,
  type OfficialBlipClass,
  officialClassOf,
  type TiedEntry,
} from './official-keys.js';
import { TOKENIZER_FILES } from './processor.js';

export const TIED_KEYS: Readonly<Record<string, string>> = {
  'text_decoder.cls.predictions.decoder.bias': 'text_decoder.cls.predictions.bias',
};

const OPTIONAL_BUFFER = /(^|\.)embeddings\.position_ids$/;

/** The folder of a checkpoint path: the path itself, or the folder of a weights file (where config.json sits). */
export async function checkpointFolder(path: string): Promise<string> {
  const info = await stat(path).catch(() => null);
  return info?.isFile() ? dirname(path) : path;
}

/** config.json of a folder in either form (Hugging Face's, or the original code's: see official-config.ts). */
export async function readBlipConfig(dir: string): Promise<BlipConfig> {
  const path = join(await checkpointFolder(dir), 'config.json');
  if (!existsSync(path)) {
    throw new VlError('CONFIG_INVALID', 'no config.json', {
      subject: dir,
      hint: 'a Hugging Face checkpoint folder holds config.json and model.safetensors',
    });
  }
  const raw = await readJsonFile(path);
  return isOfficialBlipConfig(raw) ? blipConfigFromOfficial(raw, path).config : blipConfigFromJson(raw, path);
}

/** What loading a checkpoint did besides copying tensors: nothing is dropped or filled without a line here. */
export interface BlipCheckpointReport {
  /** The weights file(s) read. */
  files: string[];
  layout: BlipLayout;
  /** The original class that saved an official-layout file (from its keys). */
  officialClass: OfficialBlipClass | null;
  /** The class the weights were loaded into. */
  target: BlipTarget;
  /** Where the config came from: a config.json path, or the tensor shapes. */
  config: string;
  /** Official keys the target does not read, each with the reason (e.g. momentum twins in a captioner). */
  unused: { key: string; reason: string }[];
  /** Our keys the file does not have, left at their initial values, each with the reason. */
  filled: { key: string; reason: string }[];
  /** Official duplicates of tied weights, checked equal to the entry they duplicate and dropped. */
  tied: TiedEntry[];
  /** Position embeddings resized (bicubic) from the file's patch grid to the config's, as BLIP's load_checkpoint does. */
  resized: { key: string; from: number[]; to: number[] }[];
}

/** A checkpoint read for one target class: its config and its tensors under our keys. */
export interface BlipCheckpoint {
  folder: string;
  config: BlipConfig;
  /** The original code's settings (prompt, [ENC], queue, momentum) for an official-layout checkpoint. */
  official: OfficialBlipSettings | null;
  tensors: Map<string, HostTensor>;
  report: BlipCheckpointReport;
}

export const BLIP_TARGETS: readonly BlipTarget[] = [
  'BlipForConditionalGeneration',
  'BlipForImageTextRetrieval',
  'BlipForRetrievalTraining',
  'BlipForPretraining',
];

export function isBlipTarget(name: string | undefined): name is BlipTarget {
  return BLIP_TARGETS.includes(name as BlipTarget);
}

/**
 * Reads a BLIP checkpoint (a folder, or a weights file with config.json next to it, in any format core reads) for
 * `target`, default the class the checkpoint itself describes. The layout is told from the key names; official
 * keys are mapped to ours, tied duplicates checked and dropped, and what `target` does not read is set aside with
 * its reason (an official key that belongs to no part of BLIP is an error). `deferData`: float32/int32
 * safetensors data stays in the file until loaded (core's readCheckpoint), for a load that follows at once.
 */
export async function readBlipCheckpoint(
  path: string,
  target?: BlipTarget,
  options: { deferData?: boolean } = {},
): Promise<BlipCheckpoint> {
  const folder = await checkpointFolder(path);
  const configPath = join(folder, 'config.json');
  const { tensors: raw, report: fileReport } = await readCheckpoint(path, { deferData: options.deferData });
  const source = fileReport.files.join(', ');
  const layout = detectBlipLayout(raw.keys());
  if (layout === null) {
    throw new VlError(
      'CHECKPOINT_INVALID',
      'not a BLIP checkpoint: it has neither visual_encoder.* (Salesforce) nor vision_model.* (Hugging Face) keys',
      {
        subject: source,
      },
    );
  }
  const hasConfig = existsSync(configPath);
  if (layout === 'hf') {
    if (!hasConfig) {
      throw new VlError('CONFIG_INVALID', 'no config.json', {
        subject: folder,
        hint: 'a Hugging Face checkpoint folder holds config.json and model.safetensors',
      });
    }
    const config = blipConfigFromJson(await readJsonFile(configPath), configPath);
    const arch = config.architectures?.[0];
    const tensors = new Map(raw);
    for (const tied of Object.keys(TIED_KEYS)) tensors.delete(tied);
    return {
      folder,
      config,
      official: null,
      tensors,
      report: {
        files: fileReport.files,
        layout,
        officialClass: null,
        target: target ?? (isBlipTarget(arch) ? arch : 'BlipForConditionalGeneration'),
        config: configPath,
        unused: [],
        filled: [],
        tied: [],
        resized: [],
      },
    };
  }
  const officialClass = officialClassOf(raw.keys());
  if (officialClass === null) {
    throw new VlError('CHECKPOINT_INVALID', 'an original BLIP checkpoint without text_encoder.* or text_decoder.* keys', {
      subject: source,
      hint: 'BLIP_Base (feature extractor) checkpoints are not supported',
    });
  }
  let translated;
  if (hasConfig) {
    const rawConfig = await readJsonFile(configPath);
    if (!isOfficialBlipConfig(rawConfig)) {
      throw new VlError('CONFIG_INVALID', "config.json is in Hugging Face's form, but the weights use the original BLIP names", {
        subject: configPath,
        hint: 'give the original form (model_kwargs + "med_config.json"), or remove config.json to read the sizes from the weights',
      });
    }
    translated = blipConfigFromOfficial(rawConfig, configPath, officialClass);
  } else {
    translated = blipConfigFromOfficialState(new Map([...raw].map(([k, t]) => [k, t.shape])), officialClass, source);
  }
  const into = target ?? OFFICIAL_CLASS_TARGET[officialClass];
  const mapped = fromOfficialState(raw, into);
  const problems = [
    ...mapped.tieMismatches.map((t) => `'${t.key}' differs from '${t.source}', which BLIP ties it to`),
    ...mapped.unknown.map((k) => `'${k}' belongs to no part of BLIP`),
  ];
  if (problems.length) {
    throw new VlError('STATE_DICT_MISMATCH', problems.join('; '), {
      subject: source,
      hint: 'is it a checkpoint of salesforce/BLIP (BLIP_Decoder, BLIP_Retrieval or BLIP_Pretrain)?',
    });
  }
  const resized = resizePositionEmbeddings(mapped.tensors, translated.config);
  return {
    folder,
    config: translated.config,
    official: translated.settings,
    tensors: mapped.tensors,
    report: {
      files: fileReport.files,
      layout,
      officialClass,
      target: into,
      config: hasConfig ? configPath : 'read from the tensor shapes (no config.json)',
      unused: mapped.unused,
      filled: [],
      tied: mapped.tied,
      resized,
    },
  };
}

/**
 * The class a checkpoint describes, from its key names and config.json only (no tensor data is read): the
 * original class's holder for an official-layout file, else config.json's `architectures`.
 */
export async function blipCheckpointTarget(path: string): Promise<BlipTarget> {
  const names: string[] = [];
  await readCheckpoint(path, {
    filter: (n) => {
      names.push(n);
      return false;
    },
  });
  if (detectBlipLayout(names) === 'official') {
    const cls = officialClassOf(names);
    if (cls) return OFFICIAL_CLASS_TARGET[cls];
  }
  const arch = (await readBlipConfig(path)).architectures?.[0] ?? 'BlipForConditionalGeneration';
  if (isBlipTarget(arch)) return arch;
  throw new VlError('CONFIG_INVALID', `architecture '${arch}' is not one BLIP builds`, {
    subject: join(await checkpointFolder(path), 'config.json'),
    hint: `expected one of ${BLIP_TARGETS.join(', ')}`,
  });
}

/**
 * BLIP's `interpolate_pos_embed`: a ViT position embedding saved for another patch grid (224-pixel pretraining vs
 * 384-pixel fine-tuning) is resized bicubically to the config's grid, the class-token row kept.
 */
function resizePositionEmbeddings(tensors: Map<string, HostTensor>, config: BlipConfig): { key: string; from: number[]; to: number[] }[] {
  const v = config.visionConfig;
  const grid = v.imageSize / v.patchSize;
  const out: { key: string; from: number[]; to: number[] }[] = [];
  for (const key of ['vision_model.embeddings.position_embedding', 'vision_model_m.embeddings.position_embedding']) {
    const t = tensors.get(key);
    if (!t || t.shape.length !== 3 || t.shape[1] === 1 + grid * grid) continue;
    const from = Math.round(Math.sqrt((t.shape[1] as number) - 1));
    if (from * from !== (t.shape[1] as number) - 1) continue; // not a square grid: the strict load reports the shape
    const resized = tf.tidy(() => interpolatePositionEmbedding(tf.tensor(t.data, t.shape, 'float32'), [from, from], [grid, grid]));
    tensors.set(key, { dtype: 'float32', shape: [...resized.shape], data: resized.dataSync() as Float32Array, fileDtype: t.fileDtype });
    out.push({ key, from: [...t.shape], to: [...resized.shape] });
    resized.dispose();
  }
  return out;
}

/** Why one of our keys may be absent from a checkpoint (it then keeps its initial value), or null. */
function fillReason(key: string, report: BlipCheckpointReport): string | null {
  if (OPTIONAL_BUFFER.test(key)) return 'the constant buffer 0…P−1 (files of newer transformers omit it)';
  if (report.officialClass === 'BLIP_Pretrain' && key === 'queues.idx_queue') {
    return 'BLIP_Pretrain keeps no image ids in its queue: every slot starts empty (−100), as BLIP_Retrieval initialises it';
  }
  return null;
}

/**
 * Loads a read checkpoint into `model` strictly: every missing, extra or mis-shaped key is an error listing them
 * all, except the keys `fillReason` allows, which are recorded in `checkpoint.report.filled`.
 */
export function applyBlipCheckpoint(model: Module, checkpoint: BlipCheckpoint): LoadReport {
  const report = checkpoint.report;
  const result = model.loadStateDict(checkpoint.tensors, {
    source: report.files.join(', '),
    allowMissing: (k) => fillReason(k, report) !== null,
  });
  for (const [key] of model.stateDict()) {
    if (checkpoint.tensors.has(key)) continue;
    const reason = fillReason(key, report);
    if (reason !== null) report.filled.push({ key, reason });
  }
  return result;
}

/**
 * Loads the weights of a checkpoint folder or file in any format core reads (model.safetensors, a sharded
 * index, pytorch_model.bin / .pth) and either layout, strictly: every missing, extra or mis-shaped key is listed.
 * `target` is the class of `model` (default: the class the checkpoint describes).
 */
export async function loadBlipWeights(model: Module, path: string, target?: BlipTarget): Promise<LoadReport> {
  return applyBlipCheckpoint(model, await readBlipCheckpoint(path, target, { deferData: true }));
}

/**
 * Writes config.json (HF snake_case keys, architectures set; extra camelCase fields of `config` are
 * written snake_case too) and model.safetensors; copies tokenizer files from `tokenizerDir`.
 */
export async function saveBlipFolder(
  model: Module,
  config: BlipConfig | Record<string, unknown>,
  dir: string,
  architecture: string,
  tokenizerDir?: string | null,
): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeJsonFile(join(dir, 'config.json'), blipConfigToJson({ ...config, architectures: [architecture], modelType: 'blip' }));
  const host = await stateDictToHost(model);
  for (const tied of Object.keys(TIED_KEYS)) delete host[tied];
  await writeSafetensorsFile(join(dir, 'model.safetensors'), host, { format: 'pt' });
  if (tokenizerDir && tokenizerDir !== dir) {
    for (const f of TOKENIZER_FILES) if (existsSync(join(tokenizerDir, f))) await copyFile(join(tokenizerDir, f), join(dir, f));
  }
}
