#pragma once
/// @file tokenizer_base.hpp
/// `Encoding` and the abstract `Tokenizer` (the interface of text/tokenizer.hpp), plus what
/// WordPiece and byte-level BPE share: the vocabulary map, Hugging Face's "longest_first"
/// truncation, the assembly of special tokens, and the reading of checkpoint JSON files.
/// Users include <addrop/text/tokenizer.hpp>.
#include <algorithm>
#include <climits>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace addrop::text {

/// The output of a tokenizer for one example (a sentence or a pair), without padding.
struct Encoding {
  std::vector<int32_t> ids;
  std::vector<int32_t> type_ids;
  std::vector<std::pair<int64_t, int64_t>> offsets;  ///< byte [begin,end) in its own sequence's text; {0,0} for specials
  std::vector<int32_t> sequence_ids;                  ///< -1 added special token, 0 first text, 1 second text
  std::vector<int32_t> word_ids;                      ///< encode_words: index of the source word; -1 for added specials; encode(): -1
  std::vector<std::string> tokens;                    ///< token strings (as in the vocab)
  int64_t truncated_tokens = 0;                       ///< how many tokens truncation removed
  std::size_t size() const { return ids.size(); }
};

/// Settings given by the caller that win over what a checkpoint folder says (load_tokenizer).
struct TokenizerOverrides {
  /// Hugging Face's split_special_tokens: true tokenizes special-token strings in the text
  /// ("[CLS]", "<mask>") as ordinary text; false reads them as the special tokens.
  std::optional<bool> split_special_tokens;
};

/// A tokenizer of a Hugging Face checkpoint. All members are const and thread-safe.
class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  /// Tokenizes a sentence or a pair and adds the special tokens of the model.
  /// max_length <= 0: no truncation; otherwise Hugging Face's "longest_first" truncation to
  /// max_length tokens, special tokens included. No padding. Special-token strings inside
  /// the text become those tokens, with their sequence id and their offsets in the text
  /// (unless the options' split_special_tokens is set), as in Hugging Face.
  virtual Encoding encode(std::string_view first, std::optional<std::string_view> second = std::nullopt,
                          int64_t max_length = 0) const = 0;
  /// Tokenizes pre-split words one by one (Hugging Face's is_split_into_words=True); word_ids
  /// give each token's word and offsets are byte offsets inside that word.
  virtual Encoding encode_words(const std::vector<std::string>& words, int64_t max_length = 0) const = 0;
  virtual std::vector<std::string> tokenize(std::string_view text) const = 0;  ///< no special tokens
  virtual int32_t token_to_id(std::string_view token) const = 0;                ///< -1 if absent
  virtual std::string_view id_to_token(int32_t id) const = 0;                   ///< throws std::out_of_range
  virtual int64_t vocab_size() const = 0;
  virtual int32_t pad_id() const = 0;
  virtual int32_t unk_id() const = 0;
  virtual void save(const std::filesystem::path& dir) const = 0;  ///< writes the tokenizer files
  virtual std::string kind() const = 0;                            ///< "wordpiece" or "byte_bpe"
  /// The checkpoint's model_max_length (tokenizer_config.json), 512 when it does not say.
  virtual int64_t model_max_length() const { return 512; }
  virtual int32_t cls_id() const = 0;   ///< [CLS] / <s>
  virtual int32_t sep_id() const = 0;   ///< [SEP] / </s>
  virtual int32_t mask_id() const = 0;  ///< [MASK] / <mask>; -1 if absent
};

namespace detail {

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

/// Token <-> id, with lookups by string_view that allocate nothing.
struct Vocab {
  std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>> ids;
  std::vector<std::string> tokens;  // by id; ids not used by any token hold ""

