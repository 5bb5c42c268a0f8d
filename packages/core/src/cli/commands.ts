// The model commands every model gets through the registry: verify, convert, caption, match, train,
// eval. Each is one template (its options and how it calls the ModelSpec); program.ts mounts them as
// `vl <command> <model>` and, for a model's own bin, as `<model> <command>`.
import { existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { VlError } from '../errors.js';
import { readJsonFile } from '../node/json-file.js';
import type { Module } from '../nn/module.js';
import type { AnyModelSpec, EvalTaskName, OptionSpec, RunContext } from '../model/contract.js';
import { formatParityReport } from '../verify/parity.js';
import { readCheckpoint } from '../node/checkpoint-file.js';
import { COMMON } from './options.js';

export type Values = Record<string, unknown>;

export interface CommandTemplate {
  name: string;
  description: string;
  /** The ModelSpec member a model needs for this command. */
  needs: keyof AnyModelSpec;
  arguments?: string;
  /** Other names on the model aliases (`blip pretrain` = `vl train blip`). */
  aliasNames?: readonly string[];
  options(spec: AnyModelSpec): OptionSpec[];
  run(spec: AnyModelSpec, ctx: RunContext, values: Values, args: string[]): Promise<number>;
}

export function usage(message: string): VlError {
  return new VlError('INVALID_ARGUMENT', message);
}

export function required<T = string>(values: Values, name: string, flag = name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)): T {
  const v = values[name];
  if (v === undefined) throw usage(`--${flag} is required`);
  return v as T;
}

const optional = <T>(values: Values, name: string): T | undefined => values[name] as T | undefined;

/** `--checkpoint`, or `--model` (its old name on the model aliases). */
function checkpointOf(values: Values): string {
  const dir = (values.checkpoint ?? values.model) as string | undefined;
  if (dir === undefined) throw usage('--checkpoint is required');
  return dir;
}

/** The values of a model's own declared options, by camelCase name (those given or defaulted). */
function modelOptions(declared: readonly OptionSpec[] | undefined, values: Values): Record<string, unknown> {
  const options: Record<string, unknown> = {};
  for (const o of declared ?? []) {
    const key = attributeOf(o.flags);
    if (values[key] !== undefined) options[key] = values[key];
  }
  return options;
}

const jsonReplacer = (_k: string, v: unknown) => (v === Infinity ? 'inf' : v);

const verify: CommandTemplate = {
  name: 'verify',
  description: "compare a checkpoint's outputs (and gradients) with a reference fixture; exit 0 within tolerance, 1 past it",
  needs: 'verify',
  options: () => [
    COMMON.checkpoint,
    { flags: '--inputs <file>', description: 'inputs.json of the fixture (tensors the reference ran on)' },
    { flags: '--expected <file>', description: 'expected.json of the fixture ({ meta, outputs })' },
    {
      flags: '--tol <x>',
      description:
        "max abs diff per float output and per gradient tensor (default: the fixture's meta.tolerance_max_abs / grads.json's, else 1e-4)",
      kind: 'number',
      min: 0,
    },
    {
      flags: '--grads <file>',
      description:
        "the reference's gradients (grads.safetensors, keys '<loss>/<official parameter name>'; grads.json beside it gives the losses' values): each loss replayed on its own, every parameter's gradient compared",
    },
    COMMON.json,
    COMMON.backend,
  ],
  async run(spec, ctx, v) {
    const checkpoint = checkpointOf(v);
    const req = {
      checkpoint,
      inputs: required<string>(v, 'inputs'),
      expected: required<string>(v, 'expected'),
      tol: optional<number>(v, 'tol'),
      grads: optional<string>(v, 'grads'),
    };
    const r = await (spec.verify as NonNullable<AnyModelSpec['verify']>)(req, ctx);
    if (v.json) ctx.io.out(JSON.stringify({ title: r.title, ...r.report }, jsonReplacer, 2));
    else ctx.io.out(`${r.title}\n${formatParityReport(r.report)}`);
    return r.report.passed ? 0 : 1;
  },
};

