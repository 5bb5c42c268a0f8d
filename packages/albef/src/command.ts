// The `albef` command's logic (cli.ts runs it): `verify --model DIR --inputs inputs.json --expected expected.json [--tol]`
// compares every output expected.json names with this port's and exits non-zero past the tolerance.
import { parseArgs } from 'node:util';
import { formatParityReport, VlError } from '@vl/core';
import { verifyAlbef } from './verify.js';

const USAGE = `usage: albef verify --model DIR --inputs inputs.json --expected expected.json [--tol 1e-4]

  --model     folder with config.json and model.safetensors (official ALBEF key names)
  --inputs    tensors the reference was run on (image, input_ids, attention_mask, mlm_input_ids, mlm_labels, alpha)
  --expected  { meta, outputs } written by the reference; every output it names is checked
  --tol       max abs diff per output (default: meta.tolerance_max_abs, else 1e-4)`;

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    console.log(USAGE);
    return command === undefined ? 2 : 0;
  }
  if (command !== 'verify') {
    console.error(`unknown command '${command}'\n\n${USAGE}`);
    return 2;
  }
  let values: { model?: string; inputs?: string; expected?: string; tol?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: rest,
      options: { model: { type: 'string' }, inputs: { type: 'string' }, expected: { type: 'string' }, tol: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
    }));
  } catch (err) {
    console.error(`${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (!values.model || !values.inputs || !values.expected) {
    console.error(`--model, --inputs and --expected are required\n\n${USAGE}`);
    return 2;
  }
  const tol = values.tol === undefined ? undefined : Number(values.tol);
  if (tol !== undefined && !(tol >= 0)) {
    console.error(`--tol must be a non-negative number, got '${values.tol}'`);
    return 2;
  }
  try {
    const report = await verifyAlbef({ model: values.model, inputs: values.inputs, expected: values.expected, tol });
    console.log(formatParityReport(report));
    return report.passed ? 0 : 1;
  } catch (err) {
    if (err instanceof VlError) console.error(`error: ${err.message}`);
    else console.error(err);
    return 2;
  }
}

