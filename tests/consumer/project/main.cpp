// The consumer of tests/consumer: proves that the umbrella header, the library's
// usage requirements (C++20, Eigen, OpenMP, nlohmann-json and, with addrop::cuda,
// the CUDA runtime) reach a project that only links addrop::addrop / addrop::cuda.
#include <addrop/addrop.hpp>

#include <Eigen/Dense>
#include <nlohmann/json.hpp>
#include <omp.h>

#ifdef ADDROP_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

#include <cmath>
#include <cstdio>
#include <string>

int main() {
  std::printf("addrop %d.%d.%d via %s\n", addrop::version_major, addrop::version_minor,
              addrop::version_patch, ADDROP_CONSUMER_MODE);

  // One trivial computation through the dependencies addrop::addrop carries.
  Eigen::MatrixXf a(2, 2);
  a << 1.0f, 2.0f, 3.0f, 4.0f;
  const float trace = (a * a).trace();  // 7 + 22
  int threads = 0;
#pragma omp parallel
  {
#pragma omp single
    threads = omp_get_num_threads();
  }
  const nlohmann::json report = {{"trace", trace}, {"omp_threads", threads}};
  std::printf("%s\n", report.dump().c_str());
  if (std::fabs(trace - 29.0f) > 1e-6f || threads < 1) {
    std::printf("addrop consumer: FAILED\n");
    return 1;
  }

#ifdef ADDROP_WITH_ONEDNN
  // addrop::onednn: a bf16 product on oneDNN; 1 + 2^-10 rounds to 1 as a bf16 input.
  const std::string engine = addrop::backend::bf16_matmul_engine();
  const float x[2] = {1.0f + 1.0f / 1024, 3.0f}, y[2] = {1.0f, 1.0f};
  float product = 0;
  addrop::backend::Cpu::gemm(addrop::backend::Cpu::Context{.precision = addrop::Precision::Bf16Mixed}, false, false, 1,
                             1, 2, 1.0f, x, 2, y, 1, 0.0f, &product, 1);
  std::printf("bf16 products: %s; 1.0009765625 * 1 + 3 * 1 = %g\n", engine.c_str(), product);
  if (engine.find("oneDNN") == std::string::npos || product != 4.0f) {
    std::printf("addrop consumer: FAILED (bf16 through addrop::onednn)\n");
    return 1;
  }
#endif

#ifdef ADDROP_WITH_CUDA
  int runtime = 0;
  if (cudaRuntimeGetVersion(&runtime) != cudaSuccess) {
    std::printf("addrop consumer: FAILED (cudaRuntimeGetVersion)\n");
    return 1;
  }
  std::printf("CUDA runtime %d linked through addrop::cuda\n", runtime);
#endif
  std::printf("addrop consumer: ok\n");
  return 0;
}
