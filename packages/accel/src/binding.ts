// Finds and loads the native addon: a local build (build/Release, matched to this machine) first,
// then the prebuilt binary of this platform's package (@vl/accel-linux-x64-gnu, an optional
// dependency, as sharp ships libvips). A missing or broken binary
// is reported as "unavailable" with the reason, never thrown: the accelerator is optional.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** What the C side exports (src/native/addon.c). Every kernel takes the wasm heap and a params array. */
export interface NativeBinding {
  gemm(heap: ArrayBuffer, params: Float64Array): void;
  layerNormFwd(heap: ArrayBuffer, params: Float64Array): void;
  layerNormBwd(heap: ArrayBuffer, params: Float64Array): void;
  softmaxFwd(heap: ArrayBuffer, params: Float64Array): void;
  attention(heap: ArrayBuffer, params: Float64Array): void;
  int8Pack(heap: ArrayBuffer, params: Float64Array): void;
  int8Linear(heap: ArrayBuffer, params: Float64Array): void;
  softmaxBwd(heap: ArrayBuffer, params: Float64Array): void;
  biasAdd(heap: ArrayBuffer, params: Float64Array): void;
  colSum(heap: ArrayBuffer, params: Float64Array): void;
  geluFwd(heap: ArrayBuffer, params: Float64Array): void;
  geluBwd(heap: ArrayBuffer, params: Float64Array): void;
  transpose(heap: ArrayBuffer, params: Float64Array): void;
  setThreads(threads: number): number;
  info(): NativeInfo;
}

/** The params layout this JS expects (VL_ACCEL_ABI in src/native/addon.c). */
export const ACCEL_ABI = 4;

export interface NativeInfo {
  /** The binary's params layout version; must equal ACCEL_ABI. */
  abi: number;
  /** Threads that run kernels, the caller included. */
  threads: number;
  /** Instruction set the element-wise kernels were picked for. */
  simd: string;
  /** OpenBLAS build configuration, e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH ... Haswell". */
  blas: string;
  /** The OpenBLAS kernel family in use (OPENBLAS_CORETYPE picks it). */
  blasCore: string;
  /** The int8 linear kernel picked for this CPU: "amx-int8", "avx512-vnni" or "portable C". */
  int8: string;
}

export type AccelStatus =
  { available: true; note: string; path: string; binding: NativeBinding; info: NativeInfo } | { available: false; note: string };

const BINARY = 'vl_accel.node';

/** The package root: dist/ (built) and src/ (tests) both sit one level below it. */
function packageRoot(): string {
  return join(dirname(fileURLToPath(import.meta.url)), '..');
}

/** The reason the install step gave for not building, if it recorded one. */
function installNote(root: string): string | null {
  try {
    const status = JSON.parse(readFileSync(join(root, 'install-status.json'), 'utf8')) as { note?: unknown };
    return typeof status.note === 'string' ? status.note : null;
  } catch {
    return null;
  }
}

function threadCount(): number {
  const fromEnv = Number(process.env.VL_ACCEL_THREADS);
  if (Number.isInteger(fromEnv) && fromEnv >= 1) return fromEnv;
  return Math.max(1, availableParallelism());
}

let cached: AccelStatus | null = null;

/** glibc or musl on Linux (Node's report names the glibc it runs on); null elsewhere. */
export function detectLibc(): 'gnu' | 'musl' | null {
  if (process.platform !== 'linux') return null;
  const report = process.report?.getReport?.() as { header?: { glibcVersionRuntime?: string } } | undefined;
  return report?.header?.glibcVersionRuntime ? 'gnu' : 'musl';
}

/**
 * The package holding a platform's prebuilt binary: @vl/accel-<platform>-<arch>[-gnu|-musl], as sharp and
 * napi-rs name theirs (scripts/platform.mjs has the same function for the install step; a test keeps them equal).
 */
