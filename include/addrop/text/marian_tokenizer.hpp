#pragma once
/// @file marian_tokenizer.hpp
/// Hugging Face's MarianTokenizer (OPUS-MT checkpoints, MarianMTModel) over the SentencePiece
/// library, and the training of a new tokenizer folder of the same layout.
///
/// Needs the optional CMake component addrop::sentencepiece (cmake/AddropText.cmake; Debian
/// libsentencepiece-dev). No other addrop header includes this one.
///
/// A tokenizer folder (what MarianTokenizer.from_pretrained reads):
///   source.spm              SentencePiece model that cuts the source text
///   target.spm              SentencePiece model that cuts the target text and detokenizes
///   vocab.json              {piece: id}: the model's ids. SentencePiece's own ids are never used.
///   target_vocab.json       only with "separate_vocabs": the target side's {piece: id}
///   tokenizer_config.json   optional: separate_vocabs, model_max_length, source_lang,
///                           target_lang, eos/unk/pad_token, clean_up_tokenization_spaces
///
/// What encoding and decoding do (read from transformers' tokenization_marian.py and the
/// slow-tokenizer base class of the 4.x releases; 4.34 to 4.44 where they differ):
///  - the text is split at the special-token strings ("</s>", "<unk>", "<pad>"), which become
///    those tokens, with no space stripped around them;
///  - in each other part, a leading language code becomes one token: the regex `>>.+<<`
///    (greedy, no newline inside) matched at the start. Every match of that regex is removed
///    from the part, wherever it is, before SentencePiece cuts the rest. The code's id is its
///    vocab.json entry (OPUS-MT multi-target models have ">>ro<<" and the like), else <unk>'s;
///  - a piece that vocab.json does not hold (a character never seen in training comes out of
///    SentencePiece as itself) gets <unk>'s id, and </s> is appended to every sequence;
///  - decoding maps ids through the target vocabulary, drops the ids of </s>, <unk> and <pad>
///    when skipping special tokens, detokenizes each run of pieces with the TARGET model,
///    writes a special token that is kept as itself plus one space, strips whitespace at both
///    ends (Python's notion of whitespace) and, when clean_up_tokenization_spaces holds,
///    removes the space before . ? ! , and in " ' ", " n't", " 's", " 'm", " 've", " 're".
///
/// Where releases differ, and what is taken here:
///  - clean_up_tokenization_spaces: when tokenizer_config.json does not say, 4.x before 4.45
///    (the releases OPUS-MT was published and fine-tuned with) take true, 4.45 and later
///    false. True is taken here; folders written by train_marian_tokenizer say false, as
///    SentencePiece's detokenization needs no clean-up.
///  - the 5.x line (transformers' main branch) decodes with the SOURCE model when the
///    vocabulary is shared, replaces a "▁" left in the output by a space, ends a language
///    code at the first "<<" and removes it only at the start, and looks a piece absent from
///    vocab.json up in the SentencePiece model, whose ids are unrelated to vocab.json's (an
///    unseen character then gets SentencePiece's unk id 0, which is </s> in vocab.json). The
///    4.x behaviour above is kept. With one shared model (train_marian_tokenizer) the choice
///    of model makes no difference.
///  - before 4.34 the spaces around a special-token string in the text were stripped, which
///    SentencePiece does anyway (it only matters to a language code right after one).
///
/// Not applied: MarianTokenizer builds a Moses punctuation normalizer (for source_lang) when
/// the sacremoses package is installed, but tokenize(), encode() and __call__ never use it;
/// only its normalize() method does, which the old prepare_seq2seq_batch (3.x) called. The
/// default, with or without sacremoses, is therefore no normalisation, and none is applied.
///
/// Separate vocabularies: transformers takes the special tokens' ids from vocab.json even
/// on the target side; here the target side uses target_vocab.json's own </s>, <unk> and
/// <pad> (OPUS-MT's separate vocabularies agree on </s> 0 and <unk> 1 anyway).
///
/// Deliberate differences: text must be valid UTF-8 (std::invalid_argument otherwise; a
/// Python string cannot be anything else), and decoding an id that no vocabulary entry has
/// throws std::out_of_range (transformers writes "<unk>" for it).
///
/// Every member is const and thread-safe; copies share the loaded models.
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <random>
#include <span>
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

