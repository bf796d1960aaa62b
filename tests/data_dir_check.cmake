# ctest test_data_dir_at_run_time: ADDROP_DATA_DIR must reach the tests when ctest runs,
# whatever the environment was when the build folder was configured. Two checks:
#  1. no registered test carries ADDROP_DATA_DIR in its ENVIRONMENT property (a value
#     copied there at configure time would hide the one given later);
#  2. test_glue_data, run with ADDROP_DATA_DIR naming a folder that does not exist,
#     fails and names that folder (so it read the variable, not the committed sample).
# Arguments: -DBUILD_DIR=<build folder> -DGLUE_DATA_TEST=<path of test_glue_data>.
execute_process(COMMAND ${CMAKE_CTEST_COMMAND} --test-dir ${BUILD_DIR} --show-only=json-v1
                OUTPUT_VARIABLE listing RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "ctest --show-only failed (${rc})")
endif()
string(JSON count LENGTH "${listing}" tests)
math(EXPR last "${count} - 1")
foreach(i RANGE ${last})
  string(JSON name GET "${listing}" tests ${i} name)
  string(JSON nprops ERROR_VARIABLE err LENGTH "${listing}" tests ${i} properties)
  if(err OR nprops EQUAL 0)
    continue()
  endif()
  math(EXPR plast "${nprops} - 1")
  foreach(j RANGE ${plast})
    string(JSON pname GET "${listing}" tests ${i} properties ${j} name)
    if(pname STREQUAL "ENVIRONMENT")
      string(JSON pvalue GET "${listing}" tests ${i} properties ${j} value)
      if(pvalue MATCHES "ADDROP_DATA_DIR")
        message(FATAL_ERROR "${name}: its ENVIRONMENT property fixes ${pvalue} at configure time")
      endif()
    endif()
  endforeach()
endforeach()
message(STATUS "${count} tests registered, none with ADDROP_DATA_DIR in its ENVIRONMENT")

set(bogus "${BUILD_DIR}/no-such-data-dir-for-test_data_dir_at_run_time")
set(ENV{ADDROP_DATA_DIR} "${bogus}")
execute_process(COMMAND ${GLUE_DATA_TEST} --run_test=real_glue_counts --log_level=error
                OUTPUT_VARIABLE out ERROR_VARIABLE out RESULT_VARIABLE rc)
if(rc EQUAL 0)
  message(FATAL_ERROR "test_glue_data passed with ADDROP_DATA_DIR=${bogus}: it did not read the variable\n${out}")
endif()
string(FIND "${out}" "no-such-data-dir-for-test_data_dir_at_run_time" at)
if(at EQUAL -1)
  message(FATAL_ERROR "test_glue_data failed without naming ADDROP_DATA_DIR's folder:\n${out}")
endif()
message(STATUS "test_glue_data read ADDROP_DATA_DIR=${bogus} at run time (and failed naming it, as it should)")