const convert: CommandTemplate = {
  name: 'convert',
  description: "convert a released checkpoint (official key names) into this project's folder layout (config.json + model.safetensors)",
  needs: 'checkpoint',
  options: () => [
    {
      flags: '--in <file>',
      description: 'checkpoint: .safetensors, sharded *.index.json, or torch.save .pth/.pt/.bin/.ckpt (or a folder holding one)',
    },
    { flags: '--config <file>', description: "the model's config as its original code reads it (default: config.json next to --in)" },
    { flags: '--key <k>', description: 'sub-dict holding the state dict, for formats that nest it (model, state_dict, module)' },
    { flags: '--out <dir>', description: 'output folder' },
    COMMON.backend,
  ],
  async run(spec, ctx, v) {
    const input = required<string>(v, 'in');
    const out = required<string>(v, 'out');
    // The one reader for every supported format (io/checkpoint-file.ts): official keys, as in the file.
    const file = await readCheckpoint(input, { key: optional<string>(v, 'key') });
    const first = file.report.files[0] ?? input;
    const inputIsFolder = (await stat(input).catch(() => null))?.isDirectory() ?? false;
    const configPath = optional<string>(v, 'config') ?? join(inputIsFolder ? input : dirname(first), 'config.json');
    if (!existsSync(configPath)) throw usage(`no config: give --config FILE (looked for ${configPath})`);
    const ck = spec.checkpoint;
    const config: unknown = ck.parseConfig(await readJsonFile(configPath), configPath);
    const ours = ck.keyMap.fromOfficial(file.tensors, first);
    const model: Module = ck.build(config);
    try {
      const report = model.loadStateDict(ours, { strict: false, source: first });
      const missing = report.missing.filter((k) => !ck.keyMap.optional?.(k));
      if (missing.length || report.mismatched.length) {
        const shapes = report.mismatched.map((m) => `${m.key} [${m.got}] ≠ [${m.expected}]`);
        throw new VlError(
          'STATE_DICT_MISMATCH',
          [missing.length ? `missing ${missing.join(', ')}` : '', shapes.length ? `mis-shaped ${shapes.join(', ')}` : '']
            .filter(Boolean)
            .join('; '),
          {
            subject: first,
            hint: `is it a ${spec.name} checkpoint for this config (${configPath})?`,
          },
        );
      }
      await ck.savePretrained(model, out);
      const r = file.report;
      const where = r.container !== '(root)' && r.container ? `, state dict under '${r.container}'` : '';
      const prefix = r.strippedPrefix ? `, prefix '${r.strippedPrefix}' stripped` : '';
      ctx.io.out(`${r.files.join(', ')} (${r.format}${where}${prefix}): ${report.loaded} tensors loaded`);
      if (r.otherKeys.length) ctx.io.out(`other entries in the file (not converted): ${r.otherKeys.join(', ')}`);
      if (r.placeholders.length) ctx.io.out(`objects in the file that were not run: ${r.placeholders.join(', ')}`);
      ctx.io.out(
        report.unexpected.length ? `unused keys (${report.unexpected.length}): ${report.unexpected.join(', ')}` : 'unused keys: none',
      );
      ctx.io.out(`wrote ${out}`);
      return 0;
    } finally {
      model.dispose();
    }
  },
};

const caption: CommandTemplate = {
  name: 'caption',
  description: 'caption images',
  needs: 'caption',
  arguments: '<images...>',
  options: () => [
    COMMON.checkpoint,
    { flags: '--prompt <text>', description: 'text the caption starts with', default: '' },
    { flags: '--beams <k>', description: 'beam search width', kind: 'int', min: 1, default: 3 },
    { flags: '--max-length <n>', description: 'longest caption in tokens', kind: 'int', min: 2, default: 30 },
    { flags: '--min-length <n>', description: 'shortest caption in tokens', kind: 'int', min: 0, default: 0 },
    { flags: '--sample', description: 'nucleus sampling instead of beam search' },
    { flags: '--top-p <p>', description: 'nucleus p with --sample', kind: 'number', min: 0, default: 0.9 },
    { flags: '--seed <n>', description: 'sampling seed', kind: 'int', default: 0 },
    COMMON.json,
    COMMON.backend,
  ],
  async run(spec, ctx, v, images) {
    const checkpoint = checkpointOf(v);
    const sample = Boolean(v.sample);
    const captions = await (spec.caption as NonNullable<AnyModelSpec['caption']>)(
      {
        checkpoint,
        images,
        prompt: v.prompt as string,
        numBeams: sample ? 1 : (v.beams as number),
        maxLength: v.maxLength as number,
        minLength: v.minLength as number,
        sample,
        topP: v.topP as number,
        seed: v.seed as number,
      },
      ctx,
    );
    images.forEach((img, i) => ctx.io.out(v.json ? JSON.stringify({ image: img, caption: captions[i] }) : `${img}\t${captions[i]}`));
    return 0;
  },
};