/// How train_marian_tokenizer trains its SentencePiece model and fills tokenizer_config.json.
/// The SentencePiece fields are recorded in the model file (its trainer_spec): the same text
/// and options give the same bytes.
struct SentencePieceTrainingOptions {
  /// Pieces of the model, SentencePiece's <unk>, <s>, </s> included; vocab.json gets exactly
  /// as many entries (<s> is dropped, <pad> added), which is the model's vocab_size (one
  /// fewer in the odd case of a learnt piece spelled "<pad>", which is kept once).
  int vocab_size = 8000;
  std::string model_type = "unigram";  ///< "unigram" (OPUS-MT's), "bpe", "char" or "word"
  double character_coverage = 1.0;     ///< OPUS-MT: 1.0, or 0.9995 for scripts of > 1000 characters
  /// Part of the result: the unigram EM sums per-thread counts, and a different number of
  /// threads gives a (slightly) different model. Fixed to 1 by default for that reason.
  int num_threads = 1;
  /// SentencePiece's text normalisation, stored in the model and applied at every encode.
  /// "nmt_nfkc" is spm_train's default and OPUS-MT's; "identity" leaves the text as it is
  /// (and keeps the model file small: nmt_nfkc embeds a 240 KB character map).
  std::string normalization_rule_name = "nmt_nfkc";
  std::string source_lang;        ///< written to tokenizer_config.json when not empty ("en")
  std::string target_lang;        ///< idem ("ro")
  int64_t model_max_length = 512; ///< tokenizer_config.json; MarianMTModel's 512 positions
  bool verbose = false;           ///< SentencePiece's training log on stderr
};

namespace marian_detail {

struct Hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

inline std::string where(const std::filesystem::path& file) { return "addrop::text::MarianTokenizer: " + file.string(); }

/// Length of the valid UTF-8 sequence at s[i], 0 if there is none (overlong forms,
/// surrogates and code points past U+10FFFF are invalid, as for Python's decoder).
inline std::size_t utf8_length(std::string_view s, std::size_t i) noexcept {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  const std::size_t left = s.size() - i;
  const auto cont = [&](std::size_t k) { return (b(i + k) & 0xC0) == 0x80; };
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return left >= 2 && cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (left < 3 || !cont(1) || !cont(2)) return 0;
    if (c == 0xE0 && b(i + 1) < 0xA0) return 0;   // overlong
    if (c == 0xED && b(i + 1) >= 0xA0) return 0;  // surrogate
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (left < 4 || !cont(1) || !cont(2) || !cont(3)) return 0;
    if (c == 0xF0 && b(i + 1) < 0x90) return 0;   // overlong
    if (c == 0xF4 && b(i + 1) >= 0x90) return 0;  // past U+10FFFF
    return 4;
  }
  return 0;
}

/// Throws std::invalid_argument naming `what` and the byte offset of the first bad sequence.
inline void check_utf8(std::string_view s, const std::string& what) {
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = utf8_length(s, i);
    if (n == 0) throw std::invalid_argument("addrop::text::MarianTokenizer: " + what + " is not valid UTF-8 (byte " +
                                            std::to_string(i) + ")");
    i += n;
  }
}

