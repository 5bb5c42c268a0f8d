#!/usr/bin/env node
// `npm run release:check`: a release into a local registry, installed by name the way users install it.
// Starts verdaccio (a pinned version that runs on Node 20; it proxies everything but @vl/* to npmjs), runs
// `changeset version` and `changeset publish` in a clean clone of HEAD (with this checkout's built dist/),
// then, in fresh projects, installs every public package by name with npm and with strict pnpm
// (hoist=false) and runs there: ESM and CommonJS scripts that caption and match with the tiny BLIP
// fixtures, the bins (`blip --help`, `blip caption`, `vl --help`), TypeScript under node16 (ESM and CJS)
// and bundler, and @arethetypeswrong/cli on every published tarball. @vl/accel's prebuilt binary is made first
// (`npm run native:prebuild`, which needs cc, make, python3 and libopenblas-dev) and published in its platform
// package; the npm install runs with no compiler on PATH, and both projects show initRuntime() reporting the
// native kernels active. Exit 0 when all pass.
// Needs `npm run build` first and the npm registry (for tfjs, pnpm, verdaccio; cached after the first run).
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const VERDACCIO = 'verdaccio@5.33.0'; // 6.x needs Node 22
const PNPM = 'pnpm@10.34.9';
const ATTW = '@arethetypeswrong/cli@0.18.5';
/** Published, but not installed by name: users get them through @vl/accel's optionalDependencies. */
const PLATFORM_PACKAGE = /^@vl\/accel-/;
/** What `npm run native:prebuild` writes into the platform package (ignored by git, so copied into the clone). */
const PREBUILT_FILES = ['vl_accel.node', 'prebuild.json', 'OPENBLAS-LICENSE'];
/**
 * Public packages owned by a branch in flight (the BEiT-3 port): published, but neither installed nor checked
 * with attw until that branch lands its package.json (the per-condition exports map) or makes it private.
 */
const IN_FLIGHT = new Set([]);

const repo = fileURLToPath(new URL('..', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'vl-release-'));
const keep = process.argv.includes('--keep');
const started = Date.now();
const children = [];

function log(step) {
  process.stdout.write(`== [${((Date.now() - started) / 1000).toFixed(0)}s] ${step}\n`);
}

/** Runs a command; its output is shown only when it fails (or with --verbose). Returns stdout. */
function run(cmd, args, opts = {}) {
  try {
    const out = execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 26, ...opts });
    if (process.argv.includes('--verbose')) process.stdout.write(out);
    return out;
  } catch (err) {
    process.stderr.write(`\n$ ${cmd} ${args.join(' ')}  (in ${opts.cwd ?? process.cwd()})\n${err.stdout ?? ''}${err.stderr ?? ''}\n`);
    throw new Error(`${cmd} ${args.slice(0, 3).join(' ')} … failed (exit ${err.status})`, { cause: err });
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

async function startRegistry() {
  const dir = join(work, 'registry');
  // Packages proxied from npmjs (tfjs, sharp, …) stay cached between runs; ours are published afresh.
  const storage = join(repo, 'node_modules', '.cache', 'vl-release-registry');
  rmSync(join(storage, '@vl'), { recursive: true, force: true });
  mkdirSync(storage, { recursive: true });
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, 'config.yaml'),
    [
      `storage: ${JSON.stringify(storage)}`,
      `auth: { htpasswd: { file: ${JSON.stringify(join(dir, 'htpasswd'))}, max_users: 10 } }`,
      'uplinks: { npmjs: { url: "https://registry.npmjs.org/", timeout: 60s } }',
      'packages:',
      "  '@vl/*': { access: $all, publish: $authenticated }",
      "  '**': { access: $all, publish: $authenticated, proxy: npmjs }",
      'log: { type: stdout, format: pretty, level: warn }',
      // The platform package of @vl/accel is ~6 MiB packed; verdaccio's default limit is 10mb.
      'max_body_size: 100mb',
      '',
    ].join('\n'),
  );
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(
    'npm',
    ['exec', '--yes', `--package=${VERDACCIO}`, '--', 'verdaccio', '--config', './config.yaml', '--listen', `127.0.0.1:${port}`],
    {
      cwd: dir,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    },
  );
  children.push(child);
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  for (let i = 0; i < 240; i++) {
    if (child.exitCode !== null) throw new Error(`verdaccio exited:\n${output}`);
    const ok = await fetch(`${url}/-/ping`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    if (i === 239) throw new Error(`verdaccio did not answer on ${url}:\n${output}`);
    await new Promise((r) => setTimeout(r, 500));
  }
  // A user for publishing (htpasswd auth; the token goes into the npmrc every step uses).
  const res = await fetch(`${url}/-/user/org.couchdb.user:release`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'release', password: 'release-check' }),
  });
  const { token } = await res.json();
  if (!token) throw new Error(`verdaccio gave no token (${res.status})`);
  const npmrc = join(work, 'npmrc');
  writeFileSync(npmrc, `registry=${url}/\n//127.0.0.1:${port}/:_authToken=${token}\n`);
  return {
    url,
    env: { ...process.env, npm_config_registry: `${url}/`, NPM_CONFIG_USERCONFIG: npmrc, npm_config_update_notifier: 'false' },
  };
}