const match: CommandTemplate = {
  name: 'match',
  description: 'image-text matching probability (ITM) and contrastive similarity (ITC) of every image × text',
  needs: 'match',
  arguments: '<images...>',
  options: () => [
    COMMON.checkpoint,
    { flags: '--text <text>', description: 'a text (repeat for more)', kind: 'strings' },
    COMMON.json,
    COMMON.backend,
  ],
  async run(spec, ctx, v, images) {
    const checkpoint = checkpointOf(v);
    const texts = (v.text as string[] | undefined) ?? [];
    if (texts.length === 0) throw usage('give at least one --text');
    const r = await (spec.match as NonNullable<AnyModelSpec['match']>)({ checkpoint, images, texts }, ctx);
    if (v.json) {
      ctx.io.out(JSON.stringify({ images, texts, ...r }));
    } else {
      ctx.io.out(['image', 'text', 'itm', 'itc'].join('\t'));
      images.forEach((img, i) =>
        texts.forEach((t, j) => ctx.io.out(`${img}\t${t}\t${r.itm[i]?.[j]?.toFixed(4)}\t${r.itc[i]?.[j]?.toFixed(4)}`)),
      );
    }
    return 0;
  },
};

const train: CommandTemplate = {
  name: 'train',
  description:
    'pretrain on a caption dataset (JSONL, e.g. `vl data synth`), resumable; objectives switched and weighted by flags or --config',
  needs: 'train',
  aliasNames: ['pretrain'],
  options: (spec) => [
    { flags: '--data <dir>', description: 'a `vl data synth` folder (train.jsonl + vocab.txt)' },
    { flags: '--train <file>', description: 'training JSONL (image + captions per line)' },
    { flags: '--vocab <file>', description: 'WordPiece vocab.txt (or tokenizer.json)' },
    { flags: '--out <dir>', description: 'output folder (checkpoints, metrics.jsonl, exported model folders)' },
    { flags: '--preset <name>', description: 'model size', choices: Object.keys(spec.checkpoint.presets), default: 'tiny' },
    { flags: '--image-size <n>', description: "image side (default: the preset's)", kind: 'int', min: 8 },
    { flags: '--batch-size <n>', description: 'batch size', kind: 'int', min: 2, default: 32 },
    { flags: '--epochs <n>', description: 'epochs (unless --max-steps)', kind: 'int', min: 1, default: 1 },
    { flags: '--max-steps <n>', description: 'stop after this many steps', kind: 'int', min: 1 },
    { flags: '--lr <x>', description: 'peak learning rate', kind: 'number', min: 0, default: 1e-3 },
    { flags: '--warmup <n>', description: 'warm-up steps', kind: 'int', min: 0 },
    { flags: '--weight-decay <x>', description: 'AdamW weight decay', kind: 'number', min: 0, default: 0.05 },
    { flags: '--seed <n>', description: 'seed of init, data order, masking, negatives', kind: 'int', default: 0 },
    { flags: '--checkpoint-every <n>', description: 'steps between resumable checkpoints', kind: 'int', min: 1, default: 200 },
    { flags: '--config <file>', description: "the model's pretraining options (JSON), see its docs" },
    { flags: '--fresh', description: 'start over instead of resuming from --out' },
    ...spec.objectives.map((o): OptionSpec => ({
      flags: `--${o.name} <weight>`,
      description: `weight of ${o.description} (0 switches it off; default ${o.defaultWeight})`,
      kind: 'number',
      min: 0,
    })),
    ...(spec.trainOptions ?? []),
    COMMON.quiet,
    COMMON.backend,
  ],
  async run(spec, ctx, v) {
    const data = optional<string>(v, 'data');
    const trainFile = optional<string>(v, 'train') ?? (data ? join(data, 'train.jsonl') : undefined);
    const vocab = optional<string>(v, 'vocab') ?? (data ? join(data, 'vocab.txt') : undefined);
    if (!trainFile || !vocab) throw usage('give --data DIR, or --train and --vocab');
    const configPath = optional<string>(v, 'config');
    const config = configPath ? ((await readJsonFile(configPath)) as Record<string, unknown>) : {};
    const objectives: Record<string, number> = {};
    for (const o of spec.objectives) if (v[camel(o.name)] !== undefined) objectives[o.name] = v[camel(o.name)] as number;
    const options = modelOptions(spec.trainOptions, v);
    const r = await (spec.train as NonNullable<AnyModelSpec['train']>)(
      {
        train: trainFile,
        vocab,
        out: required<string>(v, 'out'),
        preset: v.preset as string,
        imageSize: optional<number>(v, 'imageSize'),
        batchSize: v.batchSize as number,
        epochs: v.epochs as number,
        maxSteps: optional<number>(v, 'maxSteps'),
        lr: v.lr as number,
        warmupSteps: optional<number>(v, 'warmup'),
        weightDecay: v.weightDecay as number,
        seed: v.seed as number,
        checkpointEvery: optional<number>(v, 'checkpointEvery'),
        fresh: Boolean(v.fresh),
        config,
        objectives,
        options,
      },
      ctx,
    );
    for (const l of r.lines) ctx.io.out(l);
    return 0;
  },
};