/// The code point of the valid UTF-8 sequence at s[i], n its length.
inline char32_t code_point(std::string_view s, std::size_t i, std::size_t n) noexcept {
  const auto b = [&](std::size_t k) { return static_cast<char32_t>(static_cast<unsigned char>(s[i + k])); };
  if (n == 1) return b(0);
  if (n == 2) return ((b(0) & 0x1F) << 6) | (b(1) & 0x3F);
  if (n == 3) return ((b(0) & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F);
  return ((b(0) & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
}

/// Python's str.isspace(): Unicode Zs, and the bidirectional classes WS, B and S.
inline bool python_space(char32_t c) noexcept {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/// Python's str.strip() without arguments, on valid UTF-8.
inline std::string python_strip(std::string_view s) {
  std::size_t begin = 0;
  while (begin < s.size()) {
    const std::size_t n = utf8_length(s, begin);
    if (n == 0 || !python_space(code_point(s, begin, n))) break;
    begin += n;
  }
  std::size_t end = s.size();
  while (end > begin) {
    std::size_t start = end - 1;
    while (start > begin && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
    const std::size_t n = utf8_length(s, start);
    if (n != end - start || !python_space(code_point(s, start, n))) break;
    end = start;
  }
  return std::string(s.substr(begin, end - begin));
}

/// Python's str.replace(from, to): every non-overlapping occurrence, left to right.
inline void replace_all(std::string& s, std::string_view from, std::string_view to) {
  std::string out;
  std::size_t at = 0;
  for (std::size_t hit; (hit = s.find(from, at)) != std::string::npos; at = hit + from.size()) {
    out.append(s, at, hit - at);
    out.append(to);
  }
  if (at == 0) return;
  out.append(s, at);
  s = std::move(out);
}

/// transformers' clean_up_tokenization (spaces the BERT-era tokenizers left before punctuation).
inline std::string clean_up_tokenization(std::string s) {
  static constexpr std::pair<std::string_view, std::string_view> rules[] = {
      {" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"},
      {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
  for (const auto& [from, to] : rules) replace_all(s, from, to);
  return s;
}

/// End of the match of `>>.+<<` that starts at s[p] (Python re semantics: `.` is anything
/// but "\n", `.+` is greedy so the match runs to the last "<<" of the line), or npos.
/// Bytewise is exact: the delimiters and "\n" are ASCII, never inside a multi-byte character.
inline std::size_t language_code_end(std::string_view s, std::size_t p) noexcept {
  if (s.size() < p + 5 || s.compare(p, 2, ">>") != 0) return std::string_view::npos;
  const std::size_t line_end = std::min(s.find('\n', p + 2), s.size());
  if (line_end < p + 5) return std::string_view::npos;
  const std::size_t q = s.rfind("<<", line_end - 2);  // last "<<" that ends within the line
  if (q == std::string_view::npos || q < p + 3) return std::string_view::npos;
  return q + 2;
}

/// MarianTokenizer.remove_language_code: the code matched at the start (empty if none) and
/// the text with every match removed.
inline std::pair<std::string_view, std::string> split_language_code(std::string_view s) {
  const std::size_t first = language_code_end(s, 0);
  const std::string_view code = first == std::string_view::npos ? std::string_view{} : s.substr(0, first);
  std::string rest;
  std::size_t copied = 0;
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t e = language_code_end(s, i);
    if (e == std::string_view::npos) {
      ++i;
      continue;
    }
    rest.append(s, copied, i - copied);
    i = copied = e;
  }
  rest.append(s, copied);
  return {code, std::move(rest)};
}

/// One side's {piece: id} map (vocab.json or target_vocab.json).
struct Vocabulary {
  std::unordered_map<std::string, int32_t, Hash, std::equal_to<>> ids;
  std::unordered_map<int32_t, std::string> pieces;
  int32_t eos = -1, unk = -1, pad = -1;

  int32_t find(std::string_view piece) const {
    const auto it = ids.find(piece);
    return it == ids.end() ? -1 : it->second;
  }
  int32_t id_or_unk(std::string_view piece) const {
    const int32_t id = find(piece);
    return id < 0 ? unk : id;
  }
  const std::string& piece(int32_t id) const {
    const auto it = pieces.find(id);
    if (it == pieces.end())
      throw std::out_of_range("addrop::text::MarianTokenizer: token id " + std::to_string(id) +
                              " is not in the vocabulary (" + std::to_string(pieces.size()) + " entries)");
    return it->second;
  }
  void add(std::string piece, int32_t id, const std::string& file) {
    if (!pieces.emplace(id, piece).second)
      throw std::runtime_error(where(file) + ": id " + std::to_string(id) + " is given to both \"" + pieces.at(id) +
                               "\" and \"" + piece + "\"");
    ids.emplace(std::move(piece), id);
  }
  /// The file's text: {piece: id} in id order, two-space indent, as Hugging Face's save_json
  /// lays it out (UTF-8 kept as it is).
  std::string json_text() const {
    std::vector<std::pair<int32_t, const std::string*>> order;
    order.reserve(pieces.size());
    for (const auto& [id, p] : pieces) order.emplace_back(id, &p);
    std::sort(order.begin(), order.end());
    std::string out = "{";
    for (std::size_t i = 0; i < order.size(); ++i) {
      out += i ? ",\n  " : "\n  ";
      out += nlohmann::json(*order[i].second).dump();
      out += ": " + std::to_string(order[i].first);
    }
    out += order.empty() ? "}\n" : "\n}\n";
    return out;
  }
};

inline std::string read_file(const std::filesystem::path& file) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec))
    throw std::runtime_error(where(file) + ": missing (a Marian tokenizer folder holds source.spm, target.spm and "
                                           "vocab.json)");
  std::ifstream in(file, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in && !in.eof()) throw std::runtime_error(where(file) + ": cannot be read");
  return std::move(text).str();
}

template <class Json>
inline Json parse_json(const std::string& text, const std::filesystem::path& file) {
  try {
    return Json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(where(file) + ": not valid JSON (" + e.what() + ")");
  }
}

/// vocab.json / target_vocab.json: a JSON object whose values are ids in [0, 2^31).
inline Vocabulary parse_vocabulary(const std::string& text, const std::filesystem::path& file,
                                   const std::string& eos, const std::string& unk, const std::string& pad) {
  const auto j = parse_json<nlohmann::json>(text, file);
  if (!j.is_object())
    throw std::runtime_error(where(file) + ": must be a JSON object mapping each piece to its id, not " +
                             std::string(j.type_name()));
  Vocabulary v;
  v.ids.reserve(j.size());
  v.pieces.reserve(j.size());
  for (const auto& [piece, id] : j.items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX)
      throw std::runtime_error(where(file) + ": the id of \"" + piece + "\" is not an integer in [0, 2^31): " +
                               id.dump());
    v.add(piece, static_cast<int32_t>(id.get<int64_t>()), file.string());
  }
  const auto special = [&](const std::string& token, const char* role) {
    const int32_t id = v.find(token);
    if (id < 0) throw std::runtime_error(where(file) + ": has no \"" + token + "\" entry (the " + role + " token)");
    return id;
  };
  v.unk = special(unk, "unknown");
  v.eos = special(eos, "end-of-sequence");
  v.pad = special(pad, "padding");
  return v;
}

inline std::shared_ptr<const sentencepiece::SentencePieceProcessor> load_model(const std::string& bytes,
                                                                               const std::filesystem::path& file) {
  auto model = std::make_shared<sentencepiece::SentencePieceProcessor>();
  const auto status = model->LoadFromSerializedProto(bytes);
  if (!status.ok())
    throw std::runtime_error(where(file) + ": not a SentencePiece model (" + status.ToString() + ")");
  return model;
}

/// Writes every file under a temporary name in `dir`, then renames them into place, so that a
/// failure leaves no half-written file under a real name.
inline void write_files(const std::filesystem::path& dir, const std::vector<std::pair<std::string, const std::string*>>& files) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir)) throw std::runtime_error(where(dir) + ": cannot create the folder (" + ec.message() + ")");
  const std::string tag = ".tmp" + std::to_string(std::random_device{}());
  std::vector<fs::path> temps;
  const auto remove_temps = [&] {
    for (const auto& t : temps) fs::remove(t, ec);
  };
  for (const auto& [name, content] : files) {
    const fs::path temp = dir / ("." + name + tag);
    temps.push_back(temp);
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    out.write(content->data(), static_cast<std::streamsize>(content->size()));
    out.close();
    if (!out) {
      remove_temps();
      throw std::runtime_error(where(dir / name) + ": cannot be written");
    }
  }
  for (std::size_t i = 0; i < files.size(); ++i) {
    fs::rename(temps[i], dir / files[i].first, ec);
    if (ec) {
      remove_temps();
      throw std::runtime_error(where(dir / files[i].first) + ": cannot be renamed into place (" + ec.message() + ")");
    }
  }
}

