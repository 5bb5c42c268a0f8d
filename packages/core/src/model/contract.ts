// The model contract (DESIGN.md "The model contract"): what a model package implements and registers
// so that `vl` (and its `blip`/`albef`/… aliases) can verify, convert, train, evaluate, caption,
// match and ablate it without model-specific command-line code. Types only: browser-safe.
import type { z } from 'zod';
import type { StateValue, Module } from '../nn/module.js';
import type { HostTensor } from '../io/safetensors.js';
import type { ParityReport } from '../verify/parity.js';
import type { AblationAdapter } from './ablation.js';

/** Evaluation tasks a model can be run on (`vl eval NAME --task …`). */
export type EvalTaskName = 'retrieval' | 'captioning' | 'itm' | 'vqa' | 'nlvr2' | 'classification' | 'zero-shot';

/** One pretraining objective: forward results carry it as `losses[name]`; weight 0 switches it off. */
export interface ObjectiveSpec {
  name: string;
  description: string;
  /** The paper's weight (1 for most). */
  defaultWeight: number;
}

/** A checkpoint tensor as files hold it (safetensors, pickles) or as a module state dict holds it. */
export type StateEntry = HostTensor | StateValue;

/**
 * The map between the module tree's state-dict keys and the official checkpoint's, both ways:
 * renames, and tied duplicates (checked equal and dropped on the way in, written back on the way out).
 */
export interface KeyMap<M extends Module = Module> {
  fromOfficial(official: ReadonlyMap<string, StateEntry>, subject: string): Map<string, StateEntry>;
  toOfficial(model: M): Map<string, HostTensor>;
  /** Our keys a file may lack (e.g. a buffer newer exporters drop); `vl convert` does not call them missing. */
  optional?(key: string): boolean;
}

/** Checkpoints: config schema and presets, building, the folder layout, the official key map. */
export interface ModelCheckpointSpec<C = unknown, M extends Module = Module> {
  /** config.json as the original code writes it (snake_case where it has it). */
  configSchema: z.ZodType;
  /** Validated config (defaults filled); throws VlError('CONFIG_INVALID') naming `subject`. */
  parseConfig(raw: unknown, subject: string): C;
  /** Named presets: `tiny` (tests, seconds to train) and `base` (the paper's size) at least. */
  presets: Readonly<Record<string, (overrides?: { vocabSize?: number; imageSize?: number }) => C>>;
  /** The architecture the config names, freshly initialised. */
  build(config: C): M;
  /**
   * Reads a folder (`config.json` + weights) strictly: a missing, extra or mis-shaped key lists them all. The model
   * comes back in eval mode (no dropout or drop-path), as Hugging Face's `from_pretrained` does; `train()` to fine-tune.
   */
  fromPretrained(dir: string): Promise<M>;
  /** Writes the folder `fromPretrained` reads. */
  savePretrained(model: M, dir: string): Promise<void>;
  keyMap: KeyMap<M>;
}

/** Where a command prints; tests pass their own. */
export interface Io {
  out: (line: string) => void;
  err: (line: string) => void;
}

/** A progress bar (stderr); a no-op with --quiet or when the output is not a terminal long enough to matter. */
export interface Progress {
  update(done: number, total: number, info?: string): void;
  stop(): void;
}

/** What every model operation gets from the command line layer. */
export interface RunContext {
  io: Io;
  quiet: boolean;
  progress(label: string): Progress;
}

export interface VerifyRequest {
  checkpoint: string;
  inputs: string;
  expected: string;
  /** Max abs diff per float output; undefined: the fixture's meta.tolerance_max_abs, else 1e-4. */
  tol?: number;
  /**
   * The reference's gradients: a safetensors file keyed `<loss>/<official parameter name>` (grads.json
   * beside it: the losses' values and tolerance). The model replays each loss on its own and compares
   * every parameter's gradient (core verify/grads.ts); a model without a replay answers TASK_UNSUPPORTED.
   */
  grads?: string;
}

export interface VerifyResult {
  /** What was verified, e.g. the model class and folder. */
  title: string;
  report: ParityReport;
}

export interface CaptionRequest {
  checkpoint: string;
  images: string[];
  prompt: string;
  numBeams: number;
  maxLength: number;
  minLength: number;
  sample: boolean;
  topP: number;
  seed: number;
}

