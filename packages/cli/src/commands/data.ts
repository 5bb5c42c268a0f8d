// `vl data …`: make the synthetic captioned-scenes dataset (`synth`), check a dataset and count its
// bad records (`check`), and measure how fast it reads into batches (`bench`).
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { type BertTokenizer, type DataReport, IMAGE_NORMS, initRuntime, SYNTH_TASKS, type SynthSummary, type SynthTask } from '@vl/core';
import {
  createDataLoader,
  type DatasetFormat,
  type DatasetSpec,
  loadBertTokenizer,
  measureThroughput,
  writeSynthDataset,
} from '@vl/core/node';
import { BLIP_ADDED_TOKENS } from '@vl/blip';
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
  if (s.task !== 'captions') {
    const what = s.task === 'vqa' ? 'questions (answers.json: the answer list)' : 'image-pair statements, half true';
    console.log(`splits: ${s.task} train ${s.records.train}, val ${s.records.val}, test ${s.records.test} ${what}`);
    return;
  }
  console.log(`splits: train ${s.splits.train}, val ${s.splits.val}, test ${s.splits.test}; ${s.captionsPerImage} captions per image`);
  console.log(
    `noise ${s.noise}: ${n.total} of ${s.trainCaptions} training captions corrupted ` +
      `(other_caption ${n.other_caption}, keyword_soup ${n.keyword_soup}, wrong_attribute ${n.wrong_attribute})`,
  );
}

/** `vl data synth`'s options, as commander parses them. */
interface SynthCommandOptions {
  out: string;
  images: number;
  noise: number;
  seed: number;
  size: number;
  captions: number;
  format: string;
  splits: [number, number, number];
  task: string;
  perImage?: number;
  json?: boolean;
  quiet?: boolean;
}

export function registerDataCommands(program: Command): void {
  const data = program.command('data').description('datasets: make the synthetic set, check and benchmark readers');
  registerReadCommands(data);

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
    .option('--task <captions|vqa|nlvr2>', 'what the split files hold: captions, VQA questions or NLVR2 image-pair statements', 'captions')
    .option(
      '--per-image <n>',
      'vqa: questions per image (default 3); nlvr2: statements per left image (default 2)',
      int('--per-image', 1, 8),
    )
    .option('--json', 'print the summary as JSON')
    .option('--quiet', 'no progress output')
    .action(async (opts: SynthCommandOptions) => {
      if (opts.format !== 'png' && opts.format !== 'jpeg') throw new InvalidArgumentError('--format must be png or jpeg');
      if (!(SYNTH_TASKS as readonly string[]).includes(opts.task))
        throw new InvalidArgumentError(`--task must be one of ${SYNTH_TASKS.join(', ')}`);
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
          task: opts.task as SynthTask,
          perImage: opts.perImage,
        },
        (done, total) => bar.update(done, total),
      );
      bar.stop();
      if (opts.json) console.log(JSON.stringify(summary));
      else printSynth(summary);
    });
}

interface ReadOptions {
  data: string[];
  format?: string;
  imageRoot?: string;
  split?: string;
  imageField?: string;
  captionField?: string;
  size: number;
  batchSize: number;
  concurrency: number;
  vocab?: string;
  json?: boolean;
}

function specOf(o: ReadOptions): DatasetSpec {
  const formats = ['jsonl', 'csv', 'coco-karpathy', 'webdataset', 'auto'];
  if (o.format !== undefined && !formats.includes(o.format))
    throw new InvalidArgumentError(`--format must be one of ${formats.join(', ')}`);
  return {
    path: o.data,
    format: o.format as DatasetFormat | 'auto' | undefined,
    imageRoot: o.imageRoot,
    splits: o.split ? o.split.split(',') : undefined,
    imageField: o.imageField,
    captionField: o.captionField,
  };
}

/** --vocab, else a vocab.txt / tokenizer.json beside the data (the synthetic set writes one). */
async function tokenizerFor(o: ReadOptions): Promise<BertTokenizer> {
  const beside = [join(dirname(o.data[0] as string), 'tokenizer.json'), join(dirname(o.data[0] as string), 'vocab.txt')].find((p) =>
    existsSync(p),
  );
  const path = o.vocab ?? beside;
  if (!path) {
    throw new InvalidArgumentError('no tokenizer: pass --vocab vocab.txt|tokenizer.json (none found beside the data)');
  }
  return loadBertTokenizer(path, { addedTokens: BLIP_ADDED_TOKENS });
}

