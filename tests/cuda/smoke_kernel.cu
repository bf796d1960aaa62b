// CUDA smoke test, device side: one hand-written kernel (saxpy) and one cuBLAS SGEMM on
// small, odd-sized matrices, both checked against a host computation. Proves that nvcc,
// the chosen CMAKE_CUDA_ARCHITECTURES, the CUDA runtime and cuBLAS work together.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

namespace {

__global__ void saxpy_kernel(int n, float a, const float* x, float* y) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = a * x[i] + y[i];
}

// Small deterministic inputs in [-1, 1) (no RNG dependency).
float value(int i, int salt) {
  const unsigned h = static_cast<unsigned>(i) * 2654435761u + static_cast<unsigned>(salt) * 40503u;
  return static_cast<float>(h % 2001u) / 1000.0f - 1.0f;
}

std::string cuda_error(const char* what, cudaError_t e) {
  return std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
}

std::string cublas_error(const char* what, cublasStatus_t s) {
  return std::string(what) + ": cuBLAS status " + std::to_string(static_cast<int>(s));
}

bool fail(std::string& message, const std::string& what) {
  message += what + "\n";
  return false;
}

// Owns device memory for the duration of one check.
struct DeviceBuffer {
  float* ptr = nullptr;
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    if (ptr) cudaFree(ptr);
  }
};

// Compares `got` with `want`, |got - want| <= atol + rtol |want|; reports the worst entry.
bool compare(const char* name, const std::vector<float>& got, const std::vector<double>& want,
             double atol, double rtol, std::string& message) {
  double max_err = 0.0;
  std::size_t worst = 0, bad = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - want[i]);
    if (err > atol + rtol * std::fabs(want[i])) ++bad;
    if (err > max_err) {
      max_err = err;
      worst = i;
    }
  }
  char line[256];
  std::snprintf(line, sizeof line, "%s: %zu elements, %zu mismatches, max abs error %.3g at %zu (got %.7g, want %.7g)\n",
                name, got.size(), bad, max_err, worst, static_cast<double>(got[worst]), want[worst]);
  message += line;
  return bad == 0;
}

}  // namespace

// False when the binary holds no kernel image the current device can run (its
// architecture is not covered by CMAKE_CUDA_ARCHITECTURES, even through PTX).
bool addrop_cuda_smoke_has_kernel_image(std::string& message) {
  cudaFuncAttributes attributes{};
  const cudaError_t e = cudaFuncGetAttributes(&attributes, saxpy_kernel);
  if (e == cudaSuccess) return true;
  cudaGetLastError();  // clear the sticky error state of the runtime
  return fail(message, cuda_error("cudaFuncGetAttributes(saxpy_kernel)", e));
}

// Runs saxpy (n elements) on the current device; false with a message on any failure.
bool addrop_cuda_smoke_saxpy(int n, std::string& message) {
  std::vector<float> x(n), y(n);
  std::vector<double> want(n);
  const float a = 1.75f;
  for (int i = 0; i < n; ++i) {
    x[i] = value(i, 1);
    y[i] = value(i, 2);
    want[i] = static_cast<double>(a) * x[i] + y[i];
  }
  DeviceBuffer dx, dy;
  const std::size_t bytes = sizeof(float) * static_cast<std::size_t>(n);
  cudaError_t e;
  if ((e = cudaMalloc(&dx.ptr, bytes)) != cudaSuccess) return fail(message, cuda_error("cudaMalloc x", e));
  if ((e = cudaMalloc(&dy.ptr, bytes)) != cudaSuccess) return fail(message, cuda_error("cudaMalloc y", e));
  if ((e = cudaMemcpy(dx.ptr, x.data(), bytes, cudaMemcpyHostToDevice)) != cudaSuccess)
    return fail(message, cuda_error("cudaMemcpy x", e));
  if ((e = cudaMemcpy(dy.ptr, y.data(), bytes, cudaMemcpyHostToDevice)) != cudaSuccess)
    return fail(message, cuda_error("cudaMemcpy y", e));
  const int block = 256;
  saxpy_kernel<<<(n + block - 1) / block, block>>>(n, a, dx.ptr, dy.ptr);
  if ((e = cudaGetLastError()) != cudaSuccess) return fail(message, cuda_error("saxpy launch", e));
  if ((e = cudaDeviceSynchronize()) != cudaSuccess) return fail(message, cuda_error("saxpy run", e));
  if ((e = cudaMemcpy(y.data(), dy.ptr, bytes, cudaMemcpyDeviceToHost)) != cudaSuccess)
    return fail(message, cuda_error("cudaMemcpy result", e));
  return compare("saxpy", y, want, 1e-6, 1e-6, message);
}