/// A special token in tokenizer_config.json: a string, or an AddedToken object's "content".
inline std::string special_token(const nlohmann::ordered_json& config, const char* key, const char* fallback,
                                 const std::filesystem::path& file) {
  const auto it = config.find(key);
  if (it == config.end() || it->is_null()) return fallback;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) return (*it)["content"].get<std::string>();
  throw std::runtime_error(where(file) + ": \"" + key + "\" must be a string or an object with a \"content\" string");
}

/// The sentences of source_texts then target_texts, handed to the trainer without a copy.
class SpanSentences final : public sentencepiece::SentenceIterator {
 public:
  SpanSentences(std::span<const std::string> a, std::span<const std::string> b) : a_(a), b_(b) {}
  bool done() const override { return i_ >= a_.size() + b_.size(); }
  void Next() override { ++i_; }
  const std::string& value() const override { return i_ < a_.size() ? a_[i_] : b_[i_ - a_.size()]; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  std::span<const std::string> a_, b_;
  std::size_t i_ = 0;
};

/// A number as the shortest text that reads back to it (SentencePiece parses it).
inline std::string number_text(double v) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

}  // namespace marian_detail

class MarianTokenizer;
inline MarianTokenizer train_marian_tokenizer(std::span<const std::string> source_texts,
                                       std::span<const std::string> target_texts,
                                       const SentencePieceTrainingOptions& options,
                                       const std::filesystem::path& out_dir);

