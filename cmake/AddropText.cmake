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

# addrop::sentencepiece: the Marian tokenizer of OPUS-MT (include/addrop/text/marian_tokenizer.hpp),
# which cuts text with the SentencePiece library and trains new SentencePiece models
# (libsentencepiece and libsentencepiece_train, Debian libsentencepiece-dev). Optional like
# addrop::text: no other header includes SentencePiece's, and without the library the target
# is not defined, ADDROP_HAVE_SENTENCEPIECE is OFF and the Marian tokenizer tests are skipped.
set(ADDROP_HAVE_SENTENCEPIECE OFF)
if(PkgConfig_FOUND)
  pkg_check_modules(ADDROP_SENTENCEPIECE QUIET IMPORTED_TARGET sentencepiece)
endif()
if(TARGET PkgConfig::ADDROP_SENTENCEPIECE)
  add_library(addrop_sentencepiece INTERFACE)
  add_library(addrop::sentencepiece ALIAS addrop_sentencepiece)
  set_target_properties(addrop_sentencepiece PROPERTIES EXPORT_NAME sentencepiece)
  if(TARGET addrop::text)
    target_link_libraries(addrop_sentencepiece INTERFACE addrop::text)
  else()
    target_link_libraries(addrop_sentencepiece INTERFACE addrop::addrop)
  endif()
  target_link_libraries(addrop_sentencepiece INTERFACE PkgConfig::ADDROP_SENTENCEPIECE)
  set(ADDROP_HAVE_SENTENCEPIECE ON)
  message(STATUS "addrop: sentencepiece (Marian tokenizer) with SentencePiece ${ADDROP_SENTENCEPIECE_VERSION}")
else()
  message(STATUS "addrop: sentencepiece not found (pkg-config): addrop::sentencepiece and the Marian tokenizer tests are skipped")
endif()
