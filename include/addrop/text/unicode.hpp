#pragma once
/// @file unicode.hpp
/// The few Unicode facts the tokenizers need, all answered by utf8proc (no hand-written
/// tables): decoding UTF-8, general categories, canonical decomposition (NFD) and simple
/// lower-casing, plus the character classes of Hugging Face's BERT normalizer and
/// pre-tokenizer. ASCII takes a fast path that never calls into utf8proc.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <utf8proc.h>

namespace addrop::text::unicode {

/// One decoded code point and the number of bytes it took (>= 1).
struct Decoded {
  char32_t cp;
  int len;
};

/// Decodes the code point at `s[i]`. An invalid or truncated sequence decodes as U+FFFD
/// of length 1, so a loop over a string always advances.
inline Decoded decode(std::string_view s, std::size_t i) noexcept {
  const auto b = static_cast<unsigned char>(s[i]);
  if (b < 0x80) return {b, 1};
  utf8proc_int32_t cp = 0;
  const auto n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(s.data() + i),
                                  static_cast<utf8proc_ssize_t>(s.size() - i), &cp);
  if (n <= 0) return {0xFFFD, 1};
  return {static_cast<char32_t>(cp), static_cast<int>(n)};
}

/// Appends the UTF-8 encoding of `cp` to `out`.
inline void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
    return;
  }
  utf8proc_uint8_t buf[4];
  const auto n = utf8proc_encode_char(static_cast<utf8proc_int32_t>(cp), buf);
  out.append(reinterpret_cast<const char*>(buf), static_cast<std::size_t>(n));
}

inline utf8proc_category_t category(char32_t cp) noexcept {
  return utf8proc_category(static_cast<utf8proc_int32_t>(cp));
}

/// Rust's `char::is_whitespace` (the White_Space property), as Hugging Face's BERT
/// normalizer and pre-tokenizer use it: tab, LF, VT, FF, CR, NEL and the Zs/Zl/Zp separators.
inline bool is_whitespace(char32_t cp) noexcept {
  if (cp < 0x80) return cp == ' ' || (cp >= 0x09 && cp <= 0x0D);
  if (cp == 0x85) return true;
  const auto c = category(cp);
  return c == UTF8PROC_CATEGORY_ZS || c == UTF8PROC_CATEGORY_ZL || c == UTF8PROC_CATEGORY_ZP;
}

/// Hugging Face's BERT `is_control`: any C* category (Cc, Cf, Cs, Co, Cn) except tab, LF, CR.
inline bool is_control(char32_t cp) noexcept {
  if (cp == '\t' || cp == '\n' || cp == '\r') return false;
  if (cp < 0x80) return cp < 0x20 || cp == 0x7F;
  const auto c = category(cp);
  return c == UTF8PROC_CATEGORY_CN || c >= UTF8PROC_CATEGORY_CC;
}

/// Hugging Face's BERT punctuation: ASCII 33-47, 58-64, 91-96, 123-126 and every P* category.
inline bool is_punctuation(char32_t cp) noexcept {
  if (cp < 0x80)
    return (cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) || (cp >= 123 && cp <= 126);
  const auto c = category(cp);
  return c >= UTF8PROC_CATEGORY_PC && c <= UTF8PROC_CATEGORY_PO;
}

/// BERT's "Chinese character" blocks (CJK Unified Ideographs and their extensions,
/// compatibility ideographs). These are the block bounds of the original BERT code.
inline bool is_cjk(char32_t cp) noexcept {
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF) ||
         (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

inline bool is_nonspacing_mark(char32_t cp) noexcept { return cp >= 0x300 && category(cp) == UTF8PROC_CATEGORY_MN; }

/// Canonical decomposition (NFD) of one code point into `out` (at most `cap` code points);
/// returns the count. Hangul syllables decompose too.
inline int nfd(char32_t cp, char32_t* out, int cap) noexcept {
  if (cp < 0xC0) {
    out[0] = cp;
    return 1;
  }
  utf8proc_int32_t buf[8];
  int last = 0;
  const auto n = utf8proc_decompose_char(static_cast<utf8proc_int32_t>(cp), buf, 8,
                                         static_cast<utf8proc_option_t>(UTF8PROC_DECOMPOSE), &last);
  if (n <= 0 || n > cap || n > 8) {
    out[0] = cp;
    return 1;
  }
  for (int i = 0; i < n; ++i) out[i] = static_cast<char32_t>(buf[i]);
  return static_cast<int>(n);
}

/// Lower-case mapping as Rust's `char::to_lowercase` (what Hugging Face applies per
/// character): utf8proc's simple mapping, plus the one unconditional multi-character
/// mapping of SpecialCasing.txt, U+0130 -> "i" U+0307. Returns the count (1 or 2).
inline int to_lower(char32_t cp, char32_t* out) noexcept {
  if (cp < 0x80) {
    out[0] = (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
    return 1;
  }
  if (cp == 0x130) {
    out[0] = 'i';
    out[1] = 0x307;
    return 2;
  }
  out[0] = static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(cp)));
  return 1;
}

/// True if `s` is valid UTF-8.
inline bool valid_utf8(std::string_view s) noexcept {
  for (std::size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
      ++i;
      continue;
    }
    utf8proc_int32_t cp = 0;
    const auto n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(s.data() + i),
                                    static_cast<utf8proc_ssize_t>(s.size() - i), &cp);
    if (n <= 0) return false;
    i += static_cast<std::size_t>(n);
  }
  return true;
}

/// Number of code points in valid UTF-8 (counts lead bytes).
inline std::size_t length(std::string_view s) noexcept {
  std::size_t n = 0;
  for (const char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

}  // namespace addrop::text::unicode
