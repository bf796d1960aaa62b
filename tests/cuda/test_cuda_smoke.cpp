// CUDA smoke test, host side. Exit codes: 0 all checks pass, 1 a check failed,
// ADDROP_CUDA_SKIP_CODE (77) no usable CUDA device -> ctest reports "skipped".
#include <cuda_runtime_api.h>

#include <cstdio>
#include <string>

#ifndef ADDROP_CUDA_SKIP_CODE
#define ADDROP_CUDA_SKIP_CODE 77
#endif

bool addrop_cuda_smoke_has_kernel_image(std::string& message);          // smoke_kernel.cu
bool addrop_cuda_smoke_saxpy(int n, std::string& message);               // smoke_kernel.cu
bool addrop_cuda_smoke_sgemm(int m, int n, int k, std::string& message);  // smoke_kernel.cu

int main() {
  int devices = 0;
  const cudaError_t e = cudaGetDeviceCount(&devices);
  if (e != cudaSuccess || devices == 0) {
    std::printf("skipped: no CUDA device (%s)\n",
                e != cudaSuccess ? cudaGetErrorString(e) : "cudaGetDeviceCount returned 0");
    return ADDROP_CUDA_SKIP_CODE;
  }
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess)
    std::printf("device 0: %s (sm_%d%d), %d device(s)\n", prop.name, prop.major, prop.minor, devices);

  std::string message;
  if (!addrop_cuda_smoke_has_kernel_image(message)) {
    std::printf("skipped: this build has no kernel image for device 0 (sm_%d%d); "
                "set CMAKE_CUDA_ARCHITECTURES to include it\n%s",
                prop.major, prop.minor, message.c_str());
    return ADDROP_CUDA_SKIP_CODE;
  }
  bool ok = addrop_cuda_smoke_saxpy(1000, message);
  ok = addrop_cuda_smoke_sgemm(37, 29, 53, message) && ok;
  std::fputs(message.c_str(), stdout);
  std::printf("%s\n", ok ? "cuda smoke: ok" : "cuda smoke: FAILED");
  return ok ? 0 : 1;
}
