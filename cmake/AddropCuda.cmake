# CUDA detection: ADDROP_WITH_CUDA defaults to ON where a CUDA compiler and cuBLAS are found.
include(CheckLanguage)
check_language(CUDA)
find_package(CUDAToolkit QUIET)
set(_addrop_cuda_found OFF)
if(CMAKE_CUDA_COMPILER AND CUDAToolkit_FOUND AND TARGET CUDA::cublas)
  set(_addrop_cuda_found ON)
endif()
option(ADDROP_WITH_CUDA "Build the CUDA backend (needs nvcc and cuBLAS)" ${_addrop_cuda_found})

if(ADDROP_WITH_CUDA)
  if(NOT _addrop_cuda_found)
    message(FATAL_ERROR "ADDROP_WITH_CUDA is ON but no CUDA compiler or cuBLAS was found")
  endif()
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES 80 90)
  endif()
  enable_language(CUDA)
  set(CMAKE_CUDA_STANDARD 20)
  add_library(addrop_cuda INTERFACE)
  add_library(addrop::cuda ALIAS addrop_cuda)
  target_link_libraries(addrop_cuda INTERFACE addrop::addrop CUDA::cudart CUDA::cublas)
  target_compile_definitions(addrop_cuda INTERFACE ADDROP_WITH_CUDA=1 EIGEN_NO_CUDA)
  # The usage requirements of .cu files, and nothing else (warning choices stay with the
  # project's own targets, addrop_project_options): CMake 3.25 knows no C++20 feature
  # list for nvcc 13 and would silently fall back to C++17; OpenMP::OpenMP_CXX reaches
  # C++ sources only, so .cu files get the host compiler's -fopenmp by hand.
  target_compile_options(addrop_cuda INTERFACE
    $<$<COMPILE_LANGUAGE:CUDA>:-std=c++20>
    $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-fopenmp>)
  set_target_properties(addrop_cuda PROPERTIES EXPORT_NAME cuda)
  message(STATUS "addrop: CUDA backend ON (architectures: ${CMAKE_CUDA_ARCHITECTURES})")
else()
  message(STATUS "addrop: CUDA backend OFF")
endif()
