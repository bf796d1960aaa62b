# End-to-end tests of examples/addrop-translate (ctest label "e2e") on the committed WMT16
# en-ro sample. Included from tests/CMakeLists.txt when the addrop-translate target exists.
get_filename_component(_addrop_tests_dir ${CMAKE_CURRENT_LIST_DIR} DIRECTORY)
add_executable(test_translate_e2e ${CMAKE_CURRENT_LIST_DIR}/test_translate_e2e.cpp)
target_link_libraries(test_translate_e2e PRIVATE addrop::addrop addrop_project_options Boost::unit_test_framework)
target_compile_definitions(test_translate_e2e PRIVATE BOOST_TEST_DYN_LINK
  ADDROP_SAMPLE_DATA_DIR="${ADDROP_SAMPLE_DATA_DIR}" ADDROP_TRANSLATE_BINARY="$<TARGET_FILE:addrop-translate>")
target_include_directories(test_translate_e2e PRIVATE ${_addrop_tests_dir})
add_dependencies(test_translate_e2e addrop-translate)
add_test(NAME test_translate_e2e COMMAND test_translate_e2e --log_level=warning)
set_tests_properties(test_translate_e2e PROPERTIES LABELS e2e TIMEOUT 900)
