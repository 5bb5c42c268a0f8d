// Install step of @vl/accel, the way native npm packages do it: use the prebuilt binary of this platform's
// package (@vl/accel-linux-x64-gnu, an optional dependency) when it loads, else build from source with node-gyp
// (offline, against the installed Node's headers), else leave the package "unavailable". It never fails the
// install: the accelerator is optional, and the reason it is missing is written to install-status.json for the
// runtime to report.
//   node scripts/install.mjs            install-time behaviour
//   node scripts/install.mjs --force    rebuild from source even when a binary loads
// (`npm run native:prebuild` is scripts/prebuild.mjs: a static build that fills the platform package.)
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findOpenBlas } from './openblas.mjs';
import { platformPackageName } from './platform.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = new Set(process.argv.slice(2));
const force = args.has('--force');
const BINARY = 'vl_accel.node';
const built = join(root, 'build', 'Release', BINARY);
const require = createRequire(import.meta.url);
const platformPackage = platformPackageName();

/** The platform package's binary, if npm installed that package (it is optional: only on a matching machine). */
function prebuiltPath() {
  try {
    return require.resolve(`${platformPackage}/${BINARY}`);
  } catch {
    return null;
  }
}

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
  const prebuilt = prebuiltPath();
  if (prebuilt && tryLoad(prebuilt) === null)
    finish({ built: false, prebuilt: true, note: `using the prebuilt binary of ${platformPackage}` });
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

finish({ built: true, prebuilt: false, note: `built ${built} (OpenBLAS linked ${blas.link})` });