const TASKS: readonly EvalTaskName[] = ['retrieval', 'captioning', 'itm', 'vqa', 'nlvr2', 'classification', 'zero-shot'];

const evaluate: CommandTemplate = {
  name: 'eval',
  description: 'evaluate a checkpoint on held-out data: retrieval Recall@K, captioning CIDEr-D/BLEU-4, … with chance baselines',
  needs: 'evaluate',
  options: (spec) => [
    { ...COMMON.checkpoint, description: 'model folder, or a `vl train` output folder' },
    { flags: '--data <file>', description: 'held-out JSONL (e.g. the synthetic test split)' },
    { flags: '--task <name>', description: `task to run (repeat for more; default: all of ${spec.tasks.join(', ')})`, kind: 'strings' },
    { flags: '--beams <k>', description: 'caption beam width (1 = greedy)', kind: 'int', min: 1, default: 3 },
    { flags: '--max-length <n>', description: 'longest caption in tokens', kind: 'int', min: 2, default: 30 },
    { flags: '--out <file>', description: 'also write the report here (JSON)' },
    ...(spec.evalOptions ?? []),
    COMMON.json,
    COMMON.quiet,
    COMMON.backend,
  ],
  async run(spec, ctx, v) {
    const tasks = (v.task as string[] | undefined) ?? [...spec.tasks];
    for (const t of tasks) {
      if (!TASKS.includes(t as EvalTaskName)) throw usage(`--task must be one of ${TASKS.join(', ')}, got '${t}'`);
      if (!spec.tasks.includes(t as EvalTaskName))
        throw new VlError('TASK_UNSUPPORTED', `${spec.name} does not evaluate ${t}`, { hint: `its tasks: ${spec.tasks.join(', ')}` });
    }
    const r = await (spec.evaluate as NonNullable<AnyModelSpec['evaluate']>)(
      {
        checkpoint: checkpointOf(v),
        data: required<string>(v, 'data'),
        tasks: tasks as EvalTaskName[],
        numBeams: v.beams as number,
        maxLength: v.maxLength as number,
        out: optional<string>(v, 'out'),
        options: modelOptions(spec.evalOptions, v),
      },
      ctx,
    );
    if (v.json) ctx.io.out(JSON.stringify(r.json, null, 2));
    else for (const l of r.lines) ctx.io.out(l);
    return 0;
  },
};

/** The model commands, in the order `vl --help` lists them. */
export const MODEL_COMMANDS: readonly CommandTemplate[] = [verify, train, evaluate, caption, match, convert];

export const camel = (s: string) => s.replace(/-([a-z0-9])/g, (_m, c: string) => c.toUpperCase());

/** commander's attribute name for a flag: `--queue-size <n>` → queueSize, `--no-queue` → queue. */
export function attributeOf(flags: string): string {
  const long = flags.split(/[ ,|]+/).find((f) => f.startsWith('--')) ?? flags;
  return camel(long.replace(/^--(no-)?/, ''));
}
