# Packaging tests: a tiny outside project consumes addrop
#   consumer_find_package      - `cmake --install` this build into a prefix under the
#                                build tree, then find_package(addrop CONFIG REQUIRED)
#   consumer_add_subdirectory  - add_subdirectory(<repo root>) with tests/examples/bench OFF
# Each test configures, builds and runs tests/consumer/project in its own folder.
#
# This file has two roles. Included from tests/CMakeLists.txt it registers the tests;
# run as `cmake -P consumer_test.cmake -DMODE=...` (which is what the tests do) it
# performs the steps.

if(NOT CMAKE_SCRIPT_MODE_FILE)
  # ---- registration (configure time) -----------------------------------------------
  find_program(ADDROP_CONSUMER_NINJA NAMES ninja ninja-build)
  mark_as_advanced(ADDROP_CONSUMER_NINJA)
  if(ADDROP_CONSUMER_NINJA)
    set(_gen "Ninja")
  else()
    set(_gen "${CMAKE_GENERATOR}")
  endif()
  if(CMAKE_BUILD_TYPE)
    set(_type "${CMAKE_BUILD_TYPE}")
  else()
    set(_type "Release")
  endif()
  set(_cuda OFF)
  if(ADDROP_WITH_CUDA)
    set(_cuda ON)
  endif()

  foreach(mode find_package add_subdirectory)
    add_test(NAME consumer_${mode}
      COMMAND ${CMAKE_COMMAND}
        -DMODE=${mode}
        -DADDROP_SOURCE_DIR=${PROJECT_SOURCE_DIR}
        -DADDROP_BINARY_DIR=${PROJECT_BINARY_DIR}
        -DADDROP_VERSION=${PROJECT_VERSION}
        -DADDROP_WITH_CUDA=${_cuda}
        -DCONSUMER_SOURCE_DIR=${CMAKE_CURRENT_LIST_DIR}/project
        -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/consumer/${mode}
        "-DGENERATOR=${_gen}"
        -DMAKE_PROGRAM=${ADDROP_CONSUMER_NINJA}
        -DCXX_COMPILER=${CMAKE_CXX_COMPILER}
        -DCUDA_COMPILER=${CMAKE_CUDA_COMPILER}
        -DBUILD_TYPE=${_type}
        -P ${CMAKE_CURRENT_LIST_FILE})
    set_tests_properties(consumer_${mode} PROPERTIES
      LABELS unit
      TIMEOUT 600)
  endforeach()
  unset(_gen)
  unset(_type)
  unset(_cuda)
  return()
endif()

# ---- driver (cmake -P) --------------------------------------------------------------
cmake_minimum_required(VERSION 3.25)

foreach(var MODE ADDROP_SOURCE_DIR ADDROP_BINARY_DIR ADDROP_VERSION CONSUMER_SOURCE_DIR WORK_DIR GENERATOR BUILD_TYPE)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "consumer_test.cmake: -D${var}=... is required")
  endif()
endforeach()

function(run_step what)
  message(STATUS "[consumer ${MODE}] ${what}: ${ARGN}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "[consumer ${MODE}] ${what} failed (${rc})")
  endif()
endfunction()

file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})

set(configure_args
  -S ${CONSUMER_SOURCE_DIR}
  -B ${WORK_DIR}/build
  -G ${GENERATOR}
  -DCMAKE_BUILD_TYPE=${BUILD_TYPE}
  -DADDROP_CONSUMER_MODE=${MODE}
  -DADDROP_EXPECT_VERSION=${ADDROP_VERSION}
  -DADDROP_EXPECT_CUDA=${ADDROP_WITH_CUDA})
if(MAKE_PROGRAM)
  list(APPEND configure_args -DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM})
endif()
if(CXX_COMPILER)
  list(APPEND configure_args -DCMAKE_CXX_COMPILER=${CXX_COMPILER})
endif()

if(MODE STREQUAL "find_package")
  set(prefix ${WORK_DIR}/prefix)
  run_step("install" ${CMAKE_COMMAND} --install ${ADDROP_BINARY_DIR} --prefix ${prefix} --config ${BUILD_TYPE})
  foreach(f include/addrop lib/cmake/addrop/addropConfig.cmake lib/cmake/addrop/addropConfigVersion.cmake
            lib/cmake/addrop/addropTargets.cmake)
    if(NOT EXISTS ${prefix}/${f})
      message(FATAL_ERROR "[consumer ${MODE}] install did not produce ${prefix}/${f}")
    endif()
  endforeach()
  # Only the installed prefix may satisfy find_package(addrop): no package registry.
  list(APPEND configure_args
    -DCMAKE_PREFIX_PATH=${prefix}
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
elseif(MODE STREQUAL "add_subdirectory")
  list(APPEND configure_args
    -DADDROP_ROOT=${ADDROP_SOURCE_DIR}
    -DADDROP_WITH_CUDA=${ADDROP_WITH_CUDA})
  if(ADDROP_WITH_CUDA)
    if(CUDA_COMPILER)
      list(APPEND configure_args -DCMAKE_CUDA_COMPILER=${CUDA_COMPILER})
    endif()
  endif()
else()
  message(FATAL_ERROR "consumer_test.cmake: unknown MODE '${MODE}'")
endif()

run_step("configure" ${CMAKE_COMMAND} ${configure_args})
run_step("build" ${CMAKE_COMMAND} --build ${WORK_DIR}/build --config ${BUILD_TYPE})

# the second links addrop::native; the third, built only with oneDNN, addrop::onednn; the
# fourth, built only with MPI, addrop::mpi (run alone: one process, no MPI started)
foreach(program addrop_consumer addrop_consumer_native addrop_consumer_bf16 addrop_consumer_mpi)
  set(exe ${WORK_DIR}/build/${program})
  if(NOT EXISTS ${exe})
    set(exe ${WORK_DIR}/build/${BUILD_TYPE}/${program})  # multi-config generators
  endif()
  if(program STREQUAL "addrop_consumer_bf16" AND NOT EXISTS ${exe})
    message("addrop consumer: no addrop::onednn here (oneDNN not found): the bf16 consumer is not built")
    continue()
  endif()
  if(program STREQUAL "addrop_consumer_mpi" AND NOT EXISTS ${exe})
    message("addrop consumer: no addrop::mpi here (MPI not found): the MPI consumer is not built")
    continue()
  endif()
  run_step("run ${program}" ${exe})
endforeach()
message("addrop consumer: ok (${MODE})")
