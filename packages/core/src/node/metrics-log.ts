// JSONL metrics log: one JSON object per optimizer step, appended; on resume the lines after the
// checkpoint's step are dropped so the log reads as one uninterrupted run.
import { appendFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';

/** One line of the log. */
export interface StepRecord {
  /** Optimizer steps completed, counting this one (1-based). */
  step: number;
  epoch: number;
  lr: number;
  /** Distillation weight used in this step. */
  alpha: number;
  loss: number;
  losses: Record<string, number>;
  metrics: Record<string, number>;
  /** Gradient norm before clipping (null when not computed). */
  gradNorm: number | null;
  /** Wall time of the step in milliseconds. */
  ms: number;
}

export class JsonlMetricsLog {
  constructor(readonly path: string) {}

  async append(record: StepRecord): Promise<void> {
    await mkdir(dirname(this.path), { recursive: true });
    await appendFile(this.path, `${JSON.stringify(record)}\n`);
  }

  /** Keeps only records with step ≤ `step` (a resumed run rewrites what came after its checkpoint). */
  async truncateAfter(step: number): Promise<void> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch {
      return;
    }
    const kept = text.split('\n').filter((line) => {
      if (!line.trim()) return false;
      try {
        return (JSON.parse(line) as { step?: number }).step! <= step;
      } catch {
        return false; // a line torn by a crash
      }
    });
    await writeFile(this.path, kept.map((l) => `${l}\n`).join(''));
  }

  async read(): Promise<StepRecord[]> {
    const text = await readFile(this.path, 'utf8');
    return text
      .split('\n')
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l) as StepRecord);
  }
}
