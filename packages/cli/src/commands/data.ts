// `vl data …`: make the synthetic captioned-scenes dataset (`synth`), check a dataset and count its
// bad records (`check`), and measure how fast it reads into batches (`bench`).
import { writeSynthDataset, type SynthSummary } from '@vl/core';
import { SingleBar } from 'cli-progress';
import { type Command, InvalidArgumentError } from 'commander';

function int(name: string, min: number, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be an integer in [${min}, ${max}]`);
    return n;
  };
}

function fraction(value: string): number {
  const n = Number(value);
  if (!(n >= 0 && n <= 1)) throw new InvalidArgumentError('must be a number in [0, 1]');
  return n;
}

function splitFractions(value: string): [number, number, number] {
  const parts = value.split(',').map(Number);
  if (parts.length !== 3 || parts.some((p) => !(p >= 0)) || !(parts[0]! + parts[1]! + parts[2]! > 0)) {
    throw new InvalidArgumentError('expected three non-negative fractions, e.g. 0.8,0.1,0.1');
  }
  return parts as [number, number, number];
}

/** A progress bar on stderr; off a terminal cli-progress prints a plain line every few seconds. */
export function progress(label: string, quiet: boolean): { update(done: number, total: number): void; stop(): void } {
  if (quiet) return { update() {}, stop() {} };
  const bar = new SingleBar({
    format: `${label} [{bar}] {value}/{total} {eta}s`,
    stream: process.stderr,
    hideCursor: Boolean(process.stderr.isTTY),
    noTTYOutput: !process.stderr.isTTY,
    notTTYSchedule: 2000,
  });
  let started = false;
  return {
    update(done, total) {
      if (!started) {
        bar.start(total, 0);
        started = true;
      }
      bar.update(done);
    },
    stop() {
      if (started) bar.stop();
    },
  };
}

function printSynth(s: SynthSummary): void {
  const n = s.noisyCaptions;
  console.log(`wrote ${s.images} images (${s.imageSize}px ${s.format}) to ${s.out} in ${s.seconds.toFixed(2)}s`);
  console.log(`splits: train ${s.splits.train}, val ${s.splits.val}, test ${s.splits.test}; ${s.captionsPerImage} captions per image`);
  console.log(
    `noise ${s.noise}: ${n.total} of ${s.trainCaptions} training captions corrupted ` +
      `(other_caption ${n.other_caption}, keyword_soup ${n.keyword_soup}, wrong_attribute ${n.wrong_attribute})`,
  );
}

export function registerDataCommands(program: Command): void {
  const data = program.command('data').description('datasets: make the synthetic set, check and benchmark readers');

  data
    .command('synth')
    .description('write the synthetic captioned-scenes dataset (PNG/JPEG + train/val/test JSONL + meta.json)')
    .requiredOption('--out <dir>', 'output folder')
    .option('--images <n>', 'total images over the splits', int('--images', 1, 10_000_000), 2000)
    .option('--noise <fraction>', 'fraction of training captions to corrupt', fraction, 0)
    .option('--seed <n>', 'random seed', int('--seed', 0, 2 ** 32 - 1), 0)
    .option('--size <px>', 'image side in pixels', int('--size', 24, 1024), 64)
    .option('--captions <n>', 'captions per image (1-5)', int('--captions', 1, 5), 3)
    .option('--format <png|jpeg>', 'image format', 'png')
    .option('--splits <a,b,c>', 'train,val,test fractions', splitFractions, [0.8, 0.1, 0.1])
    .option('--json', 'print the summary as JSON')
    .option('--quiet', 'no progress output')
    .action(async (opts: { out: string; images: number; noise: number; seed: number; size: number; captions: number; format: string; splits: [number, number, number]; json?: boolean; quiet?: boolean }) => {
      if (opts.format !== 'png' && opts.format !== 'jpeg') throw new InvalidArgumentError('--format must be png or jpeg');
      const bar = progress('synth', Boolean(opts.quiet || opts.json));
      const summary = await writeSynthDataset(
        {
          out: opts.out,
          images: opts.images,
          noise: opts.noise,
          seed: opts.seed,
          imageSize: opts.size,
          captionsPerImage: opts.captions,
          format: opts.format,
          splits: opts.splits,
        },
        (done, total) => bar.update(done, total),
      );
      bar.stop();
      if (opts.json) console.log(JSON.stringify(summary));
      else printSynth(summary);
    });
}
