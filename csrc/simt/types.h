// types.h: the CUDA runtime's vector and launch types, with CUDA's alignments
// (a float4 or uint4 load through a reinterpret_cast must see the same layout).
#pragma once

struct uint3 {
  unsigned int x, y, z;
};

struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1)
      : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
  constexpr operator uint3() const { return uint3{x, y, z}; }
};

#define SIMT_VECTOR2(name, T, align)                               \
  struct alignas(align) name {                                     \
    T x, y;                                                        \
  };                                                               \
  inline constexpr name make_##name(T x, T y) { return name{x, y}; }
#define SIMT_VECTOR3(name, T)                                          \
  struct name {                                                        \
    T x, y, z;                                                         \
  };                                                                   \
  inline constexpr name make_##name(T x, T y, T z) { return name{x, y, z}; }
#define SIMT_VECTOR4(name, T, align)                                              \
  struct alignas(align) name {                                                    \
    T x, y, z, w;                                                                 \
  };                                                                              \
  inline constexpr name make_##name(T x, T y, T z, T w) { return name{x, y, z, w}; }

SIMT_VECTOR2(int2, int, 8)
SIMT_VECTOR2(uint2, unsigned int, 8)
SIMT_VECTOR2(float2, float, 8)
SIMT_VECTOR2(double2, double, 16)
SIMT_VECTOR2(longlong2, long long, 16)
SIMT_VECTOR2(ulonglong2, unsigned long long, 16)
SIMT_VECTOR3(int3, int)
SIMT_VECTOR3(float3, float)
SIMT_VECTOR4(int4, int, 16)
SIMT_VECTOR4(uint4, unsigned int, 16)
SIMT_VECTOR4(float4, float, 16)
SIMT_VECTOR4(uchar4, unsigned char, 4)
SIMT_VECTOR4(char4, signed char, 4)
inline constexpr uint3 make_uint3(unsigned int x, unsigned int y, unsigned int z) {
  return uint3{x, y, z};
}

#undef SIMT_VECTOR2
#undef SIMT_VECTOR3
#undef SIMT_VECTOR4

// Streams are accepted and ignored: kernels run synchronously in the launch.
struct CUstream_st;
using cudaStream_t = CUstream_st*;

enum cudaError : int { cudaSuccess = 0 };
using cudaError_t = cudaError;
