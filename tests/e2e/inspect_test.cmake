# End-to-end test of examples/addrop-inspect (ctest label "e2e"): runs the built binary on
# the golden fixture models and compares its output with the PyTorch AD-DROP golden files.
# Included from tests/CMakeLists.txt when the addrop-inspect target exists.
get_filename_component(_addrop_tests_dir ${CMAKE_CURRENT_LIST_DIR} DIRECTORY)
if(NOT DEFINED ADDROP_FIXTURE_DIR)
  set(ADDROP_FIXTURE_DIR ${_addrop_tests_dir}/golden/fixtures)
endif()
add_executable(test_inspect_e2e ${CMAKE_CURRENT_LIST_DIR}/test_inspect_e2e.cpp)
target_link_libraries(test_inspect_e2e PRIVATE addrop::addrop addrop_project_options Boost::unit_test_framework)
target_compile_definitions(test_inspect_e2e PRIVATE BOOST_TEST_DYN_LINK
  ADDROP_FIXTURE_DIR="${ADDROP_FIXTURE_DIR}"
  ADDROP_INSPECT_BINARY="$<TARGET_FILE:addrop-inspect>")
target_include_directories(test_inspect_e2e PRIVATE ${_addrop_tests_dir})
add_dependencies(test_inspect_e2e addrop-inspect)
add_test(NAME test_inspect_e2e COMMAND test_inspect_e2e --log_level=warning)
set_tests_properties(test_inspect_e2e PROPERTIES LABELS e2e TIMEOUT 300)
