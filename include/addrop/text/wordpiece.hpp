#pragma once
/// @file wordpiece.hpp
/// WordPiece (BERT, ELECTRA) exactly as Hugging Face's tokenizers runs it:
/// BertNormalizer (clean text, CJK characters spaced, accents stripped = NFD without Mn,
/// lower-casing) -> BertPreTokenizer (split on whitespace, every punctuation character a
/// word) -> WordPiece (greedy longest match first, "##" continuation, words longer than
/// 100 characters -> [UNK]) -> [CLS] A [SEP] (B [SEP]), type ids 0 / 1.
/// Special-token strings in the text ("[CLS]", "[SEP]", "[MASK]", ...) are taken out
/// first, on the raw text, and become those tokens (text/special_tokens.hpp), unless
/// split_special_tokens is set. Offsets are byte ranges of the original UTF-8 text.
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "addrop/text/special_tokens.hpp"
#include "addrop/text/tokenizer_base.hpp"
#include "addrop/text/unicode.hpp"

namespace addrop::text {

/// Settings of a WordPiece tokenizer (tokenizer_config.json's names in the comments).
struct WordPieceOptions {
  bool lower_case = true;                    ///< do_lower_case
  std::optional<bool> strip_accents;         ///< strip_accents; unset: same as lower_case
  bool tokenize_chinese_chars = true;        ///< tokenize_chinese_chars
  bool clean_text = true;                    ///< drop controls, U+0000, U+FFFD; whitespace -> ' '
  int max_input_chars_per_word = 100;        ///< longer words become [UNK]
  std::string continuing_subword_prefix = "##";
  std::string unk_token = "[UNK]";
  std::string cls_token = "[CLS]";
  std::string sep_token = "[SEP]";
  std::string pad_token = "[PAD]";
  std::string mask_token = "[MASK]";
  int64_t model_max_length = 512;
  /// split_special_tokens: false (Hugging Face's default) reads "[CLS]", "[SEP]", "[MASK]",
  /// "[PAD]", "[UNK]" in the text as those tokens; true tokenizes them as ordinary text.
  bool split_special_tokens = false;
};

class WordPieceTokenizer final : public Tokenizer {
 public:
  /// Reads a vocab.txt (one token per line, the line number is the id).
  explicit WordPieceTokenizer(const std::filesystem::path& vocab_txt, WordPieceOptions options = {})
      : opt_(std::move(options)) {
    const std::string text = detail::read_file(vocab_txt);
    int32_t id = 0;
    std::size_t pos = 0;
    while (pos < text.size()) {
      std::size_t nl = text.find('\n', pos);
      if (nl == std::string::npos) nl = text.size();
      std::string_view line(text.data() + pos, nl - pos);
      while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.remove_suffix(1);
      vocab_.add(std::string(line), id++);
      pos = nl + 1;
    }
    if (id == 0) throw std::runtime_error("addrop::text: " + vocab_txt.string() + ": empty vocabulary");
    init(vocab_txt.string());
  }

  /// From a token -> id map (tokenizer.json's "model.vocab").
  WordPieceTokenizer(detail::Vocab vocab, WordPieceOptions options, const std::string& source)
      : opt_(std::move(options)), vocab_(std::move(vocab)) {
    init(source);
  }

