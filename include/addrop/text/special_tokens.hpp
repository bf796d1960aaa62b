#pragma once
/// @file special_tokens.hpp
/// Special-token strings inside the input text ("[CLS] a [SEP]", "<s> … <mask>"), found the
/// way Hugging Face's tokenizers finds them (AddedVocabulary): before normalization and
/// pre-tokenization, on the raw text (special tokens are added with normalized=false, so
/// bert-base-uncased matches "[CLS]" but not "[cls]"), leftmost-longest, without overlaps.
/// A token with lstrip (RoBERTa's <mask>) also takes the whitespace before it. The text
/// between matches is tokenized as usual; a match becomes its token.
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "addrop/text/unicode.hpp"

namespace addrop::text::detail {

/// One special token that the text may contain.
struct SpecialToken {
  std::string content;
  int32_t id = -1;
  bool lstrip = false;  ///< also takes the whitespace before it (RoBERTa's <mask>)
};

class SpecialTokenSplitter {
 public:
  SpecialTokenSplitter() = default;

  /// Tokens with an empty content or an id < 0 (not in the vocabulary) are left out; a
  /// content given twice keeps its first entry.
  explicit SpecialTokenSplitter(const std::vector<SpecialToken>& tokens) {
    for (const auto& t : tokens) {
      if (t.content.empty() || t.id < 0) continue;
      if (std::any_of(tokens_.begin(), tokens_.end(), [&](const SpecialToken& k) { return k.content == t.content; }))
        continue;
      tokens_.push_back(t);
    }
    // Longest first, so that the first token matching at a position is the longest one.
    std::stable_sort(tokens_.begin(), tokens_.end(),
                     [](const SpecialToken& a, const SpecialToken& b) { return a.content.size() > b.content.size(); });
    for (const auto& t : tokens_) first_byte_[static_cast<unsigned char>(t.content.front())] = true;
  }

  const std::vector<SpecialToken>& tokens() const { return tokens_; }

  /// Walks `text` in order: on_text(begin, end) for each non-empty stretch of ordinary text
  /// and on_special(token, begin, end) for each special token, where [begin, end) includes
  /// the whitespace an lstrip token took. With `split` (Hugging Face's
  /// split_special_tokens=True) the whole text is ordinary text.
  template <class OnText, class OnSpecial>
  void split(std::string_view text, bool split, OnText&& on_text, OnSpecial&& on_special) const {
    std::size_t done = 0;  // end of the previous match: lstrip never reaches before it
    if (!split && !tokens_.empty()) {
      for (std::size_t i = 0; i < text.size();) {
        const SpecialToken* hit = first_byte_[static_cast<unsigned char>(text[i])] ? match(text, i) : nullptr;
        if (!hit) {
          ++i;
          continue;
        }
        std::size_t begin = i;
        if (hit->lstrip) begin = whitespace_before(text, i, done);
        if (begin > done) on_text(done, begin);
        on_special(*hit, begin, i + hit->content.size());
        done = i = i + hit->content.size();
      }
    }
    if (done < text.size()) on_text(done, text.size());
  }

 private:
  const SpecialToken* match(std::string_view text, std::size_t i) const {
    for (const auto& t : tokens_)
      if (text.substr(i).starts_with(t.content)) return &t;
    return nullptr;
  }

  /// Where the run of whitespace characters (Rust's char::is_whitespace) that ends at
  /// `end` begins, no earlier than `floor`.
  static std::size_t whitespace_before(std::string_view text, std::size_t end, std::size_t floor) {
    std::size_t begin = end;
    while (begin > floor) {
      std::size_t c = begin - 1;
      while (c > floor && (static_cast<unsigned char>(text[c]) & 0xC0) == 0x80) --c;  // back to a lead byte
      const auto d = unicode::decode(text.substr(0, begin), c);
      if (c + static_cast<std::size_t>(d.len) != begin || !unicode::is_whitespace(d.cp)) break;
      begin = c;
    }
    return begin;
  }

  std::vector<SpecialToken> tokens_;
  std::array<bool, 256> first_byte_{};
};

}  // namespace addrop::text::detail
