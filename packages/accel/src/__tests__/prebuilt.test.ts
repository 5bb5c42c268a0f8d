// The prebuilt binary, shipped the way sharp ships libvips: a per-platform package (@vl/accel-linux-x64-gnu)
// listed in @vl/accel's optionalDependencies, holding a binary with OpenBLAS linked in statically. Checked here:
// the package names (runtime and install step agree), the search order, the platform packages' manifests, that
// the binary as built needs nothing beyond the C runtime and loads with LD_LIBRARY_PATH empty, and that the
// install step takes the platform package's binary with no compiler on PATH. With VL_ACCEL_REQUIRE=1 (CI) a
// missing binary fails these tests instead of leaving them to the machines that have one.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { ACCEL_ABI, binaryCandidates, platformPackageName } from '../binding.js';

interface PlatformModule {
  PREBUILT_PLATFORMS: string[];
  platformPackageName(platform: string, arch: string, libc: 'gnu' | 'musl' | null): string;
}
interface PortableModule {
  checkPortable(path: string): { problems: string[]; libs: string[]; info: { abi: number } | null; glibc: string | null };
}
interface Manifest {
  name: string;
  version: string;
  os?: string[];
  cpu?: string[];
  libc?: string[];
  files?: string[];
  scripts?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
}

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const packages = join(root, '..');
const { PREBUILT_PLATFORMS, platformPackageName: scriptName } = (await import(join(root, 'scripts', 'platform.mjs'))) as PlatformModule;
const { checkPortable } = (await import(join(root, 'scripts', 'portable.mjs'))) as PortableModule;
const readManifest = (dir: string) => JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as Manifest;
const accel = readManifest(root);
const built = join(root, 'build', 'Release', 'vl_accel.node');
const required = process.env.VL_ACCEL_REQUIRE === '1';
const haveBinary = existsSync(built);
const scratch = join(root, '..', '..', 'node_modules', '.cache', 'vl-accel-prebuilt');
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('platform packages', () => {
  it('are named @vl/accel-<platform>-<arch>[-gnu|-musl], the same by the runtime and by the install step', () => {
    const cases: [string, string, 'gnu' | 'musl' | null, string][] = [
      ['linux', 'x64', 'gnu', '@vl/accel-linux-x64-gnu'],
      ['linux', 'x64', 'musl', '@vl/accel-linux-x64-musl'],
      ['linux', 'arm64', 'gnu', '@vl/accel-linux-arm64-gnu'],
      ['darwin', 'arm64', null, '@vl/accel-darwin-arm64'],
      ['win32', 'x64', null, '@vl/accel-win32-x64'],
    ];
    for (const [platform, arch, libc, name] of cases) {
      expect(platformPackageName(platform, arch, libc)).toBe(name);
      expect(scriptName(platform, arch, libc)).toBe(name);
    }
  });

  it('are optional dependencies of @vl/accel at its exact version, each limited to its os, cpu and libc', () => {
    const expected = Object.fromEntries(PREBUILT_PLATFORMS.map((t) => [`@vl/accel-${t}`, accel.version]));
    expect(accel.optionalDependencies).toEqual(expected);
    for (const triple of PREBUILT_PLATFORMS) {
      const manifest = readManifest(join(packages, `accel-${triple}`));
      const [os, cpu, libc] = triple.split('-');
      expect(manifest.name).toBe(`@vl/accel-${triple}`);
      expect({ os: manifest.os, cpu: manifest.cpu, libc: manifest.libc }).toEqual({
        os: [os],
        cpu: [cpu],
        libc: libc ? [libc === 'gnu' ? 'glibc' : 'musl'] : undefined,
      });
      expect(manifest.files).toEqual(expect.arrayContaining(['vl_accel.node', 'prebuild.json', 'OPENBLAS-LICENSE', 'LICENSE']));
      // Publishing refuses a missing or non-portable binary.
      expect(manifest.scripts?.prepublishOnly).toBe('node ../accel/scripts/portable.mjs --package .');
    }
  });

  it('are searched after a local build; VL_ACCEL_BINARY alone when set', () => {
    const name = `${platformPackageName()}/vl_accel.node`;
    const resolved = (specifier: string) => (specifier === name ? '/nm/platform/vl_accel.node' : null);
    expect(binaryCandidates('/pkg', undefined, resolved)).toEqual(['/pkg/build/Release/vl_accel.node', '/nm/platform/vl_accel.node']);
    expect(binaryCandidates('/pkg', undefined, () => null)).toEqual(['/pkg/build/Release/vl_accel.node']);
    expect(binaryCandidates('/pkg', '/x/custom.node', resolved)).toEqual(['/x/custom.node']);
  });
});

