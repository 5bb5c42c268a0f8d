# node-gyp build of the @vl/accel addon. OpenBLAS is linked statically when its archive is found
# (scripts/openblas.mjs decides), so the binary needs no system BLAS at run time.
{
  "targets": [
    {
      "target_name": "vl_accel",
      "sources": ["src/native/addon.c", "src/native/kernels.c", "src/native/int8.c", "src/native/pool.c", "src/native/transpose.c", "src/native/attention_fused.c"],
      "include_dirs": ["<!@(node scripts/openblas.mjs include)"],
      "libraries": ["<!@(node scripts/openblas.mjs libs)"],
      "cflags": ["-O3", "-std=gnu11", "-fopenmp-simd", "-fno-math-errno", "-fno-trapping-math", "-fvisibility=hidden", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "ldflags": ["-Wl,--gc-sections", "-Wl,--exclude-libs,ALL", "-s"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
