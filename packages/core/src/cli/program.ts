// The commander program over the model registry: `vl <command> <model> …` for every registered model,
// and the same leaves mounted as `<model> <command> …` for a model's own bin (`blip`, `albef`). Exit
// codes: 0 done (verify: within tolerance), 1 verify past tolerance or an unexpected failure, 2 the
// command could not run on what it was given (usage error, unknown model, unreadable input).
import { Command, CommanderError } from 'commander';
import { isVlError, VlError } from '../errors.js';
import type { AnyModelSpec, Io, ModelCommandSpec, RunContext } from '../model/contract.js';
import { getModel, getModelWith, listModels } from '../model/registry.js';
import { type BackendChoice, initRuntime } from '../runtime/backend.js';
import { type CommandTemplate, MODEL_COMMANDS, type Values } from './commands.js';
import { MODEL_ALIAS, toOption } from './options.js';
import { progressBar } from './progress.js';

export const processIo: Io = {
  out: (l) => process.stdout.write(`${l}\n`),
  err: (l) => process.stderr.write(`${l}\n`),
};

/** The exit code the last action set; runProgram reads it. */
export interface ProgramState {
  code: number;
}

/** A commander program whose output goes to `io` and whose errors throw instead of exiting. */
export function createProgram(name: string, description: string, io: Io): Command {
  return new Command(name)
    .description(description)
    .exitOverride()
    .enablePositionalOptions()
    .configureOutput({ writeOut: (s) => io.out(s.replace(/\n$/, '')), writeErr: (s) => io.err(s.replace(/\n$/, '')) })
    .showHelpAfterError('(add --help for usage)');
}

function context(io: Io, values: Values): RunContext {
  const quiet = Boolean(values.quiet);
  return { io, quiet, progress: (label) => progressBar(label, quiet) };
}

async function startBackend(values: Values): Promise<void> {
  const backend = values.backend as BackendChoice | undefined;
  await initRuntime(backend ? { backend } : {});
}

/** Mounts one template for one model under `parent` as `name`. */
function mountTemplate(
  parent: Command,
  name: string,
  t: CommandTemplate,
  spec: AnyModelSpec,
  io: Io,
  state: ProgramState,
  alias: boolean,
): Command {
  const cmd = parent.command(name).description(t.description);
  if (alias) for (const a of t.aliasNames ?? []) cmd.alias(a);
  if (t.arguments) cmd.arguments(t.arguments);
  const options = t.options(spec);
  for (const o of options) cmd.addOption(toOption(o));
  if (options.some((o) => o.flags.startsWith('--checkpoint'))) cmd.addOption(toOption(MODEL_ALIAS).hideHelp());
  cmd.action(async () => {
    const values = cmd.opts();
    await startBackend(values);
    state.code = await t.run(spec, context(io, values), values, cmd.args);
  });
  return cmd;
}

/**
 * Mounts a model's own command (e.g. BLIP's capfilt) and its subcommands under `parent` as `name`:
 * its OptionSpecs become commander options, `help` follows the option list.
 */
export function addModelCommand(parent: Command, name: string, c: ModelCommandSpec, io: Io, state: ProgramState): Command {
  const cmd = parent.command(name).description(c.description);
  if (c.arguments) cmd.arguments(c.arguments);
  for (const o of c.options) cmd.addOption(toOption(o));
  if (c.help) cmd.addHelpText('after', `\n${c.help}`);
  // `capfilt merge --out …`: options after a subcommand's name belong to the subcommand.
  if (c.subcommands?.length) cmd.enablePositionalOptions();
  for (const sub of c.subcommands ?? []) addModelCommand(cmd, sub.name, sub, io, state);
  cmd.action(async () => {
    const values = cmd.opts();
    if ('backend' in values || c.options.some((o) => o.flags.startsWith('--backend'))) await startBackend(values);
    state.code = await c.run(context(io, values), values, cmd.args);
  });
  return cmd;
}

/** A `vl <command>` group whose subcommands are the models; anything else is an unknown model (exit 2). */
function group(program: Command, name: string, description: string, needs: string, models: AnyModelSpec[]): Command {
  return program
    .command(name)
    .enablePositionalOptions()
    .description(`${description} (models: ${models.map((m) => m.name).join(', ') || 'none'})`)
    .usage('<model> [options]')
    .argument('[model]')
    .allowUnknownOption()
    .allowExcessArguments()
    .action((model: string | undefined) => {
      if (model === undefined)
        throw new VlError(
          'INVALID_ARGUMENT',
          `give the model first: vl ${name} <model> … (models: ${models.map((m) => m.name).join(', ')})`,
        );
      getModelWith(model, needs as keyof AnyModelSpec); // throws the right error: unknown, or lacks the command
      throw new VlError('TASK_UNSUPPORTED', `model '${model}' registered after the program was built`, { subject: model });
    });
}

/** Adds `vl verify|train|eval|caption|match|convert <model>` and the models' own commands (`vl capfilt blip`). */
export function addModelCommands(program: Command, io: Io, state: ProgramState): void {
  const models = listModels();
  for (const t of MODEL_COMMANDS) {
    const able = models.filter((m) => m[t.needs] !== undefined);
    const g = group(program, t.name, t.description, t.needs, able);
    for (const m of able) mountTemplate(g, m.name, t, m, io, state, false);
  }
  const own = new Map<string, { spec: AnyModelSpec; command: ModelCommandSpec }[]>();
  for (const m of models) for (const c of m.commands ?? []) own.set(c.name, [...(own.get(c.name) ?? []), { spec: m, command: c }]);
  for (const [name, list] of own) {
    const g = group(
      program,
      name,
      list[0]?.command.description ?? name,
      'commands',
      list.map((l) => l.spec),
    );
    for (const l of list) addModelCommand(g, l.spec.name, l.command, io, state);
  }
}

/** A model's own program (`blip …`, `albef …`): the same leaves as `vl <command> <model>`. */
export function createModelProgram(modelName: string, io: Io, state: ProgramState): Command {
  const spec = getModel(modelName);
  const program = createProgram(modelName, `${spec.description} — the same commands as \`vl <command> ${modelName}\``, io);
  for (const t of MODEL_COMMANDS) if (spec[t.needs] !== undefined) mountTemplate(program, t.name, t, spec, io, state, true);
  for (const c of spec.commands ?? []) addModelCommand(program, c.name, c, io, state);
  return program;
}

/** Parses and runs; returns the exit code instead of exiting. `argv` excludes node and the script. */
export async function runProgram(program: Command, state: ProgramState, argv: readonly string[], io: Io): Promise<number> {
  state.code = 0;
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return state.code;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    const where = [program.name(), ...argv.filter((a) => !a.startsWith('-')).slice(0, 2)].join(' ');
    if (isVlError(err)) {
      io.err(`${where}: ${err.message}`);
      return 2;
    }
    io.err(`${where}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    return 1;
  }
}

/** Runs `<model> <argv>` (a model's bin); returns the exit code. */
export async function runModelCli(modelName: string, argv: readonly string[], io: Io = processIo): Promise<number> {
  const state: ProgramState = { code: 0 };
  return runProgram(createModelProgram(modelName, io, state), state, argv, io);
}