/// A Marian tokenizer folder, loaded. Encodes source text (source.spm + vocab.json) and
/// target text (target.spm + vocab.json or target_vocab.json), decodes target ids.
class MarianTokenizer {
 public:
  /// Reads a folder (see the file comment). Errors name the file: a missing source.spm,
  /// target.spm or vocab.json; a model that SentencePiece cannot load; a vocab.json that is
  /// not JSON, not an object, has a non-integer or repeated id, or lacks </s>, <unk> or
  /// <pad>; a tokenizer_config.json that is not a JSON object or has a field of the wrong type.
  static MarianTokenizer load(const std::filesystem::path& dir) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) throw std::runtime_error(marian_detail::where(dir) + ": not a folder");
    const fs::path config_file = dir / "tokenizer_config.json";
    std::optional<std::string> config;
    if (fs::exists(config_file, ec)) config = marian_detail::read_file(config_file);
    MarianTokenizer t = build(dir, config);
    const std::string vocab = marian_detail::read_file(dir / "vocab.json");
    t.source_vocab_ = std::make_shared<const marian_detail::Vocabulary>(
        marian_detail::parse_vocabulary(vocab, dir / "vocab.json", t.eos_token_, t.unk_token_, t.pad_token_));
    if (t.separate_vocabs_) {
      const std::string target = marian_detail::read_file(dir / "target_vocab.json");
      t.target_vocab_ = std::make_shared<const marian_detail::Vocabulary>(marian_detail::parse_vocabulary(
          target, dir / "target_vocab.json", t.eos_token_, t.unk_token_, t.pad_token_));
    } else {
      t.target_vocab_ = t.source_vocab_;
    }
    t.source_bytes_ = std::make_shared<const std::string>(marian_detail::read_file(dir / "source.spm"));
    t.target_bytes_ = std::make_shared<const std::string>(marian_detail::read_file(dir / "target.spm"));
    t.attach_models(dir);
    return t;
  }

  /// Token ids of a source sentence, </s> appended (tokenizer(text)["input_ids"]).
  /// max_length > 0 truncates as truncation=True does: the first max_length - 1 tokens, then </s>.
  std::vector<int32_t> encode_source(std::string_view text, int64_t max_length = 0) const {
    return encode(text, *source_model_, *source_vocab_, max_length);
  }
  /// Token ids of a target sentence (tokenizer(text_target=text)["input_ids"], the labels).
  std::vector<int32_t> encode_target(std::string_view text, int64_t max_length = 0) const {
    return encode(text, *target_model_, *target_vocab_, max_length);
  }

  /// Text of target ids (tokenizer.decode(ids, skip_special_tokens=...)). A model's output,
  /// padding and </s> included, decodes as it is. clean_up_tokenization_spaces overrides the
  /// folder's setting. Throws std::out_of_range for an id that no vocabulary entry has.
  std::string decode_target(std::span<const int32_t> ids, bool skip_special_tokens = true,
                            std::optional<bool> clean_up_tokenization_spaces = std::nullopt) const {
    const auto& v = *target_vocab_;
    std::string out, run_text;
    std::vector<std::string_view> run;
    const auto flush = [&] {
      if (run.empty()) return;
      const auto status = target_model_->Decode(run, &run_text);
      if (!status.ok()) throw std::runtime_error("addrop::text::MarianTokenizer: decoding failed: " + status.ToString());
      out += run_text;
      run.clear();
    };
    for (const int32_t id : ids) {
      if (skip_special_tokens && (id == v.eos || id == v.unk || id == v.pad)) continue;
      const std::string& piece = v.piece(id);
      if (is_special(piece)) {
        // a kept special token is not given to SentencePiece: written as itself, then a space
        flush();
        out += piece;
        out += ' ';
      } else {
        run.push_back(piece);
      }
    }
    flush();
    out = marian_detail::python_strip(out);
    if (clean_up_tokenization_spaces.value_or(clean_up_)) out = marian_detail::clean_up_tokenization(std::move(out));
    return out;
  }

  /// The tokens encode_source gives ids to, without </s> (tokenizer.tokenize(text)).
  std::vector<std::string> source_pieces(std::string_view text) const { return pieces(text, *source_model_); }
  /// The tokens of a target sentence, without </s>.
  std::vector<std::string> target_pieces(std::string_view text) const { return pieces(text, *target_model_); }

  /// The vocab.json id of a token, -1 if it has none.
  int32_t token_to_id(std::string_view token) const { return source_vocab_->find(token); }
  /// The token of a target id (target_vocab.json when the vocabularies are separate).
  const std::string& id_to_token(int32_t id) const { return target_vocab_->piece(id); }

  int32_t pad_id() const { return source_vocab_->pad; }  ///< vocab.json's <pad>: MarianMTModel's decoder start
  int32_t eos_id() const { return source_vocab_->eos; }  ///< vocab.json's </s>
  int32_t unk_id() const { return source_vocab_->unk; }  ///< vocab.json's <unk>
  /// Entries of vocab.json: the model's vocab_size (the rows of its embeddings).
  int64_t vocab_size() const { return static_cast<int64_t>(source_vocab_->pieces.size()); }
  int64_t target_vocab_size() const { return static_cast<int64_t>(target_vocab_->pieces.size()); }
  bool separate_vocabs() const { return separate_vocabs_; }
  int64_t model_max_length() const { return model_max_length_; }
  /// The folder's clean_up_tokenization_spaces (true when tokenizer_config.json is silent).
  bool clean_up_tokenization_spaces() const { return clean_up_; }
  const std::string& source_lang() const { return source_lang_; }
  const std::string& target_lang() const { return target_lang_; }
  /// Language codes (">>ro<<") among vocab.json's entries, in id order; none with separate vocabularies.
  std::vector<std::string> supported_language_codes() const {
    std::vector<std::pair<int32_t, std::string>> codes;
    if (!separate_vocabs_)
      for (const auto& [piece, id] : source_vocab_->ids)
        if (piece.size() >= 4 && piece.starts_with(">>") && piece.ends_with("<<")) codes.emplace_back(id, piece);
    std::sort(codes.begin(), codes.end());
    std::vector<std::string> out;
    for (auto& c : codes) out.push_back(std::move(c.second));
    return out;
  }

  /// Writes the folder: source.spm and target.spm as they were read, vocab.json (and
  /// target_vocab.json) in id order, tokenizer_config.json (the one read, else one stating the
  /// settings in use). Each file goes to a temporary name first and is then renamed.
  void save(const std::filesystem::path& dir) const {
    const std::string vocab = source_vocab_->json_text();
    const std::string target_vocab = separate_vocabs_ ? target_vocab_->json_text() : std::string();
    const std::string config = config_.dump(2) + "\n";
    std::vector<std::pair<std::string, const std::string*>> files = {
        {"source.spm", source_bytes_.get()}, {"target.spm", target_bytes_.get()}, {"vocab.json", &vocab}};
    if (separate_vocabs_) files.emplace_back("target_vocab.json", &target_vocab);
    files.emplace_back("tokenizer_config.json", &config);
    marian_detail::write_files(dir, files);
  }

 private:
  friend MarianTokenizer train_marian_tokenizer(std::span<const std::string>, std::span<const std::string>,
                                                const SentencePieceTrainingOptions&, const std::filesystem::path&);

  /// The settings of tokenizer_config.json (the text when the folder has one).
  static MarianTokenizer build(const std::filesystem::path& dir, const std::optional<std::string>& config_text) {
    const std::filesystem::path file = dir / "tokenizer_config.json";
    MarianTokenizer t;
    if (config_text) {
      t.config_ = marian_detail::parse_json<nlohmann::ordered_json>(*config_text, file);
      if (!t.config_.is_object())
        throw std::runtime_error(marian_detail::where(file) + ": must be a JSON object, not " +
                                 std::string(t.config_.type_name()));
    }
    const auto& c = t.config_;
    const auto field = [&](const char* key, auto check, const char* type) -> const nlohmann::ordered_json* {
      const auto it = c.find(key);
      if (it == c.end() || it->is_null()) return nullptr;
      if (!check(*it)) throw std::runtime_error(marian_detail::where(file) + ": \"" + key + "\" must be " + type);
      return &*it;
    };
    const auto is_bool = [](const auto& j) { return j.is_boolean(); };
    const auto is_string = [](const auto& j) { return j.is_string(); };
    const auto is_number = [](const auto& j) { return j.is_number(); };
    if (const auto* j = field("separate_vocabs", is_bool, "true or false")) t.separate_vocabs_ = j->get<bool>();
    if (const auto* j = field("clean_up_tokenization_spaces", is_bool, "true or false")) t.clean_up_ = j->get<bool>();
    if (const auto* j = field("source_lang", is_string, "a string")) t.source_lang_ = j->get<std::string>();
    if (const auto* j = field("target_lang", is_string, "a string")) t.target_lang_ = j->get<std::string>();
    if (const auto* j = field("model_max_length", is_number, "a number")) {
      // transformers writes int(1e30) for "no limit"
      const double v = j->get<double>();
      t.model_max_length_ = v >= 9.2e18 ? INT64_MAX : j->is_number_integer() ? j->get<int64_t>() : static_cast<int64_t>(v);
    }
    t.eos_token_ = marian_detail::special_token(c, "eos_token", "</s>", file);
    t.unk_token_ = marian_detail::special_token(c, "unk_token", "<unk>", file);
    t.pad_token_ = marian_detail::special_token(c, "pad_token", "<pad>", file);
    if (!config_text) t.config_ = t.standard_config();
    return t;
  }

  /// tokenizer_config.json stating this tokenizer's settings (key order as Hugging Face writes them).
  nlohmann::ordered_json standard_config() const {
    nlohmann::ordered_json c = nlohmann::ordered_json::object();
    if (!source_lang_.empty()) c["source_lang"] = source_lang_;
    if (!target_lang_.empty()) c["target_lang"] = target_lang_;
    c["separate_vocabs"] = separate_vocabs_;
    c["model_max_length"] = model_max_length_;
    c["eos_token"] = eos_token_;
    c["unk_token"] = unk_token_;
    c["pad_token"] = pad_token_;
    c["clean_up_tokenization_spaces"] = clean_up_;
    c["tokenizer_class"] = "MarianTokenizer";  // lets AutoTokenizer pick MarianTokenizer without config.json
    return c;
  }

  void attach_models(const std::filesystem::path& dir) {
    source_model_ = marian_detail::load_model(*source_bytes_, dir / "source.spm");
    // one model object when both files hold the same model (train_marian_tokenizer's folders)
    target_model_ = *target_bytes_ == *source_bytes_ ? source_model_
                                                      : marian_detail::load_model(*target_bytes_, dir / "target.spm");
  }

  bool is_special(std::string_view token) const {
    return token == eos_token_ || token == unk_token_ || token == pad_token_;
  }

  /// Calls f(part, is_special_token) for the parts of `text` between special-token strings
  /// (leftmost first, the longest when two start at the same place), empty parts left out.
  template <class F>
  void split_specials(std::string_view text, F&& f) const {
    const std::string_view specials[] = {eos_token_, unk_token_, pad_token_};
    std::size_t start = 0;
    for (std::size_t i = 0; i < text.size();) {
      std::string_view hit;
      for (const auto s : specials)
        if (!s.empty() && s.size() > hit.size() && text.substr(i).starts_with(s)) hit = s;
      if (hit.empty()) {
        ++i;
        continue;
      }
      if (i > start) f(text.substr(start, i - start), false);
      f(hit, true);
      i += hit.size();
      start = i;
    }
    if (start < text.size()) f(text.substr(start), false);
  }

  std::vector<std::string> pieces(std::string_view text, const sentencepiece::SentencePieceProcessor& model) const {
    marian_detail::check_utf8(text, "the text");
    std::vector<std::string> out, cut;
    split_specials(text, [&](std::string_view part, bool special) {
      if (special) {
        out.emplace_back(part);
        return;
      }
      auto [code, rest] = marian_detail::split_language_code(part);
      if (!code.empty()) out.emplace_back(code);
      const auto status = model.Encode(rest, &cut);
      if (!status.ok()) throw std::runtime_error("addrop::text::MarianTokenizer: encoding failed: " + status.ToString());
      std::move(cut.begin(), cut.end(), std::back_inserter(out));
    });
    return out;
  }

  std::vector<int32_t> encode(std::string_view text, const sentencepiece::SentencePieceProcessor& model,
                              const marian_detail::Vocabulary& v, int64_t max_length) const {
    const auto tokens = pieces(text, model);
    std::vector<int32_t> ids;
    ids.reserve(tokens.size() + 1);
    for (const auto& t : tokens) ids.push_back(v.id_or_unk(t));  // special strings are vocab entries too
    if (max_length > 0 && static_cast<int64_t>(ids.size()) + 1 > max_length)
      ids.resize(static_cast<std::size_t>(max_length - 1));
    ids.push_back(v.eos);
    return ids;
  }

  MarianTokenizer() = default;

  std::shared_ptr<const std::string> source_bytes_, target_bytes_;
  std::shared_ptr<const sentencepiece::SentencePieceProcessor> source_model_, target_model_;
  std::shared_ptr<const marian_detail::Vocabulary> source_vocab_, target_vocab_;
  nlohmann::ordered_json config_ = nlohmann::ordered_json::object();
  bool separate_vocabs_ = false;
  bool clean_up_ = true;
  int64_t model_max_length_ = 512;
  std::string source_lang_, target_lang_;
  std::string eos_token_ = "</s>", unk_token_ = "<unk>", pad_token_ = "<pad>";
};