describe('portability checks', () => {
  it('name what a binary needs beyond the C runtime, and a file that does not load', () => {
    // Node itself links libstdc++ and libgcc_s, and is no addon.
    const { problems } = checkPortable(process.execPath);
    expect(problems.join('\n')).toMatch(/beyond the C runtime: .*libstdc\+\+\.so\.6/);
    expect(problems.join('\n')).toMatch(/does not load with LD_LIBRARY_PATH empty/);
    expect(checkPortable('/nonexistent/vl_accel.node').problems).toEqual([expect.stringMatching(/does not exist .*native:prebuild/)]);
  });

  it('pass for the binary as built: libc/libm only, loads with LD_LIBRARY_PATH empty', () => {
    if (required) expect(haveBinary, `${built} was not built`).toBe(true);
    if (!haveBinary) return;
    const report = checkPortable(built);
    expect(report.problems).toEqual([]);
    expect(report.libs).toEqual(expect.arrayContaining(['libc.so.6']));
    expect(report.info?.abi).toBe(ACCEL_ABI);
    expect(report.glibc).toMatch(/^2\.\d+$/);
  });
});

describe('install step', () => {
  it('takes the platform package binary with no compiler on PATH', () => {
    if (required) expect(haveBinary, `${built} was not built`).toBe(true);
    if (!haveBinary) return;
    // An installed layout: node_modules/@vl/accel (its published install script) next to the platform package.
    const nm = join(scratch, 'app', 'node_modules', '@vl');
    rmSync(scratch, { recursive: true, force: true });
    const installed = join(nm, 'accel');
    const platform = join(nm, platformPackageName().slice('@vl/'.length));
    mkdirSync(join(installed, 'scripts'), { recursive: true });
    mkdirSync(platform, { recursive: true });
    for (const file of ['install.mjs', 'openblas.mjs', 'platform.mjs'])
      cpSync(join(root, 'scripts', file), join(installed, 'scripts', file));
    writeFileSync(join(installed, 'package.json'), JSON.stringify({ name: '@vl/accel', type: 'module' }));
    cpSync(built, join(platform, 'vl_accel.node'));
    writeFileSync(
      join(platform, 'package.json'),
      JSON.stringify({ name: platformPackageName(), exports: { './vl_accel.node': './vl_accel.node' } }),
    );
    // PATH holds only node and sh: no cc, make or python3.
    const bin = join(scratch, 'bin');
    mkdirSync(bin);
    symlinkSync(process.execPath, join(bin, 'node'));
    symlinkSync('/bin/sh', join(bin, 'sh'));
    const env = { ...process.env, PATH: bin };
    expect(spawnSync('sh', ['-c', 'command -v cc || command -v gcc || command -v make'], { env }).status).not.toBe(0);
    const r = spawnSync(process.execPath, [join(installed, 'scripts', 'install.mjs')], { cwd: installed, env, encoding: 'utf8' });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    const status = JSON.parse(readFileSync(join(installed, 'install-status.json'), 'utf8')) as { prebuilt: boolean; note: string };
    expect(status).toMatchObject({ prebuilt: true, note: `using the prebuilt binary of ${platformPackageName()}` });
  });
});
