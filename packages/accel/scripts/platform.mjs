// The name of the package holding this platform's prebuilt binary, the way sharp and napi-rs name theirs:
// @vl/accel-<platform>-<arch>[-gnu|-musl]. src/binding.ts has the same function for the runtime (a test
// checks that the two agree); only the packages in PREBUILT_PLATFORMS are published.
export const PREBUILT_PLATFORMS = ['linux-x64-gnu'];

/** glibc or musl on Linux (Node's report names the glibc it runs on); null elsewhere. */
export function detectLibc() {
  if (process.platform !== 'linux') return null;
  const header = process.report?.getReport?.().header;
  return header?.glibcVersionRuntime ? 'gnu' : 'musl';
}

/** `linux-x64-gnu`, `darwin-arm64`, `win32-x64`: the platform part of the package name. */
export function platformTriple(platform = process.platform, arch = process.arch, libc = detectLibc()) {
  return platform === 'linux' ? `${platform}-${arch}-${libc ?? 'gnu'}` : `${platform}-${arch}`;
}

export function platformPackageName(platform, arch, libc) {
  return `@vl/accel-${platformTriple(platform, arch, libc)}`;
}