  int32_t find(std::string_view t) const {
    const auto it = ids.find(t);
    return it == ids.end() ? -1 : it->second;
  }
  std::string_view at(int32_t id) const {
    if (id < 0 || static_cast<std::size_t>(id) >= tokens.size())
      throw std::out_of_range("addrop::text: token id " + std::to_string(id) + " outside the vocabulary of " +
                              std::to_string(tokens.size()));
    return tokens[static_cast<std::size_t>(id)];
  }
  void add(std::string token, int32_t id) {
    if (id < 0) throw std::invalid_argument("addrop::text: negative token id for '" + token + "'");
    if (static_cast<std::size_t>(id) >= tokens.size()) tokens.resize(static_cast<std::size_t>(id) + 1);
    tokens[static_cast<std::size_t>(id)] = token;
    ids.insert_or_assign(std::move(token), id);  // a repeated token: the last id wins, as in Hugging Face
  }
};

/// The tokens of one text before special tokens are added.
struct Pieces {
  std::vector<int32_t> ids;
  std::vector<std::string> tokens;
  std::vector<std::pair<int64_t, int64_t>> offsets;
  std::vector<int32_t> word_ids;
  std::size_t size() const { return ids.size(); }
  void push(int32_t id, std::string_view token, int64_t begin, int64_t end, int32_t word) {
    ids.push_back(id);
    tokens.emplace_back(token);
    offsets.emplace_back(begin, end);
    word_ids.push_back(word);
  }
  void truncate(std::size_t n) {
    if (n >= ids.size()) return;
    ids.resize(n);
    tokens.resize(n);
    offsets.resize(n);
    word_ids.resize(n);
  }
};

/// How a model puts special tokens around one or two sequences.
struct Template {
  int32_t cls_id;
  std::string cls;
  int32_t sep_id;
  std::string sep;
  bool double_sep;        ///< RoBERTa: <s> A </s></s> B </s>; BERT: [CLS] A [SEP] B [SEP]
  int32_t second_type;    ///< type id of the second sequence and its closing separator
  int64_t added(bool pair) const { return pair ? (double_sep ? 4 : 3) : 2; }
};

/// The lengths Hugging Face's "longest_first" keeps of a pair of sequences of n1 and n2
/// tokens within `budget` tokens (tokenizers' truncate_encodings): when only the longer one
/// must shrink it gets what the shorter leaves; when both must, the shorter (the first on
/// ties) keeps budget / 2 and the other the rest. This equals "remove one token at a time
/// from the longer" except on ties, where Hugging Face's Rust code takes the odd token
/// from the first sequence (transformers' slow tokenizers take it from the second).
inline std::pair<int64_t, int64_t> longest_first_lengths(int64_t n1, int64_t n2, int64_t budget) {
  if (n1 + n2 <= budget) return {n1, n2};
  const bool swap = n1 > n2;
  if (swap) std::swap(n1, n2);
  const int64_t short_len = n1;
  int64_t m1 = short_len, m2 = short_len > budget ? short_len : std::max(short_len, budget - short_len);
  if (m1 + m2 > budget) {
    m1 = budget / 2;
    m2 = m1 + budget % 2;
  }
  m1 = std::min(m1, n1);
  m2 = std::min(m2, n2);
  return swap ? std::pair<int64_t, int64_t>{m2, m1} : std::pair<int64_t, int64_t>{m1, m2};
}

/// Hugging Face's "longest_first" truncation: `max_length` counts the special tokens
/// (`n_added` of them); a single sequence keeps its first max_length - n_added tokens, a
/// pair the lengths of longest_first_lengths(). Returns how many tokens were removed.
inline int64_t truncate_longest_first(Pieces& a, Pieces* b, int64_t max_length, int64_t n_added) {
  if (max_length <= 0) return 0;
  if (max_length < n_added)
    throw std::invalid_argument("addrop::text: max_length " + std::to_string(max_length) + " is smaller than the " +
                                std::to_string(n_added) + " special tokens");
  const int64_t budget = max_length - n_added;
  const auto n_first = static_cast<int64_t>(a.size());
  const auto n_second = b ? static_cast<int64_t>(b->size()) : int64_t{0};
  if (n_first + n_second <= budget) return 0;
  if (!b) {
    a.truncate(static_cast<std::size_t>(budget));
    return n_first - budget;
  }
  const auto [k1, k2] = longest_first_lengths(n_first, n_second, budget);
  a.truncate(static_cast<std::size_t>(k1));
  b->truncate(static_cast<std::size_t>(k2));
  return n_first + n_second - k1 - k2;
}

/// Adds the special tokens of `t` around `a` (and `b`).
inline Encoding assemble(Pieces&& a, Pieces* b, const Template& t, int64_t truncated) {
  Encoding e;
  e.truncated_tokens = truncated;
  const std::size_t n = a.size() + (b ? b->size() : 0) + static_cast<std::size_t>(t.added(b != nullptr));
  e.ids.reserve(n);
  e.type_ids.reserve(n);
  e.offsets.reserve(n);
  e.sequence_ids.reserve(n);
  e.word_ids.reserve(n);
  e.tokens.reserve(n);
  auto special = [&](int32_t id, const std::string& tok, int32_t type) {
    e.ids.push_back(id);
    e.type_ids.push_back(type);
    e.offsets.emplace_back(0, 0);
    e.sequence_ids.push_back(-1);
    e.word_ids.push_back(-1);
    e.tokens.push_back(tok);
  };
  auto body = [&](Pieces& p, int32_t seq, int32_t type) {
    e.ids.insert(e.ids.end(), p.ids.begin(), p.ids.end());
    e.type_ids.insert(e.type_ids.end(), p.size(), type);
    e.offsets.insert(e.offsets.end(), p.offsets.begin(), p.offsets.end());
    e.sequence_ids.insert(e.sequence_ids.end(), p.size(), seq);
    e.word_ids.insert(e.word_ids.end(), p.word_ids.begin(), p.word_ids.end());
    for (auto& s : p.tokens) e.tokens.push_back(std::move(s));
  };
  special(t.cls_id, t.cls, 0);
  body(a, 0, 0);
  special(t.sep_id, t.sep, 0);
  if (b) {
    if (t.double_sep) special(t.sep_id, t.sep, t.second_type);
    body(*b, 1, t.second_type);
    special(t.sep_id, t.sep, t.second_type);
  }
  return e;
}

inline std::string read_file(const std::filesystem::path& p) {
  std::error_code ec;
  if (!std::filesystem::exists(p, ec)) throw std::runtime_error("addrop::text: cannot open " + p.string() + ": no such file");
  if (std::filesystem::is_directory(p, ec))
    throw std::runtime_error("addrop::text: cannot open " + p.string() + ": a folder, not a file");
  std::ifstream in(p, std::ios::binary);
  if (!in) throw std::runtime_error("addrop::text: cannot open " + p.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline nlohmann::json parse_json(const std::filesystem::path& p) {
  const std::string text = read_file(p);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    // e.byte is the position of the error; turn it into file:line:column, as compilers write.
    const auto upto = std::min<std::size_t>(e.byte, text.size());
    const auto line = 1 + std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(upto), '\n');
    const auto line_start = upto == 0 ? std::string::npos : text.rfind('\n', upto - 1);
    const auto column = line_start == std::string::npos ? upto : upto - line_start - 1;
    // What is wrong, without nlohmann's "[json.exception...] parse error at line L, column C: ".
    std::string what = e.what();
    if (const auto at = what.find(", column "); at != std::string::npos)
      if (const auto colon = what.find(": ", at); colon != std::string::npos) what = what.substr(colon + 2);
    throw std::runtime_error("addrop::text: " + p.string() + ":" + std::to_string(line) + ":" + std::to_string(column) +
                             ": invalid JSON: " + what);
  }
}

inline std::optional<nlohmann::json> parse_json_if_exists(const std::filesystem::path& p) {
  if (!std::filesystem::exists(p)) return std::nullopt;
  return parse_json(p);
}

/// A special token of special_tokens_map.json / tokenizer_config.json: a string or
/// {"content": ...}.
inline std::optional<std::string> special_token(const nlohmann::json& j, const char* key) {
  if (!j.is_object() || !j.contains(key)) return std::nullopt;
  const auto& v = j.at(key);
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v.at("content").is_string()) return v.at("content").get<std::string>();
  return std::nullopt;
}

