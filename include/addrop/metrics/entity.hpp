#pragma once
// Entity-level (chunk) precision, recall and F1, counted exactly as conlleval and seqeval's
// default mode count them.
//
// Tags are "O" or "<P>-<TYPE>" with P one of B, I, E, S and TYPE everything after the first
// '-' (non-empty; "B-SOME-THING" has type "SOME-THING", as in seqeval). Anything else
// ("X-PER", "B-", "PER", "") is rejected with std::invalid_argument naming the sentence,
// the token and the tag.
//
// Chunks follow conlleval's start-of-chunk / end-of-chunk rules (for B/I/O input seqeval's
// default mode uses the same rules; for E-/S- we follow seqeval, which extends them):
//   - a chunk starts at B- or S-, at I-/E- after O, E- or S-, and at any tag whose type
//     differs from the previous tag's type;
//   - a chunk ends before O, B-, S-, a tag of another type, or after E-/S-.
// So I-PER after O starts a chunk, I-PER I-LOC is two chunks, I-PER B-PER is two chunks,
// and IOB1 input (B- only between two adjacent same-type entities) needs no conversion.
// Chunks never cross sentences (each sentence is scored on its own, as if an O followed it).
//
// A predicted chunk is correct iff its start, end and type all equal those of a gold chunk.
// Precision = correct / predicted, recall = correct / gold, F1 = 2PR / (P + R); every ratio
// with a zero denominator is 0. Totals are micro-averaged over all chunks of all sentences;
// per-type counts use the same counts restricted to one type. Token accuracy = tokens whose
// predicted tag equals the gold tag / tokens (sentence boundaries are not tokens).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace addrop::metrics {

/// One chunk: tokens [begin, end) of a sentence (end is one past the last token).
struct Chunk {
  std::string type;
  int64_t begin = 0;
  int64_t end = 0;
  friend bool operator==(const Chunk&, const Chunk&) = default;
  friend auto operator<=>(const Chunk&, const Chunk&) = default;
};

namespace entity_detail {

struct ParsedTag {
  char prefix = 'O';      // 'O', 'B', 'I', 'E' or 'S'
  std::string_view type;  // empty for O
};

/// Parses a tag; `where` prefixes the error message.
inline ParsedTag parse_tag(std::string_view tag, const std::string& where) {
  if (tag == "O") return {};
  if (tag.size() >= 3 && tag[1] == '-' &&
      (tag[0] == 'B' || tag[0] == 'I' || tag[0] == 'E' || tag[0] == 'S'))
    return {tag[0], tag.substr(2)};
  throw std::invalid_argument(where + ": bad tag \"" + std::string(tag) +
                              "\" (expected O or B-, I-, E-, S- followed by a type)");
}

inline bool end_of_chunk(const ParsedTag& prev, const ParsedTag& cur) {
  if (prev.prefix == 'O') return false;
  if (prev.prefix == 'E' || prev.prefix == 'S') return true;
  if (cur.prefix == 'O' || cur.prefix == 'B' || cur.prefix == 'S') return true;
  return prev.type != cur.type;
}

inline bool start_of_chunk(const ParsedTag& prev, const ParsedTag& cur) {
  if (cur.prefix == 'O') return false;
  if (cur.prefix == 'B' || cur.prefix == 'S') return true;
  // I- or E-:
  if (prev.prefix == 'O' || prev.prefix == 'E' || prev.prefix == 'S') return true;
  return prev.type != cur.type;
}

inline std::string where(int64_t sentence, std::size_t token, const char* what) {
  std::string w = sentence >= 0 ? "sentence " + std::to_string(sentence) + ", " : std::string();
  return w + what + "token " + std::to_string(token);
}

inline std::vector<Chunk> chunks(const std::vector<std::string>& tags, int64_t sentence, const char* what) {
  std::vector<Chunk> out;
  ParsedTag prev;
  int64_t begin = 0;
  for (std::size_t i = 0; i <= tags.size(); ++i) {
    const ParsedTag cur = i < tags.size() ? parse_tag(tags[i], where(sentence, i, what)) : ParsedTag{};
    if (end_of_chunk(prev, cur)) out.push_back({std::string(prev.type), begin, static_cast<int64_t>(i)});
    if (start_of_chunk(prev, cur)) begin = static_cast<int64_t>(i);
    prev = cur;
  }
  return out;
}

inline double ratio(int64_t num, int64_t den) {
  return den == 0 ? 0.0 : static_cast<double>(num) / static_cast<double>(den);
}

}  // namespace entity_detail

/// The chunks of one tag sequence, in order. Throws std::invalid_argument on a bad tag.
inline std::vector<Chunk> extract_chunks(const std::vector<std::string>& tags) {
  return entity_detail::chunks(tags, -1, "");
}

/// Chunk counts of one entity type (or of all types together).
struct ChunkCounts {
  int64_t gold = 0;       ///< chunks in the gold tags
  int64_t predicted = 0;  ///< chunks in the predicted tags ("found" in conlleval)
  int64_t correct = 0;    ///< predicted chunks equal to a gold chunk (start, end, type)

  double precision() const { return entity_detail::ratio(correct, predicted); }
  double recall() const { return entity_detail::ratio(correct, gold); }
  double f1() const {
    const double p = precision(), r = recall();
    return p + r == 0.0 ? 0.0 : 2.0 * p * r / (p + r);
  }
  friend bool operator==(const ChunkCounts&, const ChunkCounts&) = default;
};