  /// Reads a checkpoint folder: vocab.txt (or tokenizer.json's model), tokenizer_config.json,
  /// special_tokens_map.json, tokenizer.json's normalizer. Without a tokenizer_config.json,
  /// a vocabulary holding upper-case words (outside [..] tokens) means a cased model.
  static std::unique_ptr<WordPieceTokenizer> from_folder(const std::filesystem::path& dir,
                                                           const TokenizerOverrides& overrides = {}) {
    WordPieceOptions o;
    const auto config = detail::parse_json_if_exists(dir / "tokenizer_config.json");
    const auto specials = detail::parse_json_if_exists(dir / "special_tokens_map.json");
    const auto tj = detail::parse_json_if_exists(dir / "tokenizer.json");
    detail::read_special_tokens(config, specials,
                                {{"unk_token", &o.unk_token}, {"cls_token", &o.cls_token}, {"sep_token", &o.sep_token},
                                 {"pad_token", &o.pad_token}, {"mask_token", &o.mask_token}});
    if (config) {
      detail::read_if(*config, "do_lower_case", o.lower_case);
      if (config->contains("strip_accents") && config->at("strip_accents").is_boolean())
        o.strip_accents = config->at("strip_accents").get<bool>();
      detail::read_if(*config, "tokenize_chinese_chars", o.tokenize_chinese_chars);
      detail::read_if(*config, "split_special_tokens", o.split_special_tokens);
      detail::read_max_length(*config, o.model_max_length);
    }
    if (tj && tj->contains("normalizer") && tj->at("normalizer").is_object()) {
      const auto& n = tj->at("normalizer");
      if (n.value("type", "") == "BertNormalizer") {
        detail::read_if(n, "lowercase", o.lower_case);
        detail::read_if(n, "handle_chinese_chars", o.tokenize_chinese_chars);
        detail::read_if(n, "clean_text", o.clean_text);
        if (n.contains("strip_accents") && n.at("strip_accents").is_boolean())
          o.strip_accents = n.at("strip_accents").get<bool>();
        else o.strip_accents.reset();
      }
    }
    if (tj && tj->contains("model") && tj->at("model").is_object()) {
      const auto& m = tj->at("model");
      detail::read_if(m, "max_input_chars_per_word", o.max_input_chars_per_word);
      detail::read_if(m, "continuing_subword_prefix", o.continuing_subword_prefix);
      detail::read_if(m, "unk_token", o.unk_token);
    }
    if (overrides.split_special_tokens) o.split_special_tokens = *overrides.split_special_tokens;
    if (std::filesystem::exists(dir / "vocab.txt")) {
      if (!config && !tj) o.lower_case = !has_cased_words(dir / "vocab.txt");
      return std::make_unique<WordPieceTokenizer>(dir / "vocab.txt", std::move(o));
    }
    if (tj) {
      const auto file = (dir / "tokenizer.json").string();
      const auto& m = tj->at("model");
      if (m.value("type", "") != "WordPiece" || !m.contains("vocab") || !m.at("vocab").is_object())
        throw std::runtime_error("addrop::text: " + file + ": model is not a WordPiece model with a vocab object");
      detail::Vocab v;
      for (const auto& [tok, id] : m.at("vocab").items()) v.add(tok, id.get<int32_t>());
      return std::make_unique<WordPieceTokenizer>(std::move(v), std::move(o), file);
    }
    throw std::runtime_error("addrop::text: " + dir.string() + ": neither vocab.txt nor tokenizer.json");
  }

  const WordPieceOptions& options() const { return opt_; }

  Encoding encode(std::string_view first, std::optional<std::string_view> second = std::nullopt,
                  int64_t max_length = 0) const override {
    detail::Pieces a = pieces(first, -1);
    if (!second) {
      const auto cut = detail::truncate_longest_first(a, nullptr, max_length, tmpl_.added(false));
      return detail::assemble(std::move(a), nullptr, tmpl_, cut);
    }
    detail::Pieces b = pieces(*second, -1);
    const auto cut = detail::truncate_longest_first(a, &b, max_length, tmpl_.added(true));
    return detail::assemble(std::move(a), &b, tmpl_, cut);
  }

  Encoding encode_words(const std::vector<std::string>& words, int64_t max_length = 0) const override {
    detail::Pieces a;
    Scratch s;
    for (std::size_t w = 0; w < words.size(); ++w) append_pieces(words[w], static_cast<int32_t>(w), a, s);
    const auto cut = detail::truncate_longest_first(a, nullptr, max_length, tmpl_.added(false));
    return detail::assemble(std::move(a), nullptr, tmpl_, cut);
  }

  std::vector<std::string> tokenize(std::string_view text) const override { return pieces(text, -1).tokens; }

