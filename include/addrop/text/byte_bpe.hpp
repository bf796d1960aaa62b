#pragma once
/// @file byte_bpe.hpp
/// Byte-level BPE (RoBERTa, GPT-2) exactly as Hugging Face's tokenizers runs it:
/// ByteLevel pre-tokenizer (optional prefix space, the GPT-2 pattern through PCRE2 with
/// UTF + UCP and JIT, bytes mapped to printable characters) -> BPE merges by rank (results
/// cached per word) -> RobertaProcessing (<s> A </s></s> B </s>, type ids all 0, offsets
/// trimmed of the spaces a token starts or ends with).
/// Special-token strings in the text ("<s>", "</s>", "<mask>", ...) are taken out first
/// and become those tokens (text/special_tokens.hpp; <mask> also takes the whitespace
/// before it), unless split_special_tokens is set; the ByteLevel step then runs on each
/// stretch of text between them. Offsets are byte ranges of the original UTF-8 text.
#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>

#include <array>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "addrop/text/special_tokens.hpp"
#include "addrop/text/tokenizer_base.hpp"
#include "addrop/text/unicode.hpp"

namespace addrop::text {

/// Settings of a byte-level BPE tokenizer (tokenizer_config.json's names in the comments).
struct ByteBpeOptions {
  bool add_prefix_space = false;  ///< add_prefix_space (roberta-base: false)
  bool trim_offsets = true;       ///< trim_offsets
  std::string cls_token = "<s>";
  std::string sep_token = "</s>";
  std::string pad_token = "<pad>";
  std::string unk_token = "<unk>";
  std::string mask_token = "<mask>";
  std::string bos_token = "<s>";
  std::string eos_token = "</s>";
  int64_t model_max_length = 512;
  std::size_t cache_capacity = 1 << 20;  ///< words whose BPE result is kept
  /// split_special_tokens: false (Hugging Face's default) reads "<s>", "</s>", "<pad>",
  /// "<unk>", "<mask>" in the text as those tokens; true tokenizes them as ordinary text.
  bool split_special_tokens = false;
  bool mask_lstrip = true;  ///< mask_token's lstrip: "a <mask>" is "a" + "<mask>", as in roberta-base
};

namespace detail {

/// GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the other 68 bytes
/// to U+0100.. in order. Index: byte; value: the character's UTF-8.
inline const std::array<std::string, 256>& byte_chars() {
  static const std::array<std::string, 256> table = [] {
    std::array<std::string, 256> t;
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      unicode::append_utf8(t[static_cast<std::size_t>(b)], static_cast<char32_t>(printable ? b : next++));
    }
    return t;
  }();
  return table;
}

/// The GPT-2 pre-tokenization pattern, compiled once (PCRE2, UTF + UCP, JIT when available).
class Gpt2Pattern {
 public:
  static constexpr const char* pattern =
      R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
  Gpt2Pattern() {
    int err = 0;
    PCRE2_SIZE where = 0;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern), PCRE2_ZERO_TERMINATED,
                          PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &where, nullptr);
    if (!code_) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof msg);
      throw std::runtime_error(std::string("addrop::text: PCRE2 cannot compile the GPT-2 pattern: ") +
                               reinterpret_cast<const char*>(msg));
    }
    jit_ = pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE) == 0;
  }
  ~Gpt2Pattern() { pcre2_code_free(code_); }
  Gpt2Pattern(const Gpt2Pattern&) = delete;
  Gpt2Pattern& operator=(const Gpt2Pattern&) = delete;

  /// Calls f(begin, end) for each piece of `s`, in order, covering all of it (bytes of
  /// invalid UTF-8, which the pattern cannot match, become pieces of their own).
  template <class F>
  void split(std::string_view s, F&& f) const {
    struct Md {
      pcre2_match_data* p;
      ~Md() { pcre2_match_data_free(p); }
    } md{pcre2_match_data_create_from_pattern(code_, nullptr)};
    const auto subject = reinterpret_cast<PCRE2_SPTR>(s.data());
    std::size_t at = 0;
    while (at < s.size()) {
      const int rc = jit_ ? pcre2_jit_match(code_, subject, s.size(), at, 0, md.p, nullptr)
                          : pcre2_match(code_, subject, s.size(), at, 0, md.p, nullptr);
      if (rc < 0) {
        if (rc != PCRE2_ERROR_NOMATCH) throw std::runtime_error("addrop::text: PCRE2 match error " + std::to_string(rc));
        f(at, s.size());
        return;
      }
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.p);
      if (ov[0] > at) f(at, static_cast<std::size_t>(ov[0]));
      if (ov[1] == ov[0]) {  // cannot happen with this pattern; never loop forever
        f(ov[0], ov[0] + 1);
        at = ov[0] + 1;
        continue;
      }
      f(static_cast<std::size_t>(ov[0]), static_cast<std::size_t>(ov[1]));
      at = ov[1];
    }
  }

 private:
  pcre2_code* code_ = nullptr;
  bool jit_ = false;
};

}  // namespace detail

