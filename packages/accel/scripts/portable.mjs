// Checks that a prebuilt binary runs on a machine without a compiler or OpenBLAS: its ELF dependencies are only
// the C runtime (libc, libm, libpthread, libdl, librt, the loader), and it loads in a fresh Node with
// LD_LIBRARY_PATH empty. Used by `npm run native:prebuild`, by the platform package's prepublishOnly, and by
// the tests. `node scripts/portable.mjs FILE` or `node scripts/portable.mjs --package DIR` (exit 1 on failure).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Shared libraries every Linux machine with glibc has. */
const C_RUNTIME =
  /^(linux-vdso\.so\.\d+|libc\.so\.\d+|libm\.so\.\d+|libpthread\.so\.\d+|libdl\.so\.\d+|librt\.so\.\d+|ld-linux[-\w.]*\.so\.\d+)$/;

/** The shared libraries `ldd` lists for a binary (names only), or an error. */
export function neededLibraries(path) {
  const r = spawnSync('ldd', [path], { encoding: 'utf8' });
  if (r.error) return { error: `ldd could not run: ${r.error.message}` };
  if (r.status !== 0) return { error: `ldd ${path} failed: ${(r.stderr || r.stdout).trim()}` };
  const libs = r.stdout
    .split('\n')
    .map((line) => line.trim().split(/\s+/)[0])
    .filter((name) => name && name !== 'statically');
  return { libs: libs.map((name) => name.split('/').pop()) };
}

/** The newest GLIBC_x.y symbol version the binary needs (its glibc floor), or null when objdump is missing. */
export function glibcFloor(path) {
  const r = spawnSync('objdump', ['-T', path], { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) return null;
  const versions = [...r.stdout.matchAll(/GLIBC_(\d+)\.(\d+)(?:\.(\d+))?/g)].map((m) => [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)]);
  if (versions.length === 0) return null;
  versions.sort((a, b) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2]);
  const [major, minor, patch] = versions[versions.length - 1];
  return patch ? `${major}.${minor}.${patch}` : `${major}.${minor}`;
}

/** Loads the binary in a fresh Node with LD_LIBRARY_PATH empty and asks it for its info(). */
export function loadsAlone(path) {
  const script = `const b = require(${JSON.stringify(resolve(path))}); process.stdout.write(JSON.stringify(b.info()));`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env: { ...process.env, LD_LIBRARY_PATH: '' } });
  if (r.status !== 0) return { error: (r.stderr || r.stdout).trim().split('\n').slice(-3).join(' ') };
  return { info: JSON.parse(r.stdout) };
}

/** Every check; `problems` is empty when the binary is portable. */
export function checkPortable(path) {
  if (!existsSync(path)) return { problems: [`${path} does not exist (build it: npm run native:prebuild -w @vl/accel)`] };
  const problems = [];
  const needed = neededLibraries(path);
  if (needed.error) problems.push(needed.error);
  const extra = (needed.libs ?? []).filter((name) => !C_RUNTIME.test(name));
  if (extra.length) problems.push(`needs shared libraries beyond the C runtime: ${extra.join(', ')} (link OpenBLAS statically)`);
  const load = loadsAlone(path);
  if (load.error) problems.push(`does not load with LD_LIBRARY_PATH empty: ${load.error}`);
  return { problems, libs: needed.libs ?? [], info: load.info ?? null, glibc: glibcFloor(path) };
}

function main(args) {
  const dir = args[0] === '--package' ? resolve(args[1] ?? '.') : null;
  const file = dir ? join(dir, 'vl_accel.node') : resolve(args[0] ?? '');
  const { problems, libs, glibc } = checkPortable(file);
  if (dir) {
    for (const needed of ['prebuild.json', 'OPENBLAS-LICENSE']) {
      if (!existsSync(join(dir, needed))) problems.push(`${join(dir, needed)} is missing (npm run native:prebuild -w @vl/accel writes it)`);
    }
    if (existsSync(join(dir, 'prebuild.json'))) {
      const recorded = JSON.parse(readFileSync(join(dir, 'prebuild.json'), 'utf8'));
      if (recorded.glibc !== glibc) problems.push(`prebuild.json says glibc ${recorded.glibc}, the binary needs ${glibc}: rebuild`);
    }
  }
  if (problems.length) {
    process.stderr.write(`@vl/accel: ${file} is not portable:\n${problems.map((p) => `  - ${p}`).join('\n')}\n`);
    process.exit(1);
  }
  process.stdout.write(`@vl/accel: ${file} is portable (needs ${libs.join(', ')}; glibc ≥ ${glibc})\n`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main(process.argv.slice(2));
