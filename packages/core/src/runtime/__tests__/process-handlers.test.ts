// Errors after the wasm backend initialises end the process as Node ends it (code 1, the stack where the error
// was thrown), not through Emscripten's `uncaughtException` / `unhandledRejection` listeners (code 7, a stack
// starting in tf-backend-wasm.node.js): initRuntime removes those listeners under Node. Runs the built dist in a
// fresh Node process per case.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const dist = join(process.cwd(), 'dist');

function run(body: string, backend = 'wasm') {
  const script = `
import { pathToFileURL } from 'node:url';
const core = await import(pathToFileURL(process.env.DIST + '/index.js').href);
await core.initRuntime({ backend: '${backend}', accel: false });
${body}`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    cwd: process.cwd(),
    env: { ...process.env, DIST: dist, VL_BACKEND: '' },
    encoding: 'utf8',
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const EMSCRIPTEN_FRAME = /tf-backend-wasm|ExitStatus/;

describe('process listeners of the wasm backend', () => {
  it('is built', () => {
    expect(existsSync(join(dist, 'index.js')), 'run the build first').toBe(true);
  });

  it('leaves no Emscripten listener on the process after initRuntime (wasm)', () => {
    const r = run(`
const shape = (l) => /ExitStatus|throw reason/.test(String(l));
process.stdout.write(JSON.stringify({
  uncaught: process.listeners('uncaughtException').filter(shape).length,
  rejection: process.listeners('unhandledRejection').filter(shape).length,
}));`);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ uncaught: 0, rejection: 0 });
  });

  it('keeps the listeners the application registered', () => {
    const r = run(
      `process.on('uncaughtException', (err) => { process.stdout.write('app handled: ' + err.message); process.exit(0); });
await core.initRuntime({ backend: 'cpu', accel: false });
await core.initRuntime({ backend: 'wasm', accel: false });
setTimeout(() => { throw new Error('late'); }, 0);`,
      'cpu',
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('app handled: late');
  });

  for (const [what, body] of [
    ['a top-level throw', `throw new Error('thrown at the real place');`],
    ['a throw in a timer', `setTimeout(() => { throw new Error('thrown at the real place'); }, 0);`],
    ['an unhandled rejection', `Promise.reject(new Error('thrown at the real place'));`],
  ] as const) {
    it(`${what} exits 1 with the error's own stack`, () => {
      const r = run(body);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('Error: thrown at the real place');
      expect(r.stderr).toMatch(/at .*\[eval1\]|\[eval1\]:\d+/); // the frame of the script that threw
      expect(r.stderr).not.toMatch(EMSCRIPTEN_FRAME);
    });
  }
});