// C = alpha A B + beta C with cuBLAS (column-major, A: m x k, B: k x n, C: m x n).
bool addrop_cuda_smoke_sgemm(int m, int n, int k, std::string& message) {
  std::vector<float> A(static_cast<std::size_t>(m) * k), B(static_cast<std::size_t>(k) * n),
      C(static_cast<std::size_t>(m) * n);
  for (std::size_t i = 0; i < A.size(); ++i) A[i] = value(static_cast<int>(i), 3);
  for (std::size_t i = 0; i < B.size(); ++i) B[i] = value(static_cast<int>(i), 4);
  for (std::size_t i = 0; i < C.size(); ++i) C[i] = value(static_cast<int>(i), 5);
  const float alpha = 0.5f, beta = -2.0f;
  std::vector<double> want(C.size());
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) {
      double acc = 0.0;
      for (int p = 0; p < k; ++p)
        acc += static_cast<double>(A[i + static_cast<std::size_t>(p) * m]) * B[p + static_cast<std::size_t>(j) * k];
      want[i + static_cast<std::size_t>(j) * m] = alpha * acc + beta * static_cast<double>(C[i + static_cast<std::size_t>(j) * m]);
    }

  DeviceBuffer dA, dB, dC;
  cudaError_t e;
  if ((e = cudaMalloc(&dA.ptr, sizeof(float) * A.size())) != cudaSuccess) return fail(message, cuda_error("cudaMalloc A", e));
  if ((e = cudaMalloc(&dB.ptr, sizeof(float) * B.size())) != cudaSuccess) return fail(message, cuda_error("cudaMalloc B", e));
  if ((e = cudaMalloc(&dC.ptr, sizeof(float) * C.size())) != cudaSuccess) return fail(message, cuda_error("cudaMalloc C", e));
  if ((e = cudaMemcpy(dA.ptr, A.data(), sizeof(float) * A.size(), cudaMemcpyHostToDevice)) != cudaSuccess)
    return fail(message, cuda_error("cudaMemcpy A", e));
  if ((e = cudaMemcpy(dB.ptr, B.data(), sizeof(float) * B.size(), cudaMemcpyHostToDevice)) != cudaSuccess)
    return fail(message, cuda_error("cudaMemcpy B", e));
  if ((e = cudaMemcpy(dC.ptr, C.data(), sizeof(float) * C.size(), cudaMemcpyHostToDevice)) != cudaSuccess)
    return fail(message, cuda_error("cudaMemcpy C", e));

  cublasHandle_t handle = nullptr;
  cublasStatus_t s = cublasCreate(&handle);
  if (s != CUBLAS_STATUS_SUCCESS) return fail(message, cublas_error("cublasCreate", s));
  // Plain FP32 math so the tolerance below holds on every architecture (no TF32).
  cublasSetMathMode(handle, CUBLAS_PEDANTIC_MATH);
  s = cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &alpha, dA.ptr, m, dB.ptr, k, &beta, dC.ptr, m);
  cublasDestroy(handle);
  if (s != CUBLAS_STATUS_SUCCESS) return fail(message, cublas_error("cublasSgemm", s));
  if ((e = cudaDeviceSynchronize()) != cudaSuccess) return fail(message, cuda_error("sgemm run", e));
  if ((e = cudaMemcpy(C.data(), dC.ptr, sizeof(float) * C.size(), cudaMemcpyDeviceToHost)) != cudaSuccess)
    return fail(message, cuda_error("cudaMemcpy result", e));
  return compare("sgemm", C, want, 1e-4, 1e-4, message);
}