/// Accumulates entity-level counts sentence by sentence; a value, cheap to copy and merge.
class EntityCounts {
 public:
  /// Scores one sentence. Throws std::invalid_argument if the lengths differ or a tag is bad
  /// (the message names the sentence index, counting from 0, and the token).
  void add(const std::vector<std::string>& gold, const std::vector<std::string>& predicted) {
    if (gold.size() != predicted.size())
      throw std::invalid_argument("sentence " + std::to_string(sentences_) + ": " + std::to_string(gold.size()) +
                                  " gold tags but " + std::to_string(predicted.size()) + " predicted tags");
    const auto g = entity_detail::chunks(gold, sentences_, "gold ");
    const auto p = entity_detail::chunks(predicted, sentences_, "predicted ");
    for (std::size_t i = 0; i < gold.size(); ++i) correct_tokens_ += gold[i] == predicted[i] ? 1 : 0;
    tokens_ += static_cast<int64_t>(gold.size());
    for (const auto& c : g) {
      ++per_type_[c.type].gold;
      ++total_.gold;
    }
    for (const auto& c : p) {
      ++per_type_[c.type].predicted;
      ++total_.predicted;
    }
    // Both lists are sorted by begin and non-overlapping: merge.
    std::size_t i = 0, j = 0;
    while (i < g.size() && j < p.size()) {
      if (g[i].begin < p[j].begin) ++i;
      else if (p[j].begin < g[i].begin) ++j;
      else {
        if (g[i] == p[j]) {
          ++per_type_[g[i].type].correct;
          ++total_.correct;
        }
        ++i;
        ++j;
      }
    }
    ++sentences_;
  }

  /// Adds another accumulator's counts (e.g. from another thread or shard).
  EntityCounts& operator+=(const EntityCounts& o) {
    sentences_ += o.sentences_;
    tokens_ += o.tokens_;
    correct_tokens_ += o.correct_tokens_;
    total_.gold += o.total_.gold;
    total_.predicted += o.total_.predicted;
    total_.correct += o.total_.correct;
    for (const auto& [type, c] : o.per_type_) {
      auto& t = per_type_[type];
      t.gold += c.gold;
      t.predicted += c.predicted;
      t.correct += c.correct;
    }
    return *this;
  }

  int64_t sentences() const { return sentences_; }
  int64_t tokens() const { return tokens_; }
  int64_t correct_tokens() const { return correct_tokens_; }
  /// Token accuracy (0 with no tokens).
  double accuracy() const { return entity_detail::ratio(correct_tokens_, tokens_); }
  /// Micro-averaged counts over every type.
  const ChunkCounts& total() const { return total_; }
  double precision() const { return total_.precision(); }
  double recall() const { return total_.recall(); }
  double f1() const { return total_.f1(); }
  /// Counts per entity type, for every type seen in gold or predicted tags, sorted by name.
  const std::map<std::string, ChunkCounts>& per_type() const { return per_type_; }
  /// One type's counts (all zero for a type never seen).
  ChunkCounts of(const std::string& type) const {
    const auto it = per_type_.find(type);
    return it == per_type_.end() ? ChunkCounts{} : it->second;
  }

  /// conlleval's report, same layout and rounding:
  ///   processed N tokens with G phrases; found: P phrases; correct: C.
  ///   accuracy:  xx.xx%; precision:  xx.xx%; recall:  xx.xx%; FB1:  xx.xx
  ///                 LOC: precision:  xx.xx%; recall:  xx.xx%; FB1:  xx.xx  P_LOC
  /// (the accuracy line is omitted with no tokens, as conlleval does).
  std::string report() const {
    std::string out = "processed " + std::to_string(tokens_) + " tokens with " + std::to_string(total_.gold) +
                      " phrases; found: " + std::to_string(total_.predicted) +
                      " phrases; correct: " + std::to_string(total_.correct) + ".\n";
    char buf[256];
    if (tokens_ > 0) {
      std::snprintf(buf, sizeof buf, "accuracy: %6.2f%%; precision: %6.2f%%; recall: %6.2f%%; FB1: %6.2f\n",
                    100.0 * accuracy(), 100.0 * precision(), 100.0 * recall(), 100.0 * f1());
      out += buf;
    }
    for (const auto& [type, c] : per_type_) {
      std::snprintf(buf, sizeof buf, "%17s: precision: %6.2f%%; recall: %6.2f%%; FB1: %6.2f  %lld\n", type.c_str(),
                    100.0 * c.precision(), 100.0 * c.recall(), 100.0 * c.f1(), static_cast<long long>(c.predicted));
      out += buf;
    }
    return out;
  }

 private:
  int64_t sentences_ = 0;
  int64_t tokens_ = 0;
  int64_t correct_tokens_ = 0;
  ChunkCounts total_;
  std::map<std::string, ChunkCounts> per_type_;
};

/// Scores whole corpora: gold[s] and predicted[s] are the tags of sentence s.
inline EntityCounts evaluate_entities(const std::vector<std::vector<std::string>>& gold,
                                      const std::vector<std::vector<std::string>>& predicted) {
  if (gold.size() != predicted.size())
    throw std::invalid_argument(std::to_string(gold.size()) + " gold sentences but " +
                                std::to_string(predicted.size()) + " predicted sentences");
  EntityCounts counts;
  for (std::size_t s = 0; s < gold.size(); ++s) counts.add(gold[s], predicted[s]);
  return counts;
}

}  // namespace addrop::metrics
