# addrop::onednn: the CPU backend's bf16 matrix products (Precision::Bf16Mixed) through
# oneDNN's matmul primitive, which uses AVX512-BF16 (vdpbf16ps) where the CPU has it
# (Debian libdnnl-dev; docs/dependencies.md says why oneDNN). Optional: without it the
# target is not defined and bf16 runs are emulated (bf16-rounded inputs, float32 Eigen
# GEMM: the same products at float32 speed). It defines ADDROP_WITH_ONEDNN, which changes
# inline functions of the CPU backend: a program links it on all its targets or none.
set(ADDROP_HAVE_ONEDNN OFF)
# Debian's dnnl-config.cmake calls find_package(OpenCL REQUIRED) (its GPU runtime is OpenCL),
# a hard configure error when ocl-icd-opencl-dev (only a Recommends of libdnnl-dev) is
# missing; look for OpenCL first so that such a machine builds without oneDNN instead.
find_package(OpenCL QUIET)
if(OpenCL_FOUND)
  find_package(dnnl CONFIG QUIET)
elseif(EXISTS /usr/lib/x86_64-linux-gnu/cmake/dnnl/dnnl-config.cmake OR EXISTS /usr/lib/cmake/dnnl/dnnl-config.cmake)
  message(STATUS "addrop: oneDNN is installed but OpenCL is not (Debian: ocl-icd-opencl-dev), and oneDNN's CMake package requires it")
endif()
if(TARGET DNNL::dnnl)
  add_library(addrop_onednn INTERFACE)
  add_library(addrop::onednn ALIAS addrop_onednn)
  set_target_properties(addrop_onednn PROPERTIES EXPORT_NAME onednn)
  target_link_libraries(addrop_onednn INTERFACE addrop::addrop DNNL::dnnl)
  target_compile_definitions(addrop_onednn INTERFACE ADDROP_WITH_ONEDNN=1)
  set(ADDROP_HAVE_ONEDNN ON)
  message(STATUS "addrop: onednn (bf16 matrix products) with oneDNN ${dnnl_VERSION}")
else()
  message(STATUS "addrop: oneDNN not found (libdnnl-dev): addrop::onednn is not defined and bf16 products are emulated in float32")
endif()
