// Function multi-versioning for the CPU kernels' hot loops: x86-64 GCC builds
// compile a clone per listed ISA and the loader picks the best one the CPU
// has (target_clones). Elsewhere the attributes are empty (one portable build).
//   DMMD_CPU_CLONES      AVX-512 (x86-64-v4), AVX2/FMA (x86-64-v3), baseline
//   DMMD_CPU_CLONES_AVX2 AVX2/FMA, baseline (loops that gain nothing from v4)
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define DMMD_CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define DMMD_CPU_CLONES_AVX2 __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define DMMD_CPU_CLONES
#define DMMD_CPU_CLONES_AVX2
#endif
