// Exit codes of the committed bins on the wasm backend (the default where no tfjs-node is installed): a usage or
// typed error exits 2, a failure outside the command's own handling (here stdout closed under `vl verify … |
// head -c 0`, an EPIPE) exits 1 with Node's report of the error, never 7 with a stack inside Emscripten's
// `uncaughtException` listener (core's initRuntime removes it).
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const VL = fileURLToPath(new URL('../../bin/vl.js', import.meta.url));
const BLIP_BIN = fileURLToPath(new URL('../../../blip/bin/blip.js', import.meta.url));
const FIXTURE = fileURLToPath(new URL('../../../../fixtures/blip-hf/blip-captioning-seed0', import.meta.url));
const EMSCRIPTEN_FRAME = /tf-backend-wasm|ExitStatus/;
const env = { ...process.env, VL_BACKEND: 'wasm', VL_ACCEL: '0' };

const verifyArgs = (checkpoint: string) => [
  'verify',
  'blip',
  '--checkpoint',
  checkpoint,
  '--inputs',
  join(FIXTURE, 'inputs.json'),
  '--expected',
  join(FIXTURE, 'expected.json'),
  '--backend',
  'wasm',
];

/** Runs a bin with stdout closed by the reader before the first write (as `| head -c 0` does). */
function runWithClosedStdout(bin: string, args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.destroy();
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stderr }));
  });
}

describe('bin exit codes on the wasm backend', () => {
  it('vl verify blip with a checkpoint path that does not exist: exit 2, the typed error, no Emscripten frames', () => {
    const r = spawnSync(process.execPath, [VL, ...verifyArgs(join(FIXTURE, 'no-such-folder'))], { env, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/CHECKPOINT_INVALID .*no-such-folder/);
    expect(r.stderr).not.toMatch(EMSCRIPTEN_FRAME);
  });

  for (const [name, bin, args] of [
    ['vl verify blip', VL, verifyArgs(FIXTURE)],
    ['blip verify', BLIP_BIN, verifyArgs(FIXTURE).filter((_, i) => i !== 1)],
  ] as const) {
    it(`${name} with stdout closed: exit 1 with the EPIPE where it happened, no Emscripten frames`, async () => {
      const r = await runWithClosedStdout(bin, [...args]);
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toMatch(/Error: write EPIPE/);
      expect(r.stderr).not.toMatch(EMSCRIPTEN_FRAME);
    });
  }
});