/// Trains ONE SentencePiece model on the source sentences followed by the target sentences
/// (one shared vocabulary, as for OPUS-MT's tied embeddings), and writes into out_dir a
/// folder that MarianTokenizer.from_pretrained loads: the model as both source.spm and
/// target.spm, vocab.json (</s> 0, <unk> 1, the model's pieces in its order, <pad> last, so
/// vocab.json has options.vocab_size entries) and tokenizer_config.json. Returns the tokenizer.
///
/// The model keeps spm_train's special pieces (unk 0, <s> 1, </s> 2, no pad), as OPUS-MT's
/// models do; their ids never reach the Marian model, which sees vocab.json's.
/// Deterministic: the sentences are handed over in memory (no file name enters the model)
/// and every sentence is used (no sampling), so the same text and options give the same
/// bytes; the number of threads is one of the options that matter. Empty sentences are
/// skipped by SentencePiece. Not to be called from two threads at once (SentencePiece's
/// trainer sets process-wide state, such as its log level).
/// Errors: std::invalid_argument for no text, invalid UTF-8 or a bad option, and a
/// vocab_size the text cannot support (more pieces than it yields, or fewer than its characters).
inline MarianTokenizer train_marian_tokenizer(std::span<const std::string> source_texts,
                                              std::span<const std::string> target_texts,
                                              const SentencePieceTrainingOptions& options,
                                              const std::filesystem::path& out_dir) {
  const std::string who = "addrop::text::train_marian_tokenizer: ";
  if (source_texts.empty() && target_texts.empty()) throw std::invalid_argument(who + "no training text");
  for (std::size_t i = 0; i < source_texts.size(); ++i)
    marian_detail::check_utf8(source_texts[i], "source text " + std::to_string(i));
  for (std::size_t i = 0; i < target_texts.size(); ++i)
    marian_detail::check_utf8(target_texts[i], "target text " + std::to_string(i));
  const auto& o = options;
  if (o.model_type != "unigram" && o.model_type != "bpe" && o.model_type != "char" && o.model_type != "word")
    throw std::invalid_argument(who + "model_type \"" + o.model_type + "\" is none of unigram, bpe, char, word");
  if (o.vocab_size < 4) throw std::invalid_argument(who + "vocab_size " + std::to_string(o.vocab_size) + " is below 4");
  if (o.num_threads < 1) throw std::invalid_argument(who + "num_threads must be at least 1");
  if (!(o.character_coverage > 0.0 && o.character_coverage <= 1.0))
    throw std::invalid_argument(who + "character_coverage must be in (0, 1]");
  if (o.model_max_length < 1) throw std::invalid_argument(who + "model_max_length must be at least 1");

  // Every key set here is recorded in the model; tests/reference/make_marian_tokenizer_cases.py
  // sets the same ones so that Python's training gives the same bytes.
  const std::unordered_map<std::string, std::string> args = {
      {"model_type", o.model_type},
      {"vocab_size", std::to_string(o.vocab_size)},
      {"character_coverage", marian_detail::number_text(o.character_coverage)},
      {"num_threads", std::to_string(o.num_threads)},
      {"normalization_rule_name", o.normalization_rule_name},
      {"unk_id", "0"},
      {"bos_id", "1"},
      {"eos_id", "2"},
      {"pad_id", "-1"},
      {"minloglevel", o.verbose ? "0" : "1"},  // consumed by the trainer, not stored
  };
  marian_detail::SpanSentences sentences(source_texts, target_texts);
  std::string model;
  const auto status = sentencepiece::SentencePieceTrainer::Train(args, &sentences, &model);
  if (!status.ok()) {
    const std::string message = status.ToString();
    const std::string size = "vocab_size " + std::to_string(o.vocab_size);
    if (message.find("Vocabulary size too high") != std::string::npos)
      throw std::invalid_argument(who + size + " is more than this training text supports (SentencePiece: " + message + ")");
    if (message.find("smaller than required_chars") != std::string::npos)
      throw std::invalid_argument(who + size + " is too small for the characters of this training text (SentencePiece: " +
                                  message + ")");
    throw std::invalid_argument(who + "SentencePiece could not train: " + message);
  }

  MarianTokenizer t;
  t.source_lang_ = o.source_lang;
  t.target_lang_ = o.target_lang;
  t.model_max_length_ = o.model_max_length;
  t.clean_up_ = false;  // SentencePiece detokenizes exactly: nothing to clean
  t.config_ = t.standard_config();
  t.source_bytes_ = t.target_bytes_ = std::make_shared<const std::string>(std::move(model));
  t.attach_models(out_dir);

  // vocab.json: OPUS-MT's layout (Marian's vocabulary: </s> 0, <unk> 1, pieces; <pad> added last)
  auto vocab = std::make_shared<marian_detail::Vocabulary>();
  const std::string file = (out_dir / "vocab.json").string();
  vocab->add(t.eos_token_, 0, file);
  vocab->add(t.unk_token_, 1, file);
  const auto& m = *t.source_model_;
  for (int i = 0; i < m.GetPieceSize(); ++i) {
    if (m.IsControl(i) || m.IsUnknown(i)) continue;  // the model's own <unk>, <s>, </s>
    const std::string& piece = m.IdToPiece(i);
    if (vocab->find(piece) >= 0 || t.is_special(piece)) continue;
    vocab->add(piece, static_cast<int32_t>(vocab->pieces.size()), file);
  }
  vocab->add(t.pad_token_, static_cast<int32_t>(vocab->pieces.size()), file);
  vocab->eos = 0;
  vocab->unk = 1;
  vocab->pad = static_cast<int32_t>(vocab->pieces.size()) - 1;
  t.source_vocab_ = t.target_vocab_ = std::move(vocab);

  t.save(out_dir);
  return t;
}

}  // namespace addrop::text
