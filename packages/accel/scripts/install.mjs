// Install step of @vl/accel, the way native npm packages do it: use a prebuilt binary when one
// loads, else build from source with node-gyp (offline, against the installed Node's headers),
// else leave the package "unavailable". It never fails the install: the accelerator is optional,
// and the reason it is missing is written to install-status.json for the runtime to report.
//   node scripts/install.mjs            install-time behaviour
//   node scripts/install.mjs --force    rebuild from source even when a binary loads
//   node scripts/install.mjs --prebuild rebuild, then copy into prebuilds/<platform>-<arch>/
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findOpenBlas } from './openblas.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = new Set(process.argv.slice(2));
const force = args.has('--force') || args.has('--prebuild');
const BINARY = 'vl_accel.node';
const built = join(root, 'build', 'Release', BINARY);
const prebuilt = join(root, 'prebuilds', `${process.platform}-${process.arch}`, BINARY);
const require = createRequire(import.meta.url);

function say(line) {
  process.stdout.write(`@vl/accel: ${line}\n`);
}

function finish(status) {
  writeFileSync(join(root, 'install-status.json'), `${JSON.stringify({ ...status, at: new Date().toISOString() }, null, 2)}\n`);
  say(status.built || status.prebuilt ? status.note : `native kernels not built: ${status.note} (everything still works without them)`);
  process.exit(0);
}

/** Loads a binary in this process; returns an error message, or null when it loads. */
function tryLoad(path) {
  if (!existsSync(path)) return `${path} does not exist`;
  try {
    const binding = require(path);
    return typeof binding.gemm === 'function' ? null : `${path} does not export the expected kernels`;
  } catch (err) {
    return String(err?.message ?? err).split('\n')[0];
  }
}

function has(command) {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
}

/** A directory whose include/node holds node_api.h, so node-gyp does not download headers. */
function findNodeDir() {
  const candidates = [process.env.npm_config_nodedir, dirname(dirname(process.execPath)), '/usr', '/usr/local'];
  return candidates.find(
    (d) => d && existsSync(join(d, 'include', 'node', 'node_api.h')) && existsSync(join(d, 'include', 'node', 'common.gypi')),
  );
}

function findNodeGyp() {
  const candidates = [
    process.env.npm_config_node_gyp,
    join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ];
  try {
    candidates.push(require.resolve('node-gyp/bin/node-gyp.js'));
  } catch {
    // not installed as a package: fine, npm bundles one
  }
  const script = candidates.find((c) => c && existsSync(c));
  if (script) return { command: process.execPath, prefix: [script] };
  if (has('node-gyp')) return { command: 'node-gyp', prefix: [] };
  return null;
}

if (process.env.VL_ACCEL_SKIP_BUILD === '1' && !force) {
  finish({ built: false, prebuilt: false, note: 'VL_ACCEL_SKIP_BUILD=1 is set' });
}

if (!force) {
  if (tryLoad(prebuilt) === null) finish({ built: false, prebuilt: true, note: `using the prebuilt binary ${prebuilt}` });
  if (tryLoad(built) === null) finish({ built: true, prebuilt: false, note: `using the binary built earlier at ${built}` });
}

const missing = [];
if (!has('cc') && !has('gcc')) missing.push('a C compiler (apt-get install -y build-essential)');
if (!has('make')) missing.push('make');
if (!has('python3')) missing.push('python3 (node-gyp needs it)');
const nodeDir = findNodeDir();
if (!nodeDir) missing.push(`Node headers (include/node/node_api.h next to ${process.execPath}; node-gyp would download them)`);
const blas = findOpenBlas();
if (blas.link === 'none' || !blas.include) missing.push('OpenBLAS (apt-get install -y libopenblas-dev)');
const gyp = findNodeGyp();
if (!gyp) missing.push('node-gyp');
if (missing.length > 0) finish({ built: false, prebuilt: false, note: `missing ${missing.join(', ')}` });

say(`building from source (OpenBLAS ${blas.link}, Node headers in ${nodeDir})`);
const result = spawnSync(gyp.command, [...gyp.prefix, 'rebuild', `--nodedir=${nodeDir}`], {
  cwd: root,
  encoding: 'utf8',
  timeout: 10 * 60_000,
  env: { ...process.env, npm_config_nodedir: nodeDir },
});
if (result.status !== 0) {
  const log = `${result.stdout ?? ''}\n${result.stderr ?? ''}`.trim().split('\n').slice(-15).join('\n');
  process.stdout.write(`${log}\n`);
  finish({ built: false, prebuilt: false, note: `node-gyp rebuild failed (${result.error?.message ?? `exit ${result.status}`})` });
}
const loadError = tryLoad(built);
if (loadError) finish({ built: false, prebuilt: false, note: `the built binary does not load: ${loadError}` });

if (args.has('--prebuild')) {
  mkdirSync(dirname(prebuilt), { recursive: true });
  copyFileSync(built, prebuilt);
  say(`copied to ${prebuilt}`);
}
finish({ built: true, prebuilt: false, note: `built ${built} (OpenBLAS linked ${blas.link})` });