/** A clean clone of HEAD with this checkout's dist/ folders, versioned and published by changesets. */
function versionAndPublish(env) {
  const clone = join(work, 'repo');
  run('git', ['clone', '--quiet', '--no-local', repo, clone]);
  const packages = readdirSync(join(clone, 'packages'));
  // Private packages (@vl/testing: test helpers consumed from source) have no dist/ and are never published.
  const isPrivate = (name) => JSON.parse(readFileSync(join(clone, 'packages', name, 'package.json'), 'utf8')).private === true;
  for (const name of packages.filter((n) => n.startsWith('accel-'))) {
    for (const file of PREBUILT_FILES) cpSync(join(repo, 'packages', name, file), join(clone, 'packages', name, file));
  }
  for (const name of packages.filter((n) => !n.startsWith('accel-') && !isPrivate(n))) {
    const dist = join(repo, 'packages', name, 'dist');
    if (!existsSync(dist)) throw new Error(`packages/${name}/dist is missing: run npm run build first`);
    cpSync(dist, join(clone, 'packages', name, 'dist'), { recursive: true });
  }
  const changeset = join(repo, 'node_modules', '.bin', 'changeset');
  run(changeset, ['version'], { cwd: clone, env });
  run(changeset, ['publish'], { cwd: clone, env });
  const manifests = packages.map((name) => ({
    dir: join(clone, 'packages', name),
    ...JSON.parse(readFileSync(join(clone, 'packages', name, 'package.json'), 'utf8')),
  }));
  return manifests.filter((m) => !m.private);
}

function fixtures(dir) {
  const vocab = ['[PAD]', '[UNK]', '[unused0]', '[SEP]', '[CLS]', '[MASK]'];
  for (let i = 0; vocab.length < 97; i++) vocab.push(`w${i}`);
  for (const [name, from] of [
    ['cap', 'blip-hf/blip-captioning-seed0'],
    ['ret', 'blip-hf/blip-retrieval-seed0'],
  ]) {
    cpSync(join(repo, 'fixtures', from), join(dir, name), { recursive: true });
    writeFileSync(join(dir, name, 'vocab.txt'), `${[...vocab, '[DEC]', '[ENC]'].join('\n')}\n`);
  }
  cpSync(join(repo, 'packages/core/src/data/__tests__/fixtures/images/ok2.jpg'), join(dir, 'cat.jpg'));
  cpSync(join(repo, 'packages/core/src/data/__tests__/fixtures/images/ok1.png'), join(dir, 'dog.png'));
}

const ESM = (names) => `
${names.map((n, i) => `import * as p${i} from '${n}';`).join('\n')}
import { BlipForConditionalGeneration, BlipForImageTextRetrieval } from '@vl/blip';
for (const [name, m] of Object.entries({ ${names.map((n, i) => `'${n}': p${i}`).join(', ')} })) if (Object.keys(m).length === 0) throw new Error(name + ' exports nothing');
const captioner = await BlipForConditionalGeneration.fromPretrained('./cap');
const [caption] = await captioner.caption(['cat.jpg'], { numBeams: 2, maxLength: 6 });
const matcher = await BlipForImageTextRetrieval.fromPretrained('./ret');
const { itm } = await matcher.match(['cat.jpg', 'dog.png'], ['w1 w2', 'w3']);
if (typeof caption !== 'string' || itm.length !== 2) throw new Error('unexpected output');
console.log('esm ok:', JSON.stringify(caption), itm.map((r) => r.map((p) => p.toFixed(3)).join(' ')).join(' | '));
`;

const CJS = (names) => `
const mods = { ${names.map((n) => `'${n}': require('${n}')`).join(', ')} };
for (const [name, m] of Object.entries(mods)) if (Object.keys(m).length === 0) throw new Error(name + ' exports nothing');
const { BlipForConditionalGeneration, BlipForImageTextRetrieval } = mods['@vl/blip'];
(async () => {
  const captioner = await BlipForConditionalGeneration.fromPretrained('./cap');
  const [caption] = await captioner.caption(['cat.jpg'], { numBeams: 2, maxLength: 6 });
  const matcher = await BlipForImageTextRetrieval.fromPretrained('./ret');
  const { itm } = await matcher.match(['cat.jpg', 'dog.png'], ['w1 w2', 'w3']);
  if (typeof caption !== 'string' || itm.length !== 2) throw new Error('unexpected output');
  console.log('cjs ok:', JSON.stringify(caption));
})().catch((err) => { console.error(err); process.exit(1); });
`;