export interface MatchRequest {
  checkpoint: string;
  images: string[];
  texts: string[];
}

/** `itm[i][j]`: probability that image i matches text j; `itc[i][j]`: contrastive similarity. */
export interface MatchResult {
  itm: number[][];
  itc: number[][];
}

/** `vl train NAME`: the flags every model shares, plus the model's own switches. */
export interface TrainRequest {
  /** Training list (JSONL) and tokenizer vocabulary; `--data DIR` fills both from a `vl data synth` folder. */
  train: string;
  vocab: string;
  out: string;
  preset: string;
  imageSize?: number;
  batchSize: number;
  epochs: number;
  maxSteps?: number;
  lr: number;
  warmupSteps?: number;
  weightDecay: number;
  seed: number;
  checkpointEvery?: number;
  /** Start over instead of resuming from `out`. */
  fresh: boolean;
  /** The `--config` file's contents: the model's pretraining options, as its docs describe. */
  config: Record<string, unknown>;
  /** Objective weights given on the command line (`--itc 0` switches ITC off). */
  objectives: Record<string, number>;
  /** The model's own switches (ModelSpec.trainOptions), by camelCase name. */
  options: Record<string, unknown>;
}

export interface TrainSummary {
  /** Lines for stdout: what was trained, final losses, where it was written. */
  lines: string[];
}

export interface EvalRequest {
  checkpoint: string;
  data: string;
  tasks: EvalTaskName[];
  numBeams: number;
  maxLength: number;
  out?: string;
  /** The model's own `vl eval` switches (ModelSpec.evalOptions), by camelCase name; absent when it declares none. */
  options?: Record<string, unknown>;
}

export interface EvalSummary {
  lines: string[];
  json: unknown;
}

/** A declarative command-line option: `vl` turns it into a commander option (parsing stays in one place). */
export interface OptionSpec {
  /** commander flags, e.g. `--queue-size <n>`, `--no-queue`, `--data <file...>`. */
  flags: string;
  description: string;
  /** How the value is parsed and checked (default 'string'). */
  kind?: 'string' | 'int' | 'number' | 'boolean' | 'strings';
  /** For int/number: the smallest value allowed. */
  min?: number;
  choices?: readonly string[];
  default?: string | number | boolean;
}

/** A model-specific task with its own command, e.g. BLIP's `capfilt` (`vl capfilt blip …`). */
export interface ModelCommandSpec {
  name: string;
  description: string;
  /** Positional arguments in commander syntax, e.g. `[data...]`. */
  arguments?: string;
  options: readonly OptionSpec[];
  /** Longer help after the option list. */
  help?: string;
  /** Returns the exit code. Throw UsageError-coded VlError('INVALID_ARGUMENT') for bad flags. */
  run(ctx: RunContext, values: Record<string, unknown>, args: string[]): Promise<number>;
  subcommands?: readonly ModelCommandSpec[];
}

/** Everything `vl` knows about one model. Optional parts are capabilities: a command a model lacks says so. */
export interface ModelSpec<C = unknown, M extends Module = Module> {
  /** Registry name, lower case: `blip`, `albef`, `vlmo`, `coca`, `beit3`. */
  name: string;
  /** The npm package that registers it. */
  packageName: string;
  description: string;
  checkpoint: ModelCheckpointSpec<C, M>;
  objectives: readonly ObjectiveSpec[];
  tasks: readonly EvalTaskName[];
  verify?(req: VerifyRequest, ctx: RunContext): Promise<VerifyResult>;
  caption?(req: CaptionRequest, ctx: RunContext): Promise<string[]>;
  match?(req: MatchRequest, ctx: RunContext): Promise<MatchResult>;
  /** The model's own `vl train` switches (objective weights come from `objectives`). */
  trainOptions?: readonly OptionSpec[];
  train?(req: TrainRequest, ctx: RunContext): Promise<TrainSummary>;
  /** The model's own `vl eval` switches (e.g. VLMo's `--rerank-k`), declared like trainOptions. */
  evalOptions?: readonly OptionSpec[];
  evaluate?(req: EvalRequest, ctx: RunContext): Promise<EvalSummary>;
  ablation?: AblationAdapter;
  commands?: readonly ModelCommandSpec[];
}

/** A spec without its config/model types, as the registry stores it. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the registry holds specs of every model
export type AnyModelSpec = ModelSpec<any, any>;