export function platformPackageName(
  platform: string = process.platform,
  arch: string = process.arch,
  libc: 'gnu' | 'musl' | null = detectLibc(),
): string {
  return `@vl/accel-${platform === 'linux' ? `${platform}-${arch}-${libc ?? 'gnu'}` : `${platform}-${arch}`}`;
}

/** Where the addon may be, in order: `VL_ACCEL_BINARY` alone when set; else build/Release, then the platform package's binary. */
export function binaryCandidates(
  root: string,
  explicit: string | undefined,
  resolvePackage: (specifier: string) => string | null,
): string[] {
  if (explicit) return [explicit];
  const prebuilt = resolvePackage(`${platformPackageName()}/${BINARY}`);
  return [join(root, 'build', 'Release', BINARY), ...(prebuilt ? [prebuilt] : [])];
}

function resolveFrom(require: NodeJS.Require): (specifier: string) => string | null {
  return (specifier) => {
    try {
      return require.resolve(specifier);
    } catch {
      return null;
    }
  };
}

/**
 * Loads the addon once per process. `VL_ACCEL_BINARY` names an explicit binary (tests, custom
 * builds); otherwise build/Release, then the platform package (binaryCandidates).
 */
export function loadAccel(): AccelStatus {
  if (cached) return cached;
  const root = packageRoot();
  const require = createRequire(import.meta.url);
  const candidates = binaryCandidates(root, process.env.VL_ACCEL_BINARY, resolveFrom(require));
  const failures: string[] = [];
  for (const path of candidates) {
    if (!existsSync(path)) continue;
    // The statically linked OpenBLAS picks its kernel family when the binary loads, from
    // OPENBLAS_CORETYPE; VL_ACCEL_BLAS_CORE sets it for this library only (e.g. SkylakeX for the
    // AVX-512 kernels where a system-wide OPENBLAS_CORETYPE=Haswell pins other programs).
    const blasCore = process.env.VL_ACCEL_BLAS_CORE;
    const systemCore = process.env.OPENBLAS_CORETYPE;
    if (blasCore) process.env.OPENBLAS_CORETYPE = blasCore;
    try {
      const binding = require(path) as NativeBinding;
      if (typeof binding.gemm !== 'function' || typeof binding.info !== 'function') {
        failures.push(`${path} is not a @vl/accel binary`);
        continue;
      }
      const abi = binding.info().abi;
      if (abi !== ACCEL_ABI) {
        failures.push(
          `${path} is built for kernel interface ${String(abi)}, this package needs ${ACCEL_ABI} (rebuild: npm run native:build -w @vl/accel)`,
        );
        continue;
      }
      binding.setThreads(threadCount());
      const info = binding.info();
      cached = {
        available: true,
        path,
        binding,
        info,
        note: `native kernels loaded (${info.threads} threads, ${info.simd}, OpenBLAS ${info.blasCore})`,
      };
      return cached;
    } catch (err) {
      failures.push(`${path} failed to load: ${((err as Error).message ?? String(err)).split('\n')[0]}`);
    } finally {
      if (blasCore) {
        if (systemCore === undefined) delete process.env.OPENBLAS_CORETYPE;
        else process.env.OPENBLAS_CORETYPE = systemCore;
      }
    }
  }
  if (failures.length > 0) {
    cached = { available: false, note: failures.join('; ') };
  } else {
    const why = installNote(root);
    cached = {
      available: false,
      note:
        `no native binary for ${process.platform}-${process.arch} (no ${platformPackageName()} installed, no source build)` +
        `${why ? ` (install: ${why})` : ''}; build it with \`npm rebuild @vl/accel\` (in the vl repository: ` +
        `\`npm run native:build -w @vl/accel\`) after \`apt-get install -y build-essential python3 libopenblas-dev\``,
    };
  }
  return cached;
}

/** Forgets the cached load result, so a test can load again under other environment variables. */
export function resetAccelForTests(): void {
  cached = null;
}
