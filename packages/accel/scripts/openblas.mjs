// Finds OpenBLAS for binding.gyp: prints include dirs (`include`) or link flags (`libs`).
// Prefers the static archive (users then need no BLAS at run time); VL_ACCEL_OPENBLAS_DIR points at
// a custom build (with include/ and lib/), VL_ACCEL_BLAS_LINK=shared forces dynamic linking.
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const multiarch = process.arch === 'arm64' ? 'aarch64-linux-gnu' : 'x86_64-linux-gnu';
const custom = process.env.VL_ACCEL_OPENBLAS_DIR;
// Debian/Ubuntu's pthread flavour first: its cblas.h declares openblas_set_num_threads.
const includeDirs = [
  ...(custom ? [join(custom, 'include')] : []),
  `/usr/include/${multiarch}/openblas-pthread`,
  '/usr/include/openblas',
  '/usr/local/include',
  '/usr/include',
];
const libDirs = [
  ...(custom ? [join(custom, 'lib')] : []),
  `/usr/lib/${multiarch}/openblas-pthread`,
  `/usr/lib/${multiarch}`,
  '/usr/local/lib',
  '/usr/lib64',
  '/usr/lib',
];

export function findOpenBlas() {
  const include = includeDirs.find((d) => existsSync(join(d, 'cblas.h')));
  const shared = process.env.VL_ACCEL_BLAS_LINK === 'shared';
  const archiveDir = shared ? undefined : libDirs.find((d) => existsSync(join(d, 'libopenblas.a')));
  const sharedDir = libDirs.find((d) => existsSync(join(d, 'libopenblas.so')));
  if (archiveDir) return { include, libs: [join(archiveDir, 'libopenblas.a'), '-lpthread', '-lm'], link: 'static' };
  if (sharedDir) return { include, libs: [`-L${sharedDir}`, `-Wl,-rpath,${sharedDir}`, '-lopenblas', '-lpthread', '-lm'], link: 'shared' };
  return { include, libs: [], link: 'none' };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const found = findOpenBlas();
  const what = process.argv[2];
  if (what === 'include') process.stdout.write(found.include ?? '');
  else if (what === 'libs') process.stdout.write(found.libs.join(' '));
  else process.stdout.write(JSON.stringify(found));
}