function readOptions(cmd: Command): Command {
  return cmd
    .requiredOption('--data <paths...>', 'JSONL/CSV file, COCO Karpathy JSON, or WebDataset shards (brace ranges work)')
    .option('--format <format>', 'jsonl | csv | coco-karpathy | webdataset | auto (by extension)')
    .option('--image-root <dir>', "folder image paths are relative to (default: the data file's folder)")
    .option('--split <names>', 'COCO Karpathy splits to keep, comma-separated (e.g. train,restval)')
    .option('--image-field <name>', 'JSONL/CSV image field')
    .option('--caption-field <name>', 'JSONL/CSV caption field')
    .option('--size <px>', 'image side after resizing', int('--size', 8, 4096), 64)
    .option('--batch-size <n>', 'images per batch', int('--batch-size', 1, 65536), 32)
    .option('--concurrency <n>', 'images decoded at once', int('--concurrency', 1, 256), 8)
    .option('--vocab <path>', 'vocab.txt or tokenizer.json (default: one beside the data)')
    .option('--json', 'print the result as JSON');
}

function printReport(report: DataReport): void {
  const s = report.summary();
  console.log(report.format());
  for (const e of report.examples) console.log(`  ${e.reason}: ${e.subject}: ${e.detail}`);
  if (!s.balanced) console.log(`  (counts do not add up: ${s.pending} pending)`);
}

export function registerReadCommands(data: Command): void {
  readOptions(data.command('check'))
    .description('read a dataset through the full pipeline and count kept and dropped records by reason')
    .action(async (o: ReadOptions) => {
      await initRuntime({ backend: 'cpu' });
      const tokenizer = await tokenizerFor(o);
      const { batches, report } = createDataLoader(specOf(o), {
        batchSize: o.batchSize,
        tokenizer,
        transform: { size: o.size, norm: IMAGE_NORMS.clip },
        concurrency: o.concurrency,
        captions: 'all',
      });
      let captions = 0;
      for await (const b of batches) {
        captions += b.captions.length;
        b.dispose();
      }
      if (o.json) console.log(JSON.stringify({ ...report.summary(), captions, examples: report.examples }));
      else {
        printReport(report);
        console.log(`captions kept: ${captions}`);
      }
      if (!report.summary().balanced) process.exitCode = 1;
    });

  readOptions(data.command('bench'))
    .description('measure images/second reading a dataset into batches (decode, resize, normalise, tokenise, tensors)')
    .option('--epochs <n>', 'passes over the data', int('--epochs', 1, 1000), 1)
    .option('--shuffle <n>', 'shuffle buffer size (0: file order)', int('--shuffle', 0, 10_000_000), 256)
    .option('--augment', 'random-resized crop (0.5–1) + flip, as in BLIP pretraining')
    .action(async (o: ReadOptions & { epochs: number; shuffle: number; augment?: boolean }) => {
      await initRuntime({ backend: 'cpu' });
      const tokenizer = await tokenizerFor(o);
      const r = await measureThroughput(
        specOf(o),
        {
          batchSize: o.batchSize,
          tokenizer,
          transform: o.augment
            ? { size: o.size, mode: 'random-resized-crop', scale: [0.5, 1], flip: true, norm: IMAGE_NORMS.clip }
            : { size: o.size, norm: IMAGE_NORMS.clip },
          concurrency: o.concurrency,
          shuffle: o.shuffle,
          captions: 'random',
          maxLength: 35,
        },
        o.epochs,
      );
      const result = {
        images: r.images,
        captions: r.captions,
        batches: r.batches,
        seconds: Number(r.seconds.toFixed(3)),
        imagesPerSecond: Number(r.imagesPerSecond.toFixed(1)),
        size: o.size,
        batchSize: o.batchSize,
        concurrency: o.concurrency,
        augment: Boolean(o.augment),
        report: r.report.summary(),
      };
      if (o.json) console.log(JSON.stringify(result));
      else {
        console.log(
          `${r.images} images in ${r.batches} batches of ${o.batchSize} (${o.size}px${o.augment ? ', augmented' : ''}) in ` +
            `${r.seconds.toFixed(2)}s: ${r.imagesPerSecond.toFixed(0)} images/s`,
        );
        printReport(r.report);
      }
    });
}
