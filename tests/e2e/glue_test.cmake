# End-to-end tests of examples/addrop-glue and addrop-ood (ctest label "e2e") on small
# files the test writes, and a short run on the real SST-2 (the committed sample, or
# the full set where ADDROP_DATA_DIR names it when ctest runs).
# Included from tests/CMakeLists.txt when the addrop-glue target exists.
get_filename_component(_addrop_tests_dir ${CMAKE_CURRENT_LIST_DIR} DIRECTORY)
add_executable(test_glue_e2e ${CMAKE_CURRENT_LIST_DIR}/test_glue_e2e.cpp)
target_link_libraries(test_glue_e2e PRIVATE addrop::addrop addrop_project_options Boost::unit_test_framework)
target_compile_definitions(test_glue_e2e PRIVATE BOOST_TEST_DYN_LINK
  ADDROP_SAMPLE_DATA_DIR="${ADDROP_SAMPLE_DATA_DIR}"
  ADDROP_GLUE_BINARY="$<TARGET_FILE:addrop-glue>"
  ADDROP_OOD_BINARY="$<TARGET_FILE:addrop-ood>"
  ADDROP_TRAIN_TINY_BINARY="$<TARGET_FILE:addrop-train-tiny>")
target_include_directories(test_glue_e2e PRIVATE ${_addrop_tests_dir})
add_dependencies(test_glue_e2e addrop-glue addrop-ood addrop-train-tiny)
add_test(NAME test_glue_e2e COMMAND test_glue_e2e --log_level=warning)
set_tests_properties(test_glue_e2e PROPERTIES LABELS e2e TIMEOUT 900)