  /// Only the ids of `text`'s tokens, no special tokens (the fast path of addrop-tokenize).
  void encode_ids(std::string_view text, std::vector<int32_t>& out) const {
    Scratch s;
    specials_.split(
        text, opt_.split_special_tokens,
        [&](std::size_t from, std::size_t to) {
          normalize(text, from, to, s);
          split_words(s, [&](std::size_t b, std::size_t e) { wordpiece(s, b, e, [&](int32_t id, int64_t, int64_t) { out.push_back(id); }); });
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
  std::string kind() const override { return "wordpiece"; }

  /// Writes vocab.txt, tokenizer_config.json and special_tokens_map.json into `dir`
  /// (created if missing), as transformers' BertTokenizer.save_pretrained does.
  void save(const std::filesystem::path& dir) const override {
    std::filesystem::create_directories(dir);
    std::string v;
    for (const auto& t : vocab_.tokens) {
      v += t;
      v += '\n';
    }
    detail::write_file(dir / "vocab.txt", v);
    nlohmann::json specials = {{"unk_token", opt_.unk_token}, {"sep_token", opt_.sep_token},
                               {"pad_token", opt_.pad_token}, {"cls_token", opt_.cls_token},
                               {"mask_token", opt_.mask_token}};
    nlohmann::json config = specials;
    config["tokenizer_class"] = "BertTokenizer";
    config["do_lower_case"] = opt_.lower_case;
    config["strip_accents"] = opt_.strip_accents ? nlohmann::json(*opt_.strip_accents) : nlohmann::json(nullptr);
    config["tokenize_chinese_chars"] = opt_.tokenize_chinese_chars;
    config["split_special_tokens"] = opt_.split_special_tokens;
    config["model_max_length"] = opt_.model_max_length;
    detail::write_json(dir / "tokenizer_config.json", config);
    detail::write_json(dir / "special_tokens_map.json", specials);
  }

 private:
  /// A normalized character and the byte range of the original character it came from.
  struct NChar {
    char32_t cp;
    uint32_t begin, end;
  };
  struct Scratch {
    std::vector<NChar> chars;
    std::string word;               // UTF-8 of the current word
    std::vector<uint32_t> pos;      // byte position in `word` of each character, plus the end
    std::string sub;                // "##" + candidate
  };

  static bool has_cased_words(const std::filesystem::path& vocab_txt) {
    const std::string text = detail::read_file(vocab_txt);
    std::size_t pos = 0;
    while (pos < text.size()) {
      std::size_t nl = text.find('\n', pos);
      if (nl == std::string::npos) nl = text.size();
      const std::string_view line(text.data() + pos, nl - pos);
      if (!line.starts_with('[') && std::any_of(line.begin(), line.end(), [](char c) { return c >= 'A' && c <= 'Z'; }))
        return true;
      pos = nl + 1;
    }
    return false;
  }

  void init(const std::string& source) {
    auto need = [&](const std::string& tok, const char* what) {
      const int32_t id = vocab_.find(tok);
      if (id < 0) throw std::runtime_error("addrop::text: " + source + ": the " + what + " token '" + tok + "' is not in the vocabulary");
      return id;
    };
    unk_id_ = need(opt_.unk_token, "unknown");
    tmpl_ = {need(opt_.cls_token, "classification"), opt_.cls_token, need(opt_.sep_token, "separator"), opt_.sep_token, false, 1};
    pad_id_ = vocab_.find(opt_.pad_token);
    mask_id_ = vocab_.find(opt_.mask_token);
    strip_ = opt_.strip_accents.value_or(opt_.lower_case);
    max_token_bytes_ = 0;
    for (const auto& t : vocab_.tokens) max_token_bytes_ = std::max(max_token_bytes_, t.size());
    // transformers' BertTokenizer special tokens: matched as written, no strip.
    std::vector<detail::SpecialToken> specials;
    for (const auto* t : {&opt_.unk_token, &opt_.sep_token, &opt_.pad_token, &opt_.cls_token, &opt_.mask_token})
      specials.push_back({*t, vocab_.find(*t), false});
    specials_ = detail::SpecialTokenSplitter(specials);
  }

  /// BertNormalizer on text[from, to), character by character, keeping each character's
  /// original byte range in `text`.
  void normalize(std::string_view text, std::size_t from, std::size_t to, Scratch& s) const {
    text = text.substr(0, to);
    s.chars.clear();
    s.chars.reserve(to - from + 8);
    for (std::size_t i = from; i < text.size();) {
      auto [cp, len] = unicode::decode(text, i);
      const auto b = static_cast<uint32_t>(i), e = static_cast<uint32_t>(i + static_cast<std::size_t>(len));
      i += static_cast<std::size_t>(len);
      if (cp < 0x80) {  // ASCII: no decomposition, simple case mapping
        if (opt_.clean_text) {
          if (cp == 0 || unicode::is_control(cp)) continue;
          if (unicode::is_whitespace(cp)) cp = ' ';
        }
        if (opt_.lower_case && cp >= 'A' && cp <= 'Z') cp += 32;
        s.chars.push_back({cp, b, e});
        continue;
      }
      if (opt_.clean_text) {
        if (cp == 0xFFFD || unicode::is_control(cp)) continue;
        if (unicode::is_whitespace(cp)) cp = ' ';
      }
      if (opt_.tokenize_chinese_chars && unicode::is_cjk(cp)) {
        s.chars.push_back({' ', b, e});
        s.chars.push_back({cp, b, e});
        s.chars.push_back({' ', b, e});
        continue;
      }
      char32_t dec[8];
      int n = 1;
      dec[0] = cp;
      if (strip_) {
        n = unicode::nfd(cp, dec, 8);
        int k = 0;
        for (int j = 0; j < n; ++j)
          if (!unicode::is_nonspacing_mark(dec[j])) dec[k++] = dec[j];
        n = k;
      }
      for (int j = 0; j < n; ++j) {
        if (opt_.lower_case) {
          char32_t low[2];
          const int m = unicode::to_lower(dec[j], low);
          for (int q = 0; q < m; ++q) s.chars.push_back({low[q], b, e});
        } else {
          s.chars.push_back({dec[j], b, e});
        }
      }
    }
  }

  /// BertPreTokenizer: calls f(begin, end) for each word, as index ranges of s.chars.
  template <class F>
  static void split_words(const Scratch& s, F&& f) {
    std::size_t start = 0;
    const std::size_t n = s.chars.size();
    for (std::size_t i = 0; i < n; ++i) {
      const char32_t cp = s.chars[i].cp;
      if (unicode::is_whitespace(cp)) {
        if (i > start) f(start, i);
        start = i + 1;
      } else if (unicode::is_punctuation(cp)) {
        if (i > start) f(start, i);
        f(i, i + 1);
        start = i + 1;
      }
    }
    if (n > start) f(start, n);
  }

  /// WordPiece on the word s.chars[wb, we): calls emit(id, begin, end) per token.
  template <class Emit>
  void wordpiece(Scratch& s, std::size_t wb, std::size_t we, Emit&& emit) const {
    const std::size_t n = we - wb;
    const auto& ch = s.chars;
    if (n > static_cast<std::size_t>(opt_.max_input_chars_per_word)) {
      emit(unk_id_, ch[wb].begin, ch[we - 1].end);
      return;
    }
    s.word.clear();
    s.pos.clear();
    for (std::size_t k = wb; k < we; ++k) {
      s.pos.push_back(static_cast<uint32_t>(s.word.size()));
      unicode::append_utf8(s.word, ch[k].cp);
    }
    s.pos.push_back(static_cast<uint32_t>(s.word.size()));
    // Find every piece first (as id, character begin, character end): if one fails, the
    // whole word is [UNK].
    std::size_t start = 0;
    struct P {
      int32_t id;
      uint32_t b, e;
    };
    P local[64];
    std::vector<P> heap;
    std::size_t count = 0;
    auto store = [&](P p) {
      if (count < 64) local[count] = p;
      else {
        if (heap.empty()) heap.assign(local, local + 64);
        heap.push_back(p);
      }
      ++count;
    };
    const auto& prefix = opt_.continuing_subword_prefix;
    while (start < n) {
      std::size_t end = n;
      while (end > start && s.pos[end] - s.pos[start] + (start > 0 ? prefix.size() : 0) > max_token_bytes_) --end;
      int32_t found = -1;
      for (; end > start; --end) {
        const std::string_view cand(s.word.data() + s.pos[start], s.pos[end] - s.pos[start]);
        if (start > 0) {
          s.sub.assign(prefix);
          s.sub.append(cand);
          found = vocab_.find(s.sub);
        } else {
          found = vocab_.find(cand);
        }
        if (found >= 0) break;
      }
      if (found < 0) {
        emit(unk_id_, ch[wb].begin, ch[we - 1].end);
        return;
      }
      store({found, static_cast<uint32_t>(start), static_cast<uint32_t>(end)});
      start = end;
    }
    const P* ps = count <= 64 ? local : heap.data();
    for (std::size_t k = 0; k < count; ++k) emit(ps[k].id, ch[wb + ps[k].b].begin, ch[wb + ps[k].e - 1].end);
  }

  void append_pieces(std::string_view text, int32_t word, detail::Pieces& out, Scratch& s) const {
    specials_.split(
        text, opt_.split_special_tokens,
        [&](std::size_t from, std::size_t to) {
          normalize(text, from, to, s);
          split_words(s, [&](std::size_t b, std::size_t e) {
            wordpiece(s, b, e, [&](int32_t id, int64_t ob, int64_t oe) {
              out.push(id, vocab_.tokens[static_cast<std::size_t>(id)], ob, oe, word);
            });
          });
        },
        [&](const detail::SpecialToken& t, std::size_t b, std::size_t e) {
          out.push(t.id, t.content, static_cast<int64_t>(b), static_cast<int64_t>(e), word);
        });
  }

  detail::Pieces pieces(std::string_view text, int32_t word) const {
    detail::Pieces p;
    Scratch s;
    append_pieces(text, word, p, s);
    return p;
  }

  WordPieceOptions opt_;
  detail::Vocab vocab_;
  detail::Template tmpl_{};
  detail::SpecialTokenSplitter specials_;
  int32_t unk_id_ = -1, pad_id_ = -1, mask_id_ = -1;
  bool strip_ = true;
  std::size_t max_token_bytes_ = 0;
};

}  // namespace addrop::text
