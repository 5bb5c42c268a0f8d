// `npm run native:prebuild -w @vl/accel`: builds the addon from source with OpenBLAS linked statically, checks
// that it is portable (scripts/portable.mjs) and fills this platform's package (packages/accel-<triple>/):
// vl_accel.node, prebuild.json (how it was built, its glibc floor) and OPENBLAS-LICENSE. Exits 1 on any
// failure: unlike the install step, a release must not go out without its binary.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findOpenBlas } from './openblas.mjs';
import { PREBUILT_PLATFORMS, platformTriple } from './platform.mjs';
import { checkPortable } from './portable.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const triple = platformTriple();
const target = join(root, '..', `accel-${triple}`);

function fail(message) {
  process.stderr.write(`@vl/accel prebuild: ${message}\n`);
  process.exit(1);
}

if (!PREBUILT_PLATFORMS.includes(triple) || !existsSync(join(target, 'package.json'))) {
  fail(
    `no platform package for ${triple}: add packages/accel-${triple} (a copy of accel-linux-x64-gnu with its os/cpu/libc), ` +
      `list '${triple}' in PREBUILT_PLATFORMS (scripts/platform.mjs) and in @vl/accel's optionalDependencies`,
  );
}
const blas = findOpenBlas();
if (blas.link !== 'static') {
  fail(
    `a prebuilt binary links OpenBLAS statically, but no libopenblas.a was found (apt-get install -y libopenblas-dev, or VL_ACCEL_OPENBLAS_DIR)`,
  );
}
const license = [
  process.env.VL_ACCEL_OPENBLAS_DIR && join(process.env.VL_ACCEL_OPENBLAS_DIR, 'LICENSE'),
  '/usr/share/doc/libopenblas-pthread-dev/copyright',
  '/usr/share/doc/libopenblas-dev/copyright',
  '/usr/share/doc/libopenblas0-pthread/copyright',
].find((p) => p && existsSync(p));
if (!license)
  fail("OpenBLAS's licence text was not found (it must ship with the binary): set VL_ACCEL_OPENBLAS_DIR to a build with LICENSE");

const build = spawnSync(process.execPath, [join(root, 'scripts', 'install.mjs'), '--force'], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, VL_ACCEL_BLAS_LINK: 'static' },
});
const built = join(root, 'build', 'Release', 'vl_accel.node');
const status = JSON.parse(readFileSync(join(root, 'install-status.json'), 'utf8'));
if (build.status !== 0 || !status.built) fail(`the source build failed: ${status.note}`);

const binary = join(target, 'vl_accel.node');
copyFileSync(built, binary);
const { problems, libs, info, glibc } = checkPortable(binary);
if (problems.length) fail(`${binary} is not portable:\n  - ${problems.join('\n  - ')}`);
const compiler = spawnSync('cc', ['--version'], { encoding: 'utf8' }).stdout?.split('\n')[0] ?? 'unknown';
const manifest = { platform: triple, napi: 8, glibc, libs, blas: info.blas, simd: info.simd, compiler };
writeFileSync(join(target, 'prebuild.json'), `${JSON.stringify(manifest, null, 2)}\n`);
copyFileSync(license, join(target, 'OPENBLAS-LICENSE'));
const mib = (statSync(binary).size / 2 ** 20).toFixed(1);
process.stdout.write(`@vl/accel prebuild: ${binary} (${mib} MiB; needs ${libs.join(', ')}; glibc ≥ ${glibc}; ${info.blas})\n`);
