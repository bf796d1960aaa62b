# Install rules and the CMake package (addropConfig.cmake) for find_package(addrop).
#
# Installed layout (relative to CMAKE_INSTALL_PREFIX):
#   include/addrop/...                         the headers (the library is header-only)
#   lib/cmake/addrop/addropConfig.cmake        find_package(addrop CONFIG) entry point
#   lib/cmake/addrop/addropConfigVersion.cmake SameMajorVersion, architecture independent
#   lib/cmake/addrop/addropTargets.cmake       imported targets addrop::addrop, addrop::native
#   lib/cmake/addrop/addropCudaTargets.cmake   imported target addrop::cuda (ADDROP_WITH_CUDA only)
#   lib/cmake/addrop/addropTextTargets.cmake   imported target addrop::text (utf8proc + PCRE2 found only)
#   lib/cmake/addrop/addropSentencePieceTargets.cmake   addrop::sentencepiece (SentencePiece found only)
#   lib/cmake/addrop/addropOnednnTargets.cmake          addrop::onednn (oneDNN found only)
#
# The package directory is lib/cmake/addrop (not ${CMAKE_INSTALL_LIBDIR}, which can be
# lib64 or lib/<multiarch>): nothing in it depends on the architecture.
include(CMakePackageConfigHelpers)

option(ADDROP_INSTALL "Generate the install rules and the CMake package" ${PROJECT_IS_TOP_LEVEL})
if(NOT ADDROP_INSTALL)
  return()
endif()

set(ADDROP_INSTALL_CMAKEDIR "lib/cmake/addrop" CACHE STRING
  "Where addropConfig.cmake is installed, relative to CMAKE_INSTALL_PREFIX")
mark_as_advanced(ADDROP_INSTALL_CMAKEDIR)

# Headers: everything under include/addrop is part of the public interface.
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/addrop
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  COMPONENT addrop_development)

install(TARGETS addrop addrop_native EXPORT addropTargets)
install(EXPORT addropTargets
  NAMESPACE addrop::
  DESTINATION ${ADDROP_INSTALL_CMAKEDIR}
  COMPONENT addrop_development)

# The CUDA target goes to its own file so that the CPU part of an installed package
# stays usable on a machine without the CUDA Toolkit (see addropConfig.cmake.in).
set(ADDROP_EXPORTED_CUDA OFF)
if(ADDROP_WITH_CUDA AND TARGET addrop_cuda)
  set(ADDROP_EXPORTED_CUDA ON)
  install(TARGETS addrop_cuda EXPORT addropCudaTargets)
  install(EXPORT addropCudaTargets
    NAMESPACE addrop::
    DESTINATION ${ADDROP_INSTALL_CMAKEDIR}
    COMPONENT addrop_development)
endif()

# The tokenizers' target too: its own file, found again through pkg-config by the config.
set(ADDROP_EXPORTED_TEXT OFF)
if(TARGET addrop_text)
  set(ADDROP_EXPORTED_TEXT ON)
  install(TARGETS addrop_text EXPORT addropTextTargets)
  install(EXPORT addropTextTargets
    NAMESPACE addrop::
    DESTINATION ${ADDROP_INSTALL_CMAKEDIR}
    COMPONENT addrop_development)
endif()

# The Marian tokenizer's target (SentencePiece): likewise.
set(ADDROP_EXPORTED_SENTENCEPIECE OFF)
if(TARGET addrop_sentencepiece)
  set(ADDROP_EXPORTED_SENTENCEPIECE ON)
  install(TARGETS addrop_sentencepiece EXPORT addropSentencePieceTargets)
  install(EXPORT addropSentencePieceTargets
    NAMESPACE addrop::
    DESTINATION ${ADDROP_INSTALL_CMAKEDIR}
    COMPONENT addrop_development)
endif()

# The bf16 products' target (oneDNN): likewise.
set(ADDROP_EXPORTED_ONEDNN OFF)
if(TARGET addrop_onednn)
  set(ADDROP_EXPORTED_ONEDNN ON)
  install(TARGETS addrop_onednn EXPORT addropOnednnTargets)
  install(EXPORT addropOnednnTargets
    NAMESPACE addrop::
    DESTINATION ${ADDROP_INSTALL_CMAKEDIR}
    COMPONENT addrop_development)
endif()

# The data-parallel targets (MPI; NCCL with CUDA): likewise.
set(ADDROP_EXPORTED_MPI OFF)
if(TARGET addrop_mpi)
  set(ADDROP_EXPORTED_MPI ON)
  install(TARGETS addrop_mpi EXPORT addropMpiTargets)
  install(EXPORT addropMpiTargets
    NAMESPACE addrop::
    DESTINATION ${ADDROP_INSTALL_CMAKEDIR}
    COMPONENT addrop_development)
endif()

configure_package_config_file(
  ${CMAKE_CURRENT_LIST_DIR}/addropConfig.cmake.in
  ${PROJECT_BINARY_DIR}/addropConfig.cmake
  INSTALL_DESTINATION ${ADDROP_INSTALL_CMAKEDIR}
  NO_SET_AND_CHECK_MACRO)

write_basic_package_version_file(
  ${PROJECT_BINARY_DIR}/addropConfigVersion.cmake
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMajorVersion
  ARCH_INDEPENDENT)

install(FILES
  ${PROJECT_BINARY_DIR}/addropConfig.cmake
  ${PROJECT_BINARY_DIR}/addropConfigVersion.cmake
  DESTINATION ${ADDROP_INSTALL_CMAKEDIR}
  COMPONENT addrop_development)