class ByteBpeTokenizer final : public Tokenizer {
 public:
  /// Reads vocab.json ({"token": id}) and merges.txt ("a b" per line, by rank; a first
  /// line "#version..." is skipped).
  ByteBpeTokenizer(const std::filesystem::path& vocab_json, const std::filesystem::path& merges_txt,
                   ByteBpeOptions options = {})
      : opt_(std::move(options)) {
    read_vocab(detail::parse_json(vocab_json), vocab_json.string());
    const std::string text = detail::read_file(merges_txt);
    std::size_t pos = 0;
    int line_no = 0;
    while (pos < text.size()) {
      std::size_t nl = text.find('\n', pos);
      if (nl == std::string::npos) nl = text.size();
      std::string_view line(text.data() + pos, nl - pos);
      pos = nl + 1;
      ++line_no;
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.starts_with("#version")) continue;
      const std::string where = merges_txt.string() + ":" + std::to_string(line_no);
      if (const char* wrong = merge_line_error(line))
        throw std::runtime_error("addrop::text: " + where + ": a merge must be two tokens separated by one space, got '" +
                                 std::string(line) + "' (" + wrong + ")");
      const auto sp = line.find(' ');
      add_merge(line.substr(0, sp), line.substr(sp + 1), where);
    }
    init(vocab_json.string());
  }

  /// From a tokenizer.json whose "model" is a BPE model (merges as "a b" strings or [a, b]).
  /// A named function, not a constructor: a (json, string) constructor also accepted two
  /// file names as strings, and read the vocab.json's name as a JSON document.
  static std::unique_ptr<ByteBpeTokenizer> from_tokenizer_json(const nlohmann::json& tokenizer_json,
                                                               const std::string& source, ByteBpeOptions options = {}) {
    return std::unique_ptr<ByteBpeTokenizer>(new ByteBpeTokenizer(FromJson{}, tokenizer_json, source, std::move(options)));
  }

  /// Reads a checkpoint folder: vocab.json + merges.txt (or tokenizer.json),
  /// tokenizer_config.json (add_prefix_space, trim_offsets, model_max_length, special
  /// tokens), special_tokens_map.json, tokenizer.json's pre_tokenizer / post_processor.
  static std::unique_ptr<ByteBpeTokenizer> from_folder(const std::filesystem::path& dir,
                                                         const TokenizerOverrides& overrides = {}) {
    ByteBpeOptions o;
    const auto config = detail::parse_json_if_exists(dir / "tokenizer_config.json");
    const auto specials = detail::parse_json_if_exists(dir / "special_tokens_map.json");
    const auto tj = detail::parse_json_if_exists(dir / "tokenizer.json");
    detail::read_special_tokens(config, specials,
                                {{"cls_token", &o.cls_token}, {"sep_token", &o.sep_token}, {"pad_token", &o.pad_token},
                                 {"unk_token", &o.unk_token}, {"mask_token", &o.mask_token}, {"bos_token", &o.bos_token},
                                 {"eos_token", &o.eos_token}});
    if (config) {
      detail::read_if(*config, "add_prefix_space", o.add_prefix_space);
      detail::read_if(*config, "trim_offsets", o.trim_offsets);
      detail::read_if(*config, "split_special_tokens", o.split_special_tokens);
      detail::read_max_length(*config, o.model_max_length);
    }
    // The mask token's lstrip, where a file writes it as {"content": ..., "lstrip": ...}.
    for (const auto* j : {config ? &*config : nullptr, specials ? &*specials : nullptr})
      if (j && j->contains("mask_token") && j->at("mask_token").is_object())
        detail::read_if(j->at("mask_token"), "lstrip", o.mask_lstrip);
    if (tj && tj->contains("added_tokens") && tj->at("added_tokens").is_array())
      for (const auto& t : tj->at("added_tokens"))
        if (t.is_object() && t.value("content", "") == o.mask_token) detail::read_if(t, "lstrip", o.mask_lstrip);
    if (tj) {
      if (tj->contains("pre_tokenizer") && tj->at("pre_tokenizer").is_object() &&
          tj->at("pre_tokenizer").value("type", "") == "ByteLevel")
        detail::read_if(tj->at("pre_tokenizer"), "add_prefix_space", o.add_prefix_space);
      if (tj->contains("post_processor") && tj->at("post_processor").is_object())
        detail::read_if(tj->at("post_processor"), "trim_offsets", o.trim_offsets);
    }
    if (overrides.split_special_tokens) o.split_special_tokens = *overrides.split_special_tokens;
    if (std::filesystem::exists(dir / "vocab.json") && std::filesystem::exists(dir / "merges.txt"))
      return std::make_unique<ByteBpeTokenizer>(dir / "vocab.json", dir / "merges.txt", std::move(o));
    if (tj) return from_tokenizer_json(*tj, (dir / "tokenizer.json").string(), std::move(o));
    throw std::runtime_error("addrop::text: " + dir.string() + ": neither vocab.json + merges.txt nor tokenizer.json");
  }

  const ByteBpeOptions& options() const { return opt_; }

  Encoding encode(std::string_view first, std::optional<std::string_view> second = std::nullopt,
                  int64_t max_length = 0) const override {
    detail::Pieces a;
    append_pieces(first, -1, opt_.add_prefix_space, a);
    if (!second) {
      const auto cut = detail::truncate_longest_first(a, nullptr, max_length, tmpl_.added(false));
      return detail::assemble(std::move(a), nullptr, tmpl_, cut);
    }
    detail::Pieces b;
    append_pieces(*second, -1, opt_.add_prefix_space, b);
    const auto cut = detail::truncate_longest_first(a, &b, max_length, tmpl_.added(true));
    return detail::assemble(std::move(a), &b, tmpl_, cut);
  }

  /// Every word gets a prefix space (Hugging Face's is_split_into_words=True with
  /// add_prefix_space=True), whatever add_prefix_space says.
  Encoding encode_words(const std::vector<std::string>& words, int64_t max_length = 0) const override {
    detail::Pieces a;
    for (std::size_t w = 0; w < words.size(); ++w) append_pieces(words[w], static_cast<int32_t>(w), true, a);
    const auto cut = detail::truncate_longest_first(a, nullptr, max_length, tmpl_.added(false));
    return detail::assemble(std::move(a), nullptr, tmpl_, cut);
  }

  std::vector<std::string> tokenize(std::string_view text) const override {
    detail::Pieces a;
    append_pieces(text, -1, opt_.add_prefix_space, a);
    return std::move(a.tokens);
  }

  /// Only the ids of `text`'s tokens, no special tokens (the fast path of addrop-tokenize).
  void encode_ids(std::string_view text, std::vector<int32_t>& out) const {
    std::string buf;
    std::vector<Sym> syms;
    specials_.split(
        text, opt_.split_special_tokens,
        [&](std::size_t from, std::size_t to) {
          const std::string_view s = with_prefix(text.substr(from, to - from), opt_.add_prefix_space, buf);
          pattern_.split(s, [&](std::size_t b, std::size_t e) {
            const auto& r = bpe(s.substr(b, e - b), syms);
            for (const auto& sym : r) out.push_back(sym.id);
          });
        },
        [&](const detail::SpecialToken& t, std::size_t, std::size_t) { out.push_back(t.id); });
  }

  int32_t token_to_id(std::string_view token) const override { return vocab_.find(token); }
  std::string_view id_to_token(int32_t id) const override { return vocab_.at(id); }
  int64_t vocab_size() const override { return static_cast<int64_t>(vocab_.tokens.size()); }
  int32_t pad_id() const override { return pad_id_; }
  int32_t unk_id() const override { return unk_id_; }
  int32_t cls_id() const override { return tmpl_.cls_id; }
  int32_t sep_id() const override { return tmpl_.sep_id; }
  int32_t mask_id() const override { return mask_id_; }
  int64_t model_max_length() const override { return opt_.model_max_length; }
  std::string kind() const override { return "byte_bpe"; }
  std::size_t merges_count() const { return merges_list_.size(); }

  /// Writes vocab.json, merges.txt, tokenizer_config.json and special_tokens_map.json into
  /// `dir` (created if missing), as transformers' RobertaTokenizer.save_pretrained does.
  void save(const std::filesystem::path& dir) const override {
    std::filesystem::create_directories(dir);
    // By id, as Hugging Face writes it (an ordered_json would insert in quadratic time).
    std::string v = "{";
    for (std::size_t id = 0; id < vocab_.tokens.size(); ++id) {
      if (vocab_.find(vocab_.tokens[id]) != static_cast<int32_t>(id)) continue;  // unused id
      if (v.size() > 1) v += ',';
      v += nlohmann::json(vocab_.tokens[id]).dump();
      v += ':';
      v += std::to_string(id);
    }
    v += "}\n";
    detail::write_file(dir / "vocab.json", v);
    std::string m = "#version: 0.2\n";
    for (const auto& [a, b] : merges_list_) {
      m += vocab_.tokens[static_cast<std::size_t>(a)];
      m += ' ';
      m += vocab_.tokens[static_cast<std::size_t>(b)];
      m += '\n';
    }
    detail::write_file(dir / "merges.txt", m);
    // The mask token as transformers writes an AddedToken, so that its lstrip survives.
    const nlohmann::json mask = {{"content", opt_.mask_token}, {"lstrip", opt_.mask_lstrip}, {"normalized", false},
                                 {"rstrip", false}, {"single_word", false}};
    nlohmann::json specials = {{"bos_token", opt_.bos_token}, {"eos_token", opt_.eos_token},
                               {"unk_token", opt_.unk_token}, {"sep_token", opt_.sep_token},
                               {"pad_token", opt_.pad_token}, {"cls_token", opt_.cls_token},
                               {"mask_token", mask}};
    nlohmann::json config = specials;
    config["tokenizer_class"] = "RobertaTokenizer";
    config["add_prefix_space"] = opt_.add_prefix_space;
    config["trim_offsets"] = opt_.trim_offsets;
    config["split_special_tokens"] = opt_.split_special_tokens;
    config["model_max_length"] = opt_.model_max_length;
    detail::write_json(dir / "tokenizer_config.json", config);
    detail::write_json(dir / "special_tokens_map.json", specials);
  }

 private:
  struct FromJson {};
  ByteBpeTokenizer(FromJson, const nlohmann::json& tokenizer_json, const std::string& source, ByteBpeOptions options)
      : opt_(std::move(options)) {
    if (!tokenizer_json.contains("model") || tokenizer_json.at("model").value("type", "") != "BPE")
      throw std::runtime_error("addrop::text: " + source + ": model is not a BPE model");
    const auto& m = tokenizer_json.at("model");
    if (!m.contains("vocab") || !m.contains("merges"))
      throw std::runtime_error("addrop::text: " + source + ": the BPE model needs vocab and merges");
    read_vocab(m.at("vocab"), source + " (model.vocab)");
    std::size_t k = 0;
    for (const auto& e : m.at("merges")) {
      const std::string where = source + ": model.merges[" + std::to_string(k++) + "]";
      if (e.is_string()) {
        const auto s = e.get<std::string>();
        if (const char* wrong = merge_line_error(s))
          throw std::runtime_error("addrop::text: " + where + ": a merge must be two tokens separated by one space, got '" + s +
                                   "' (" + wrong + ")");
        const auto sp = s.find(' ');
        add_merge(std::string_view(s).substr(0, sp), std::string_view(s).substr(sp + 1), where);
      } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
        add_merge(e[0].get<std::string>(), e[1].get<std::string>(), where);
      } else {
        throw std::runtime_error("addrop::text: " + where + ": a merge must be \"a b\" or [\"a\", \"b\"]");
      }
    }
    init(source);
  }

  struct Sym {
    int32_t id;
    uint32_t bytes;  // how many bytes of the piece this token covers
  };
  struct Merge {
    int32_t rank;
    int32_t id;
  };
  static uint64_t key(int32_t a, int32_t b) { return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b); }

  void read_vocab(const nlohmann::json& j, const std::string& where) {
    if (!j.is_object()) throw std::runtime_error("addrop::text: " + where + ": the vocabulary must be a JSON object {token: id}");
    for (const auto& [tok, id] : j.items()) {
      if (!id.is_number_integer())
        throw std::runtime_error("addrop::text: " + where + ": the id of '" + tok + "' is not an integer");
      vocab_.add(tok, id.get<int32_t>());
    }
    if (vocab_.tokens.empty()) throw std::runtime_error("addrop::text: " + where + ": empty vocabulary");
    vocab_source_ = where;
  }

  /// What is wrong with a merge "a b", or nullptr when nothing is.
  static const char* merge_line_error(std::string_view line) {
    const auto sp = line.find(' ');
    if (line.empty()) return "an empty line";
    if (sp == std::string_view::npos) return "no space";
    if (line.find(' ', sp + 1) != std::string_view::npos) return "more than one space";
    if (sp == 0) return "the first token is empty";
    if (sp + 1 == line.size()) return "the second token is empty";
    return nullptr;
  }

  void add_merge(std::string_view a, std::string_view b, const std::string& where) {
    const int32_t ia = vocab_.find(a), ib = vocab_.find(b);
    std::string joined(a);
    joined += b;
    const int32_t ij = vocab_.find(joined);
    if (ia < 0 || ib < 0 || ij < 0)
      throw std::runtime_error("addrop::text: " + where + ": the merge '" + std::string(a) + " " + std::string(b) +
                               "' uses a token missing from the vocabulary of " + vocab_source_ + " ('" +
                               (ia < 0 ? std::string(a) : ib < 0 ? std::string(b) : joined) + "')");
    const auto rank = static_cast<int32_t>(merges_list_.size());
    merges_list_.emplace_back(ia, ib);
    merges_.emplace(key(ia, ib), Merge{rank, ij});  // a repeated merge keeps its first rank
  }

  void init(const std::string& source) {
    const auto& chars = detail::byte_chars();
    for (int b = 0; b < 256; ++b) byte_id_[static_cast<std::size_t>(b)] = vocab_.find(chars[static_cast<std::size_t>(b)]);
    unk_id_ = vocab_.find(opt_.unk_token);
    pad_id_ = vocab_.find(opt_.pad_token);
    mask_id_ = vocab_.find(opt_.mask_token);
    const int32_t cls = vocab_.find(opt_.cls_token), sep = vocab_.find(opt_.sep_token);
    if (cls < 0 || sep < 0)
      throw std::runtime_error("addrop::text: " + source + ": the special token '" + (cls < 0 ? opt_.cls_token : opt_.sep_token) +
                               "' is not in the vocabulary");
    tmpl_ = {cls, opt_.cls_token, sep, opt_.sep_token, true, 0};
    // transformers' RobertaTokenizer special tokens: all matched as written, <mask> with lstrip.
    std::vector<detail::SpecialToken> specials;
    for (const auto* t : {&opt_.bos_token, &opt_.pad_token, &opt_.eos_token, &opt_.unk_token, &opt_.cls_token,
                          &opt_.sep_token})
      specials.push_back({*t, vocab_.find(*t), false});
    specials.push_back({opt_.mask_token, mask_id_, opt_.mask_lstrip});
    specials_ = detail::SpecialTokenSplitter(specials);
  }

  /// `at` moved forward by `n` characters of `text`, no further than `limit`.
  static int64_t chars_forward(std::string_view text, int64_t at, std::size_t n, int64_t limit) {
    for (; n > 0 && at < limit; --n) at += unicode::decode(text, static_cast<std::size_t>(at)).len;
    return std::min(at, limit);
  }

  /// `at` moved back by `n` characters of `text`; nullopt when fewer than `n` lie before it
  /// (then Hugging Face leaves the end as it is).
  static std::optional<int64_t> chars_back(std::string_view text, int64_t at, std::size_t n) {
    for (; n > 0; --n) {
      if (at <= 0) return std::nullopt;
      do --at;
      while (at > 0 && (static_cast<unsigned char>(text[static_cast<std::size_t>(at)]) & 0xC0) == 0x80);
    }
    return at;
  }

  static std::string_view with_prefix(std::string_view text, bool prefix, std::string& buf) {
    if (!prefix || text.empty() || text.front() == ' ') return text;
    buf.reserve(text.size() + 1);
    buf.assign(1, ' ');
    buf.append(text);
    return buf;
  }

  /// BPE of one piece (raw bytes), through the cache. `work` is scratch space; the result
  /// refers to the cache or to `work`.
  const std::vector<Sym>& bpe(std::string_view piece, std::vector<Sym>& work) const {
    auto& shard = shards_[detail::StringHash{}(piece) % kShards];
    {
      std::lock_guard lock(shard.mutex);
      const auto it = shard.map.find(piece);
      if (it != shard.map.end()) {
        work = it->second;
        return work;
      }
    }
    work.clear();
    for (const char c : piece) {
      const int32_t id = byte_id_[static_cast<unsigned char>(c)];
      if (id >= 0) work.push_back({id, 1});
      else if (unk_id_ >= 0) work.push_back({unk_id_, 1});
      else if (!work.empty()) work.back().bytes += 1;  // no unk: the byte is dropped, its span kept
    }
    while (work.size() > 1) {
      int32_t best = std::numeric_limits<int32_t>::max(), best_id = -1;
      int32_t left = -1, right = -1;
      for (std::size_t i = 0; i + 1 < work.size(); ++i) {
        const auto it = merges_.find(key(work[i].id, work[i + 1].id));
        if (it != merges_.end() && it->second.rank < best) {
          best = it->second.rank;
          best_id = it->second.id;
          left = work[i].id;
          right = work[i + 1].id;
        }
      }
      if (best_id < 0) break;
      std::size_t out = 0;
      for (std::size_t i = 0; i < work.size();) {
        if (i + 1 < work.size() && work[i].id == left && work[i + 1].id == right) {
          work[out++] = {best_id, work[i].bytes + work[i + 1].bytes};
          i += 2;
        } else {
          work[out++] = work[i++];
        }
      }
      work.resize(out);
    }
    {
      std::lock_guard lock(shard.mutex);
      if (shard.map.size() < opt_.cache_capacity / kShards + 1) shard.map.emplace(std::string(piece), work);
    }
    return work;
  }

  void append_pieces(std::string_view text, int32_t word, bool prefix, detail::Pieces& out) const {
    const std::size_t seq_start = out.size();
    std::vector<Sym> work;
    std::string buf, tok;
    specials_.split(
        text, opt_.split_special_tokens,
        [&](std::size_t from, std::size_t to) { append_text(text, from, to, word, prefix, seq_start, out, work, buf, tok); },
        [&](const detail::SpecialToken& t, std::size_t b, std::size_t e) {
          // The whitespace an lstrip token took is in its range; process_offsets trims it
          // like the spaces of any token.
          auto ob = static_cast<int64_t>(b);
          const std::size_t content = e - t.content.size();
          if (opt_.trim_offsets && content > b) {
            std::size_t lead = 0;
            for (std::size_t k = b; k < content; ++lead) k += static_cast<std::size_t>(unicode::decode(text, k).len);
            const bool is_first = out.size() == seq_start || b == 0;
            if (!(is_first && prefix && lead == 1)) ob = static_cast<int64_t>(content);
          }
          out.push(t.id, t.content, ob, static_cast<int64_t>(e), word);
        });
  }

  /// The ByteLevel pre-tokenizer and BPE on text[from, to), a stretch between special
  /// tokens; a prefix space is added to each stretch, as Hugging Face adds it to each split.
  void append_text(std::string_view text, std::size_t from, std::size_t to, int32_t word, bool prefix,
                   std::size_t seq_start, detail::Pieces& out, std::vector<Sym>& work, std::string& buf,
                   std::string& tok) const {
    const std::string_view part = text.substr(from, to - from);
    const std::string_view s = with_prefix(part, prefix, buf);
    const std::size_t shift = s.size() - part.size();  // 1 when a space was added
    const auto& chars = detail::byte_chars();
    const auto lo = static_cast<int64_t>(from), hi = static_cast<int64_t>(to);
    pattern_.split(s, [&](std::size_t pb, std::size_t pe) {
      const auto& syms = bpe(s.substr(pb, pe - pb), work);
      std::size_t at = pb;
      for (const auto& sym : syms) {
        const std::size_t tb = at, te = at + sym.bytes;
        at = te;
        // Original byte range, widened to whole characters: the bytes of one character
        // split over tokens give each the character. The added space stands for the
        // stretch's first character, as Hugging Face's NormalizedString::prepend aligns it.
        int64_t ob = lo + (tb >= shift ? static_cast<int64_t>(tb - shift) : 0);
        int64_t oe = lo + (te > shift ? static_cast<int64_t>(te - shift) : 0);
        if (te == shift) oe = std::min(hi, lo + unicode::decode(text, from).len);
        while (ob > lo && (static_cast<unsigned char>(text[static_cast<std::size_t>(ob)]) & 0xC0) == 0x80) --ob;
        while (oe < hi && (static_cast<unsigned char>(text[static_cast<std::size_t>(oe)]) & 0xC0) == 0x80) ++oe;
        if (opt_.trim_offsets) {  // tokenizers' byte_level process_offsets
          std::size_t lead = 0, trail = 0;
          while (tb + lead < te && s[tb + lead] == ' ') ++lead;
          while (te - trail > tb && s[te - trail - 1] == ' ') ++trail;
          // Hugging Face's test: the sequence's first token, or one at offset 0. A later
          // stretch's added space is trimmed like a space of the text (as Hugging Face does).
          const bool is_first = out.size() == seq_start || ob == 0;
          if (lead > 0 && !(is_first && prefix && lead == 1)) ob = chars_forward(text, ob, lead, oe);
          // Hugging Face moves by characters: the added space may stand for a wider one.
          if (trail > 0) {
            if (const auto back = chars_back(text, oe, trail)) oe = std::max(*back, ob);
          }
        }
        tok.clear();
        if (sym.id >= 0 && static_cast<std::size_t>(sym.id) < vocab_.tokens.size()) tok = vocab_.tokens[static_cast<std::size_t>(sym.id)];
        else for (std::size_t k = tb; k < te; ++k) tok += chars[static_cast<unsigned char>(s[k])];
        out.push(sym.id, tok, ob, oe, word);
      }
    });
  }

  static constexpr std::size_t kShards = 16;
  struct Shard {
    std::mutex mutex;
    std::unordered_map<std::string, std::vector<Sym>, detail::StringHash, std::equal_to<>> map;
  };

  ByteBpeOptions opt_;
  detail::Vocab vocab_;
  std::string vocab_source_;  // the file the vocabulary came from, for error messages
  detail::SpecialTokenSplitter specials_;
  std::unordered_map<uint64_t, Merge> merges_;
  std::vector<std::pair<int32_t, int32_t>> merges_list_;
  std::array<int32_t, 256> byte_id_{};
  detail::Template tmpl_{};
  int32_t unk_id_ = -1, pad_id_ = -1, mask_id_ = -1;
  detail::Gpt2Pattern pattern_;
  mutable std::array<Shard, kShards> shards_;
};

}  // namespace addrop::text