/// Reads the named special tokens from tokenizer_config.json, then special_tokens_map.json
/// (the later file wins), into the given strings; absent files or keys leave them as they are.
inline void read_special_tokens(const std::optional<nlohmann::json>& config,
                                const std::optional<nlohmann::json>& special_tokens_map,
                                std::initializer_list<std::pair<const char*, std::string*>> tokens) {
  for (const auto* j : {config ? &*config : nullptr, special_tokens_map ? &*special_tokens_map : nullptr}) {
    if (!j) continue;
    for (const auto& [key, out] : tokens)
      if (auto t = special_token(*j, key)) *out = *t;
  }
}

/// model_max_length: Hugging Face writes 1e30 for "no limit"; that reads as INT64_MAX.
inline void read_max_length(const nlohmann::json& j, int64_t& out) {
  if (!j.is_object() || !j.contains("model_max_length") || !j.at("model_max_length").is_number()) return;
  const double v = j.at("model_max_length").get<double>();
  out = v >= 9.2e18 ? INT64_MAX : static_cast<int64_t>(v);
}

template <class T>
void read_if(const nlohmann::json& j, const char* key, T& out) {
  if (j.is_object() && j.contains(key) && !j.at(key).is_null()) out = j.at(key).get<T>();
}

inline void write_file(const std::filesystem::path& p, std::string_view data) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error("addrop::text: cannot write " + p.string());
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  if (!out) throw std::runtime_error("addrop::text: error while writing " + p.string());
}

inline void write_json(const std::filesystem::path& p, const nlohmann::json& j) { write_file(p, j.dump(2) + "\n"); }

}  // namespace detail
}  // namespace addrop::text
