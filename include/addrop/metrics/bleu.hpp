#pragma once
// Corpus BLEU exactly as sacreBLEU 2.x computes it by default:
// the 13a tokenizer (mteval-v13a), word n-grams up to 4 clipped by the most any one
// reference holds, the closest reference length (the shorter on a tie), the brevity
// penalty, the geometric mean of the precisions with the `exp` smoothing (the k-th order
// without a match counts 1 / (2^k · total)), and a score of 0 when no n-gram matches at all.
//
//   auto s = metrics::corpus_bleu(hypotheses, {references});  // one vector per reference stream
//   s.str();  // "BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17 ref_len = 18)"
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "unicode_text.hpp"

namespace addrop::metrics {

/// The 13a tokenizer of sacreBLEU (and mteval-v13a): drops "<skipped>", joins "-\n",
/// unescapes &quot; &amp; &lt; &gt; (once, in that order), puts spaces around ASCII
/// punctuation and symbols, around '.' and ',' except between digits, after a dash that
/// follows a digit, and splits on Unicode whitespace (Python's). Returns the tokens.
inline std::vector<std::string> tokenize_13a(std::string_view line) {
  using unicode_text::is_python_space;
  std::string text(line);
  auto replace_all = [&](std::string_view from, std::string_view to) {
    std::string out;
    for (std::size_t i = 0; i < text.size();) {
      if (text.compare(i, from.size(), from) == 0) {
        out += to;
        i += from.size();
      } else {
        out += text[i++];
      }
    }
    text = std::move(out);
  };
  replace_all("<skipped>", "");
  replace_all("-\n", "");
  replace_all("\n", " ");
  if (text.find('&') != std::string::npos) {
    replace_all("&quot;", "\"");
    replace_all("&amp;", "&");
    replace_all("&lt;", "<");
    replace_all("&gt;", ">");
  }
  const std::u32string in = U" " + unicode_text::decode_utf8(text, "BLEU segment") + U" ";
  auto digit = [](char32_t c) { return c >= U'0' && c <= U'9'; };
  auto period_or_comma = [](char32_t c) { return c == U'.' || c == U','; };
  // Each pass is one of the tokenizer's regular expressions, applied left to right over
  // non-overlapping matches as Python's re.sub does.
  std::u32string a;
  for (char32_t c : in) {  // ([\{-\~\[-\` -\&\(-\+\:-\@\/]) -> " \1 "
    const bool symbol = (c >= 0x7B && c <= 0x7E) || (c >= 0x5B && c <= 0x60) || (c >= 0x20 && c <= 0x26) ||
                        (c >= 0x28 && c <= 0x2B) || (c >= 0x3A && c <= 0x40) || c == U'/';
    if (symbol) a += U' ', a += c, a += U' ';
    else a += c;
  }
  auto pairs = [](const std::u32string& s, auto first, auto second, auto write) {
    std::u32string out;
    std::size_t i = 0;
    for (; i + 1 < s.size(); ++i) {
      if (first(s[i]) && second(s[i + 1])) {
        write(out, s[i], s[i + 1]);
        ++i;
      } else {
        out += s[i];
      }
    }
    if (i < s.size()) out += s[i];
    return out;
  };
  // ([^0-9])([\.,]) -> "\1 \2 "
  a = pairs(a, [&](char32_t c) { return !digit(c); }, period_or_comma,
            [](std::u32string& o, char32_t x, char32_t y) { o += x, o += U' ', o += y, o += U' '; });
  // ([\.,])([^0-9]) -> " \1 \2"
  a = pairs(a, period_or_comma, [&](char32_t c) { return !digit(c); },
            [](std::u32string& o, char32_t x, char32_t y) { o += U' ', o += x, o += U' ', o += y; });
  // ([0-9])(-) -> "\1 \2 "
  a = pairs(a, digit, [](char32_t c) { return c == U'-'; },
            [](std::u32string& o, char32_t x, char32_t y) { o += x, o += U' ', o += y, o += U' '; });
  std::vector<std::string> tokens;
  std::string token;
  for (char32_t c : a) {
    if (is_python_space(c)) {
      if (!token.empty()) tokens.push_back(std::move(token));
      token.clear();
    } else {
      unicode_text::append_utf8(token, c);
    }
  }
  if (!token.empty()) tokens.push_back(std::move(token));
  return tokens;
}

/// The sufficient statistics of BLEU; they add up over segments.
struct BleuStatistics {
  int64_t hyp_len = 0, ref_len = 0;
  std::array<int64_t, 4> correct{}, total{};
  BleuStatistics& operator+=(const BleuStatistics& o) {
    hyp_len += o.hyp_len;
    ref_len += o.ref_len;
    for (int n = 0; n < 4; ++n) correct[n] += o.correct[n], total[n] += o.total[n];
    return *this;
  }
};

/// A BLEU score with what sacreBLEU prints beside it.
struct BleuScore {
  double score = 0;                     ///< 0..100
  std::array<double, 4> precisions{};   ///< 0..100, smoothed as used
  double bp = 0, ratio = 0;             ///< brevity penalty; hyp_len / ref_len (0 without reference words)
  BleuStatistics stats;
  /// sacreBLEU's line: "BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17 ref_len = 18)".
  std::string str() const {
    char buf[256];
    std::snprintf(buf, sizeof buf, "BLEU = %.2f %.1f/%.1f/%.1f/%.1f (BP = %.3f ratio = %.3f hyp_len = %lld ref_len = %lld)",
                  score, precisions[0], precisions[1], precisions[2], precisions[3], bp, ratio,
                  static_cast<long long>(stats.hyp_len), static_cast<long long>(stats.ref_len));
    return buf;
  }
};

/// One segment's statistics against its references (a reference may be missing: give
/// only those that exist). Segments are 13a-tokenized after trailing whitespace is cut.
inline BleuStatistics bleu_statistics(std::string_view hypothesis, std::span<const std::string_view> references) {
  auto rstrip = [](std::string_view s) {
    const std::u32string cps = unicode_text::decode_utf8(s, "BLEU segment");
    std::size_t end = cps.size();
    while (end > 0 && unicode_text::is_python_space(cps[end - 1])) --end;
    std::string out;
    for (std::size_t i = 0; i < end; ++i) unicode_text::append_utf8(out, cps[i]);
    return out;
  };
  using Counts = std::map<std::vector<std::string>, int64_t>;
  auto ngrams = [](const std::vector<std::string>& words) {
    Counts c;
    for (std::size_t n = 1; n <= 4; ++n)
      for (std::size_t i = 0; i + n <= words.size(); ++i) ++c[std::vector<std::string>(words.begin() + i, words.begin() + i + n)];
    return c;
  };
  BleuStatistics st;
  const auto hyp = tokenize_13a(rstrip(hypothesis));
  st.hyp_len = static_cast<int64_t>(hyp.size());
  Counts ref_max;
  int64_t closest_diff = -1;
  for (std::string_view r : references) {
    const auto ref = tokenize_13a(rstrip(r));
    const auto len = static_cast<int64_t>(ref.size());
    const int64_t diff = std::abs(st.hyp_len - len);
    if (closest_diff < 0 || diff < closest_diff || (diff == closest_diff && len < st.ref_len)) {
      closest_diff = diff;
      st.ref_len = len;
    }
    for (const auto& [gram, count] : ngrams(ref)) ref_max[gram] = std::max(ref_max[gram], count);
  }
  for (const auto& [gram, count] : ngrams(hyp)) {
    const std::size_t n = gram.size() - 1;
    st.total[n] += count;
    if (const auto it = ref_max.find(gram); it != ref_max.end()) st.correct[n] += std::min(count, it->second);
  }
  return st;
}

/// BLEU from summed statistics (sacreBLEU's compute_bleu with smooth_method "exp").
inline BleuScore bleu_from_statistics(const BleuStatistics& s) {
  BleuScore r;
  r.stats = s;
  r.ratio = s.ref_len ? static_cast<double>(s.hyp_len) / static_cast<double>(s.ref_len) : 0.0;
  r.bp = s.hyp_len < s.ref_len ? (s.hyp_len > 0 ? std::exp(1.0 - static_cast<double>(s.ref_len) / static_cast<double>(s.hyp_len)) : 0.0)
                               : 1.0;
  bool any = false;
  for (int64_t c : s.correct) any = any || c > 0;
  if (!any) return r;  // no n-gram matches at all: 0, with zero precisions
  double smooth = 1.0, log_sum = 0.0;
  for (int n = 0; n < 4; ++n) {
    if (s.total[n] == 0) break;  // orders the hypotheses are too short for stay 0
    if (s.correct[n] == 0) {
      smooth *= 2;
      r.precisions[n] = 100.0 / (smooth * static_cast<double>(s.total[n]));
    } else {
      r.precisions[n] = 100.0 * static_cast<double>(s.correct[n]) / static_cast<double>(s.total[n]);
    }
  }
  for (double p : r.precisions) log_sum += p > 0 ? std::log(p) : -9999999999.0;
  r.score = r.bp * std::exp(log_sum / 4);
  return r;
}

/// Corpus BLEU of `hypotheses` against reference streams (each as long as hypotheses; an
/// empty string in a stream is a reference like any other, as in sacreBLEU).
inline BleuScore corpus_bleu(std::span<const std::string> hypotheses,
                             std::span<const std::vector<std::string>> reference_streams) {
  if (reference_streams.empty()) throw std::invalid_argument("corpus BLEU: no reference stream");
  for (std::size_t k = 0; k < reference_streams.size(); ++k)
    if (reference_streams[k].size() != hypotheses.size())
      throw std::invalid_argument("corpus BLEU: reference stream " + std::to_string(k) + " has " +
                                  std::to_string(reference_streams[k].size()) + " segments for " +
                                  std::to_string(hypotheses.size()) + " hypotheses");
  BleuStatistics total;
  std::vector<std::string_view> refs(reference_streams.size());
  for (std::size_t i = 0; i < hypotheses.size(); ++i) {
    for (std::size_t k = 0; k < reference_streams.size(); ++k) refs[k] = reference_streams[k][i];
    try {
      total += bleu_statistics(hypotheses[i], refs);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument("corpus BLEU: segment " + std::to_string(i + 1) + ": " + e.what());
    }
  }
  return bleu_from_statistics(total);
}

}  // namespace addrop::metrics