const TS = `
import { BlipForConditionalGeneration } from '@vl/blip';
import { initRuntime, isVlError, type RuntimeInfo } from '@vl/core';
import { loadBertTokenizer } from '@vl/core/node';
import { runVl } from '@vl/cli';
export async function main(): Promise<RuntimeInfo> {
  const model = await BlipForConditionalGeneration.fromPretrained('./cap');
  const captions: string[] = await model.caption(['cat.jpg']);
  void captions; void loadBertTokenizer; void isVlError; void runVl;
  return initRuntime();
}
`;

function typescript(dir) {
  const tsc = join(repo, 'node_modules', 'typescript', 'bin', 'tsc');
  mkdirSync(join(dir, 'ts'), { recursive: true });
  writeFileSync(join(dir, 'ts', 'app.mts'), TS);
  writeFileSync(join(dir, 'ts', 'app.cts'), TS);
  const base = {
    strict: true,
    noEmit: true,
    target: 'es2022',
    skipLibCheck: false,
    types: ['node'],
    typeRoots: [join(repo, 'node_modules/@types')],
  };
  for (const [name, options, files] of [
    ['node16 (an ESM and a CommonJS file)', { module: 'node16', moduleResolution: 'node16' }, ['ts/app.mts', 'ts/app.cts']],
    ['bundler', { module: 'esnext', moduleResolution: 'bundler' }, ['ts/app.mts']],
  ]) {
    const config = join(dir, `tsconfig.${options.moduleResolution}.json`);
    writeFileSync(config, JSON.stringify({ compilerOptions: { ...base, ...options }, files }, null, 2));
    const r = spawnSync(process.execPath, [tsc, '-p', config, '--pretty', 'false'], { cwd: dir, encoding: 'utf8' });
    const errors = `${r.stdout}${r.stderr}`.split('\n').filter((l) => /error TS\d+/.test(l));
    // tfjs-core's own .d.ts names the global `Long` of @types/long, which is not in `types`: its errors are tfjs's.
    const ours = errors.filter((l) => !/node_modules[\\/](\.pnpm[\\/][^\\/]+[\\/]node_modules[\\/])?@tensorflow[\\/]/.test(l));
    if (ours.length) throw new Error(`tsc ${name} in ${dir}:\n${ours.join('\n')}`);
    log(`  tsc ${name}: no errors in our packages or the app (${errors.length} inside @tensorflow's own .d.ts)`);
  }
}

const ACCEL = `
import { initRuntime } from '@vl/core';
const { backend, accel } = await initRuntime();
if (backend !== 'wasm' || !accel.active) throw new Error('native kernels not active: ' + backend + ', ' + accel.note);
console.log('accel:', accel.note);
`;

