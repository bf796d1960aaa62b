# addrop::text: the tokenizers of include/addrop/text/ (header-only like the rest), which
# need utf8proc (Unicode categories, NFD, case mapping) and PCRE2 (the GPT-2 pattern).
# Kept apart from addrop::addrop so that the core stays free of these two libraries.
# Without them the target is not defined and ADDROP_HAVE_TEXT is OFF.
find_package(PkgConfig QUIET)
set(ADDROP_HAVE_TEXT OFF)
if(PkgConfig_FOUND)
  pkg_check_modules(ADDROP_UTF8PROC QUIET IMPORTED_TARGET libutf8proc)
  pkg_check_modules(ADDROP_PCRE2 QUIET IMPORTED_TARGET libpcre2-8)
endif()
if(TARGET PkgConfig::ADDROP_UTF8PROC AND TARGET PkgConfig::ADDROP_PCRE2)
  add_library(addrop_text INTERFACE)
  add_library(addrop::text ALIAS addrop_text)
  set_target_properties(addrop_text PROPERTIES EXPORT_NAME text)
  target_link_libraries(addrop_text INTERFACE addrop::addrop PkgConfig::ADDROP_UTF8PROC PkgConfig::ADDROP_PCRE2)
  set(ADDROP_HAVE_TEXT ON)
  message(STATUS "addrop: text (tokenizers) with utf8proc ${ADDROP_UTF8PROC_VERSION}, PCRE2 ${ADDROP_PCRE2_VERSION}")
else()
  message(STATUS "addrop: utf8proc or libpcre2-8 not found (pkg-config): addrop::text and the tokenizer tests are skipped")
endif()
