// Progress bars on stderr (cli-progress): live on a terminal, a line every few seconds otherwise.
import { SingleBar } from 'cli-progress';
import type { Progress } from '../model/contract.js';

export function progressBar(label: string, quiet: boolean): Progress {
  if (quiet) return { update: () => {}, stop: () => {} };
  const bar = new SingleBar({
    format: `${label} [{bar}] {value}/{total} | ETA {eta_formatted} {info}`,
    stream: process.stderr,
    noTTYOutput: !process.stderr.isTTY,
    notTTYSchedule: 5000,
    hideCursor: Boolean(process.stderr.isTTY),
    etaBuffer: 50,
  });
  let started = false;
  return {
    update(done, total, info = '') {
      if (!started) bar.start(total, done, { info });
      started = true;
      bar.setTotal(total);
      bar.update(done, { info });
    },
    stop: () => {
      if (started) bar.stop();
      started = false;
    },
  };
}