/** PATH with node and sh only (the bins' shebangs need node; npm runs install scripts with sh): no cc, make or python3. */
function compilerFreePath() {
  const bin = join(work, 'no-compiler-bin');
  mkdirSync(bin, { recursive: true });
  symlinkSync(process.execPath, join(bin, 'node'));
  symlinkSync('/bin/sh', join(bin, 'sh'));
  for (const tool of ['cc', 'gcc', 'make', 'python3']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`], { env: { PATH: bin } }).status === 0) throw new Error(`${tool} is still on ${bin}`);
  }
  return bin;
}

/** npm's own CLI script, to run npm under a PATH that holds no npm. */
function npmCli() {
  const candidates = [
    process.env.npm_execpath,
    join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js'),
  ].filter((p) => p && /npm-cli\.js$/.test(p) && existsSync(p));
  if (!candidates[0]) throw new Error('npm-cli.js not found next to node');
  return candidates[0];
}

function checkAccel(kind, dir, env) {
  writeFileSync(join(dir, 'accel.mjs'), ACCEL);
  const statusFile = join(dir, 'node_modules', '@vl', 'accel', 'install-status.json');
  const status = existsSync(statusFile) ? JSON.parse(readFileSync(statusFile, 'utf8')) : null;
  process.stdout.write(`   @vl/accel install step (${kind}): ${status?.note ?? 'did not run'}\n`);
  if (kind === 'npm' && !status?.prebuilt)
    throw new Error(`npm: @vl/accel's install step did not take the prebuilt binary: ${status?.note}`);
  process.stdout.write(`   ${run(process.execPath, ['accel.mjs'], { cwd: dir, env: { ...env, VL_BACKEND: 'wasm' } }).trim()}\n`);
}

function checkProject(kind, dir, names, env) {
  fixtures(dir);
  writeFileSync(join(dir, 'esm.mjs'), ESM(names));
  writeFileSync(join(dir, 'cjs.cjs'), CJS(names));
  process.stdout.write(`   ${run(process.execPath, ['esm.mjs'], { cwd: dir, env }).trim()}\n`);
  process.stdout.write(`   ${run(process.execPath, ['cjs.cjs'], { cwd: dir, env }).trim()}\n`);
  const bin = (name) => join(dir, 'node_modules', '.bin', name);
  if (!/^Usage: blip/m.test(run(bin('blip'), ['--help'], { cwd: dir, env }))) throw new Error(`${kind}: blip --help printed no usage`);
  if (!/^Usage: vl/m.test(run(bin('vl'), ['--help'], { cwd: dir, env }))) throw new Error(`${kind}: vl --help printed no usage`);
  process.stdout.write(
    `   blip caption: ${run(bin('blip'), ['caption', '--checkpoint', './cap', 'cat.jpg', '--max-length', '6'], { cwd: dir, env }).trim()}\n`,
  );
  typescript(dir);
}

async function main() {
  log('npm run native:prebuild -w @vl/accel (the binary of the platform package)');
  process.stdout.write(
    `   ${run('npm', ['run', '--silent', 'native:prebuild', '-w', '@vl/accel'], { cwd: repo }).trim().split('\n').pop()}\n`,
  );
  log(`registry (${VERDACCIO})`);
  const { url, env } = await startRegistry();
  log(`changeset version + publish into ${url}`);
  const published = versionAndPublish(env);
  const installed = published.filter((m) => !PLATFORM_PACKAGE.test(m.name) && !IN_FLIGHT.has(m.name));
  const names = installed.map((m) => m.name);
  const specs = installed.map((m) => `${m.name}@${m.version}`);
  log(`published: ${published.map((m) => `${m.name}@${m.version}`).join(', ')}`);
  for (const name of IN_FLIGHT) log(`  ${name}: in flight on another branch, not installed or checked (IN_FLIGHT in this script)`);

  log(`npm: install ${specs.join(' ')} by name`);
  const npmDir = join(work, 'app-npm');
  mkdirSync(npmDir);
  writeFileSync(join(npmDir, 'package.json'), JSON.stringify({ name: 'app-npm', private: true, type: 'module' }));
  // No compiler on PATH: @vl/accel's install step must take the prebuilt binary of its platform package.
  const noCompiler = { ...env, PATH: compilerFreePath() };
  run(process.execPath, [npmCli(), 'install', '--no-audit', '--no-fund', ...specs], { cwd: npmDir, env: noCompiler });
  checkProject('npm', npmDir, names, env);
  checkAccel('npm', npmDir, env);

  log(`pnpm (${PNPM}, hoist=false): install by name`);
  const pnpmDir = join(work, 'app-pnpm');
  mkdirSync(pnpmDir);
  // tfjs 4.22's Node build requires `long` without declaring it (docs/install.md).
  const pnpmConfig = { packageExtensions: { '@tensorflow/tfjs@4': { dependencies: { long: '^4.0.0' } } } };
  writeFileSync(join(pnpmDir, 'package.json'), JSON.stringify({ name: 'app-pnpm', private: true, type: 'module', pnpm: pnpmConfig }));
  writeFileSync(join(pnpmDir, '.npmrc'), `hoist=false\nauto-install-peers=true\nregistry=${url}/\n`);
  run('npm', ['exec', '--yes', `--package=${PNPM}`, '--', 'pnpm', 'add', ...specs], { cwd: pnpmDir, env });
  checkProject('pnpm', pnpmDir, names, env);
  // pnpm 10 runs no dependency install scripts by default: the runtime finds the platform package by itself.
  checkAccel('pnpm', pnpmDir, env);

  log(`attw (${ATTW}) on every published package`);
  for (const m of published.filter((p) => !IN_FLIGHT.has(p.name) && !PLATFORM_PACKAGE.test(p.name))) {
    const out = run('npm', ['exec', '--yes', `--package=${ATTW}`, '--', 'attw', '--pack', m.dir, '--format', 'table-flipped'], { env });
    if (!/No problems found/.test(out)) throw new Error(`attw found problems in ${m.name}:\n${out}`);
    log(`  attw ${m.name}: no problems`);
  }
  log(`release check passed in ${((Date.now() - started) / 1000).toFixed(0)} s`);
}

function cleanup() {
  for (const c of children) {
    try {
      process.kill(-c.pid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
  if (!keep) rmSync(work, { recursive: true, force: true });
  else process.stdout.write(`kept ${work}\n`);
}

main().then(
  () => {
    cleanup();
  },
  (err) => {
    process.stderr.write(`release check failed: ${err.message}\n`);
    cleanup();
    process.exitCode = 1;
  },
);
