// The Marian tokenizer (text/marian_tokenizer.hpp) against the golden data of
// tests/reference/make_marian_tokenizer_cases.py: SentencePiece's Python module (the same
// libsentencepiece 0.1.97) cut the texts and trained the models, and a Python
// re-implementation of transformers' MarianTokenizer gave the ids and decodes. Two folders:
// shared/ (one joint model, what train_marian_tokenizer writes; the C++ training must give
// the same bytes) and separate_spm/ (OPUS-MT's layout, an English and a Romanian model).
// Then save/load, training determinism, separate vocabularies, language codes, truncation,
// and every error naming its file.
#define BOOST_TEST_MODULE marian_tokenizer
#include <boost/test/unit_test.hpp>

#include <addrop/text/marian_tokenizer.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/helpers.hpp"

namespace fs = std::filesystem;
namespace text = addrop::text;
using addrop::testing::has;
using addrop::testing::TempDir;
using boost::test_tools::per_element;

namespace {

const fs::path golden = fs::path(ADDROP_FIXTURE_DIR).parent_path() / "marian_tokenizer";
// The committed sample, not $ADDROP_DATA_DIR: the golden models were trained on exactly it.
const fs::path wmt = fs::path(ADDROP_SAMPLE_DATA_DIR) / "wmt16_en_ro";

std::string read(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  BOOST_TEST_REQUIRE(in.good(), "cannot read " << file);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
void write(const fs::path& file, const std::string& content) { std::ofstream(file, std::ios::binary) << content; }

/// Lines split at "\n" only, the final newline ending the last line (as the Python script reads them).
std::vector<std::string> lines(const fs::path& file) {
  const std::string t = read(file);
  std::vector<std::string> out;
  std::size_t at = 0;
  for (std::size_t nl; (nl = t.find('\n', at)) != std::string::npos; at = nl + 1) out.push_back(t.substr(at, nl - at));
  if (at < t.size()) out.push_back(t.substr(at));
  return out;
}

const nlohmann::json& cases() {
  static const nlohmann::json c = nlohmann::json::parse(read(golden / "cases.json"));
  return c;
}

text::SentencePieceTrainingOptions options_from(const nlohmann::json& j) {
  text::SentencePieceTrainingOptions o;
  o.vocab_size = j.at("vocab_size").get<int>();
  o.model_type = j.at("model_type").get<std::string>();
  o.character_coverage = j.at("character_coverage").get<double>();
  o.num_threads = j.at("num_threads").get<int>();
  o.normalization_rule_name = j.at("normalization_rule_name").get<std::string>();
  o.source_lang = "en";
  o.target_lang = "ro";
  return o;
}

std::string fnv1a64(const std::string& bytes) {
  uint64_t h = 0xCBF29CE484222325ULL;
  for (const unsigned char b : bytes) {
    h ^= b;
    h *= 0x100000001B3ULL;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

const char* const folder_files[] = {"source.spm", "target.spm", "vocab.json", "tokenizer_config.json"};

void check_same_files(const fs::path& a, const fs::path& b) {
  for (const char* f : folder_files) BOOST_TEST((read(a / f) == read(b / f)), f << " differs between " << a << " and " << b);
}

/// Every text and id-sequence case of one golden folder.
void check_golden(const text::MarianTokenizer& tok, const nlohmann::json& folder) {
  int checked = 0;
  for (const auto& c : folder.at("texts")) {
    const auto t = c.at("text").get<std::string>();
    const bool source = c.at("side") == "source";
    BOOST_TEST_CONTEXT((source ? "source" : "target") << " text \"" << t << "\"") {
      const auto pieces = source ? tok.source_pieces(t) : tok.target_pieces(t);
      const auto ids = source ? tok.encode_source(t) : tok.encode_target(t);
      BOOST_TEST(pieces == c.at("pieces").get<std::vector<std::string>>(), per_element());
      BOOST_TEST(ids == c.at("ids").get<std::vector<int32_t>>(), per_element());
      BOOST_TEST(tok.decode_target(ids) == c.at("decoded").get<std::string>());
      BOOST_TEST(tok.decode_target(ids, false) == c.at("decoded_with_special_tokens").get<std::string>());
      BOOST_TEST(tok.decode_target(ids, true, true) == c.at("decoded_clean_up").get<std::string>());
    }
    ++checked;
  }
  for (const auto& c : folder.at("id_sequences")) {
    const auto ids = c.at("ids").get<std::vector<int32_t>>();
    BOOST_TEST_CONTEXT("ids " << c.at("ids").dump()) {
      BOOST_TEST(tok.decode_target(ids) == c.at("decoded").get<std::string>());
      BOOST_TEST(tok.decode_target(ids, false) == c.at("decoded_with_special_tokens").get<std::string>());
      BOOST_TEST(tok.decode_target(ids, true, true) == c.at("decoded_clean_up").get<std::string>());
    }
    ++checked;
  }
  BOOST_TEST(checked > 20);
}

/// A copy of a golden folder to edit.
void copy_folder(const fs::path& from, const fs::path& to) {
  fs::create_directories(to);
  for (const auto& e : fs::directory_iterator(from)) fs::copy_file(e.path(), to / e.path().filename());
}

}  // namespace

BOOST_AUTO_TEST_CASE(shared_folder_matches_python) {
  const auto tok = text::MarianTokenizer::load(golden / "shared");
  BOOST_TEST(tok.vocab_size() == 1000);
  BOOST_TEST(tok.eos_id() == 0);
  BOOST_TEST(tok.unk_id() == 1);
  BOOST_TEST(tok.pad_id() == 999);
  BOOST_TEST(!tok.separate_vocabs());
  BOOST_TEST(!tok.clean_up_tokenization_spaces());
  BOOST_TEST(tok.model_max_length() == 512);
  BOOST_TEST(tok.source_lang() == "en");
  BOOST_TEST(tok.target_lang() == "ro");
  BOOST_TEST(tok.supported_language_codes().empty());
  check_golden(tok, cases().at("shared"));
}

BOOST_AUTO_TEST_CASE(separate_models_match_python) {
  // OPUS-MT's layout: the source side is cut by the English model, the target side by the
  // Romanian one, which also decodes (English-only pieces come back as they are, ▁ included).
  const auto tok = text::MarianTokenizer::load(golden / "separate_spm");
  BOOST_TEST(tok.eos_id() == 0);
  BOOST_TEST(tok.unk_id() == 1);
  BOOST_TEST(tok.pad_id() == tok.vocab_size() - 1);
  BOOST_TEST(tok.vocab_size() > 600);  // the union of two 600-piece models
  check_golden(tok, cases().at("separate_spm"));
  const std::string en = "The Commission";
  BOOST_TEST((tok.source_pieces(en) != tok.target_pieces(en)));
}

BOOST_AUTO_TEST_CASE(training_gives_python_bytes) {
  // train_marian_tokenizer with the options of shared/ writes the four files Python wrote.
  const auto en = lines(wmt / "train.en");
  const auto ro = lines(wmt / "train.ro");
  BOOST_TEST_REQUIRE(en.size() == 500u);
  TempDir tmp("marian_train");
  const auto tok = text::train_marian_tokenizer(en, ro, options_from(cases().at("shared_options")), tmp.dir);
  check_same_files(tmp.dir, golden / "shared");
  BOOST_TEST(tmp.listing() == (std::vector<std::string>{"source.spm", "target.spm", "tokenizer_config.json", "vocab.json"}),
             per_element());
  BOOST_TEST(tok.vocab_size() == 1000);
  check_golden(tok, cases().at("shared"));  // the returned tokenizer works without a reload

  // The default normalisation (nmt_nfkc, not committed: 240 KB): same size and hash as Python's.
  const auto& d = cases().at("default_normalization_model");
  TempDir tmp2("marian_train_nfkc");
  text::train_marian_tokenizer(en, ro, options_from(d), tmp2.dir);
  const std::string model = read(tmp2.dir / "source.spm");
  BOOST_TEST(model.size() == d.at("size").get<std::size_t>());
  BOOST_TEST(fnv1a64(model) == d.at("fnv1a64").get<std::string>());
  BOOST_TEST((read(tmp2.dir / "target.spm") == model));
}

BOOST_AUTO_TEST_CASE(training_is_deterministic_and_loads_back) {
  const auto en = lines(wmt / "train.en");
  const auto ro = lines(wmt / "train.ro");
  text::SentencePieceTrainingOptions o;
  o.vocab_size = 300;
  o.num_threads = 2;  // several threads: still the same bytes for the same count
  o.normalization_rule_name = "identity";
  TempDir a("marian_det_a"), b("marian_det_b");
  const auto ta = text::train_marian_tokenizer(en, ro, o, a.dir);
  text::train_marian_tokenizer(en, ro, o, b.dir);
  check_same_files(a.dir, b.dir);

  const auto loaded = text::MarianTokenizer::load(a.dir);
  BOOST_TEST(loaded.vocab_size() == 300);
  BOOST_TEST(loaded.pad_id() == 299);
  BOOST_TEST(loaded.source_lang().empty());  // not given: not written
  for (std::size_t i = 0; i < 20; ++i) {
    BOOST_TEST(loaded.encode_source(en[i]) == ta.encode_source(en[i]), per_element());
    BOOST_TEST(loaded.decode_target(loaded.encode_target(ro[i])) == ta.decode_target(ta.encode_target(ro[i])));
  }
  // vocab.json: </s> 0, <unk> 1, the model's pieces in its order, <pad> last
  const auto vocab = nlohmann::ordered_json::parse(read(a.dir / "vocab.json"));
  BOOST_TEST(vocab.size() == 300u);
  BOOST_TEST(vocab.begin().key() == "</s>");
  BOOST_TEST(std::next(vocab.begin()).key() == "<unk>");
  BOOST_TEST((--vocab.end()).key() == "<pad>");
  int32_t expect = 0;
  for (const auto& [piece, id] : vocab.items()) BOOST_TEST(id.get<int32_t>() == expect++, piece);
  const auto config = nlohmann::json::parse(read(a.dir / "tokenizer_config.json"));
  BOOST_TEST(config.at("separate_vocabs") == false);
  BOOST_TEST(config.at("tokenizer_class") == "MarianTokenizer");
  BOOST_TEST(config.at("clean_up_tokenization_spaces") == false);

  // a joint model: the same cut on both sides, round trip exact for seen characters
  const std::string s = "Parliament adopted the resolution.";
  BOOST_TEST(loaded.source_pieces(s) == loaded.target_pieces(s), per_element());
  BOOST_TEST(loaded.decode_target(loaded.encode_target(s)) == s);
}

BOOST_AUTO_TEST_CASE(save_load_round_trip) {
  for (const char* name : {"shared", "separate_spm"}) {
    BOOST_TEST_CONTEXT(name) {
      const auto tok = text::MarianTokenizer::load(golden / name);
      TempDir tmp("marian_save");
      tok.save(tmp.dir / "out");  // creates the folder
      check_same_files(tmp.dir / "out", golden / name);
      tok.save(tmp.dir / "out");  // over an existing folder: no temporary file left behind
      std::vector<std::string> names;
      for (const auto& e : fs::directory_iterator(tmp.dir / "out")) names.push_back(e.path().filename().string());
      std::sort(names.begin(), names.end());
      BOOST_TEST(names == (std::vector<std::string>{"source.spm", "target.spm", "tokenizer_config.json", "vocab.json"}),
                 per_element());
      const auto again = text::MarianTokenizer::load(tmp.dir / "out");
      check_golden(again, cases().at(name));
    }
  }
}

BOOST_AUTO_TEST_CASE(unknown_pieces_become_unk) {
  const auto tok = text::MarianTokenizer::load(golden / "shared");
  // ŧ never occurs in the training text: SentencePiece returns it as a piece of its own,
  // which vocab.json lacks
  BOOST_TEST(tok.source_pieces("ŧ") == (std::vector<std::string>{"▁", "ŧ"}), per_element());
  BOOST_TEST(tok.token_to_id("ŧ") == -1);
  BOOST_TEST(tok.encode_source("ŧ") == (std::vector<int32_t>{tok.token_to_id("▁"), tok.unk_id(), tok.eos_id()}),
             per_element());
  // comma-below ș: the Europarl training text only has the cedilla ş
  BOOST_TEST(tok.token_to_id("ş") >= 0);
  BOOST_TEST(tok.encode_target("ș").at(1) == tok.unk_id());
  BOOST_TEST(tok.id_to_token(tok.pad_id()) == "<pad>");
}

BOOST_AUTO_TEST_CASE(clean_up_is_on_when_the_config_is_silent) {
  // A folder without tokenizer_config.json (transformers 4.x before 4.45 then cleans up).
  TempDir tmp("marian_noconfig");
  copy_folder(golden / "shared", tmp.dir);
  fs::remove(tmp.dir / "tokenizer_config.json");
  const auto tok = text::MarianTokenizer::load(tmp.dir);
  BOOST_TEST(tok.clean_up_tokenization_spaces());
  BOOST_TEST(tok.model_max_length() == 512);
  BOOST_TEST(tok.source_lang().empty());
  int differing = 0;
  for (const auto& c : cases().at("shared").at("texts")) {
    const auto ids = c.at("ids").get<std::vector<int32_t>>();
    BOOST_TEST(tok.decode_target(ids) == c.at("decoded_clean_up").get<std::string>(), c.at("text"));
    BOOST_TEST(tok.decode_target(ids, true, false) == c.at("decoded").get<std::string>());
    differing += c.at("decoded") != c.at("decoded_clean_up");
  }
  BOOST_TEST(differing > 0);  // the cases do exercise it
  // save() states the settings in use
  tok.save(tmp.dir / "saved");
  const auto config = nlohmann::json::parse(read(tmp.dir / "saved" / "tokenizer_config.json"));
  BOOST_TEST(config.at("clean_up_tokenization_spaces") == true);
  BOOST_TEST(!config.contains("source_lang"));
}

BOOST_AUTO_TEST_CASE(language_codes_in_the_vocabulary) {
  // Multi-target OPUS-MT models hold codes like >>ro<< in vocab.json: the leading code is one token.
  TempDir tmp("marian_codes");
  copy_folder(golden / "shared", tmp.dir);
  auto vocab = nlohmann::ordered_json::parse(read(tmp.dir / "vocab.json"));
  vocab[">>ro<<"] = 1000;
  vocab[">>fr<<"] = 1001;
  write(tmp.dir / "vocab.json", vocab.dump(2));
  const auto tok = text::MarianTokenizer::load(tmp.dir);
  BOOST_TEST(tok.supported_language_codes() == (std::vector<std::string>{">>ro<<", ">>fr<<"}), per_element());
  const auto plain = text::MarianTokenizer::load(golden / "shared").encode_source("The Commission agrees.");
  auto with_code = plain;
  with_code.insert(with_code.begin(), 1000);
  BOOST_TEST(tok.encode_source(">>ro<< The Commission agrees.") == with_code, per_element());
  BOOST_TEST(tok.encode_target(">>ro<<The Commission agrees.") == with_code, per_element());
  // not at the start: removed from the text, no token
  BOOST_TEST(tok.encode_source("The Commission >>fr<< agrees.") == plain, per_element());
  BOOST_TEST(tok.decode_target(with_code, false) == ">>ro<< The Commission agrees.</s>");
}

BOOST_AUTO_TEST_CASE(separate_vocabularies) {
  // separate_vocabs: the target side's ids come from target_vocab.json, here vocab.json's
  // pieces in reverse order (the specials keep OPUS-MT's places: </s> 0, <unk> 1, <pad> last).
  TempDir tmp("marian_separate");
  copy_folder(golden / "shared", tmp.dir);
  const auto source = nlohmann::ordered_json::parse(read(tmp.dir / "vocab.json"));
  std::vector<std::string> middle;
  for (const auto& [piece, id] : source.items())
    if (piece != "</s>" && piece != "<unk>" && piece != "<pad>") middle.push_back(piece);
  nlohmann::ordered_json target;
  target["</s>"] = 0;
  target["<unk>"] = 1;
  std::unordered_map<std::string, int32_t> target_id;
  int32_t next = 2;
  for (auto it = middle.rbegin(); it != middle.rend(); ++it) {
    target_id[*it] = next;
    target[*it] = next++;
  }
  target["<pad>"] = next;
  write(tmp.dir / "target_vocab.json", target.dump(2));
  auto config = nlohmann::ordered_json::parse(read(tmp.dir / "tokenizer_config.json"));
  config["separate_vocabs"] = true;
  write(tmp.dir / "tokenizer_config.json", config.dump(2));

  const auto tok = text::MarianTokenizer::load(tmp.dir);
  BOOST_TEST(tok.separate_vocabs());
  BOOST_TEST(tok.target_vocab_size() == 1000);
  BOOST_TEST(tok.supported_language_codes().empty());
  for (const auto& c : cases().at("shared").at("texts")) {
    if (c.at("side") != "target") continue;
    const auto t = c.at("text").get<std::string>();
    std::vector<int32_t> want;
    for (const auto& p : c.at("pieces")) {
      const auto it = target_id.find(p.get<std::string>());
      want.push_back(it == target_id.end() ? 1 : it->second);
    }
    want.push_back(0);
    BOOST_TEST(tok.encode_target(t) == want, per_element());
    BOOST_TEST(tok.decode_target(want) == c.at("decoded").get<std::string>());
    BOOST_TEST(tok.encode_source(t) == c.at("ids").get<std::vector<int32_t>>(), per_element());  // vocab.json
  }
  TempDir saved("marian_separate_saved");
  tok.save(saved.dir);
  BOOST_TEST((read(saved.dir / "target_vocab.json") == target.dump(2) + "\n"));

  fs::remove(tmp.dir / "target_vocab.json");
  BOOST_CHECK_EXCEPTION(text::MarianTokenizer::load(tmp.dir), std::runtime_error, has({"target_vocab.json", "missing"}));
}

BOOST_AUTO_TEST_CASE(truncation_keeps_the_end_of_sequence) {
  const auto tok = text::MarianTokenizer::load(golden / "shared");
  const std::string s = "The Commission agrees with Parliament.";
  const auto full = tok.encode_source(s);
  BOOST_TEST_REQUIRE(full.size() > 6u);
  auto want = std::vector<int32_t>(full.begin(), full.begin() + 4);
  want.push_back(tok.eos_id());
  BOOST_TEST(tok.encode_source(s, 5) == want, per_element());
  BOOST_TEST(tok.encode_source(s, 1) == (std::vector<int32_t>{tok.eos_id()}), per_element());
  BOOST_TEST(tok.encode_source(s, static_cast<int64_t>(full.size())) == full, per_element());
  BOOST_TEST(tok.encode_target(s, 0) == tok.encode_target(s), per_element());
}

BOOST_AUTO_TEST_CASE(bad_folders_are_named) {
  using std::runtime_error;
  TempDir tmp("marian_errors");
  const auto fresh = [&](const std::string& name) {
    const fs::path d = tmp.dir / name;
    copy_folder(golden / "shared", d);
    return d;
  };
  BOOST_CHECK_EXCEPTION(text::MarianTokenizer::load(tmp.dir / "nowhere"), runtime_error, has({"nowhere", "not a folder"}));

  auto d = fresh("no_vocab");
  fs::remove(d / "vocab.json");
  BOOST_CHECK_EXCEPTION(text::MarianTokenizer::load(d), runtime_error, has({"no_vocab/vocab.json", "missing"}));

  d = fresh("vocab_list");
  write(d / "vocab.json", "[\"</s>\", \"<unk>\"]");
  BOOST_CHECK_EXCEPTION(text::MarianTokenizer::load(d), runtime_error, has({"vocab_list/vocab.json", "JSON object", "array"}));

  d = fresh("vocab_bad_json");
  write(d / "vocab.json", "{\"</s>\": 0,");
  BOOST_CHECK_EXCEPTION(text::MarianTokenizer::load(d), runtime_error, has({"vocab_bad_json/vocab.json", "not valid JSON"}));

  d = fresh("vocab_no_unk");
  write(d / "vocab.json", R"({"</s>": 0, "a": 1, "<pad>": 2})");
  BOOST_CHECK_EXCEPTION(text::MarianTokenizer::load(d), runtime_error, has({"vocab_no_unk/vocab.json", "\"<unk>\""}));

  d = fresh("vocab_no_pad");
  write(d / "vocab.json", R"({"</s>": 0, "<unk>": 1, "a": 2})");
  BOOST_CHECK_EXCEPTION(text::MarianTokenizer::load(d), runtime_error, has({"vocab.json", "\"<pad>\""}));

  d = fresh("vocab_float_id");
  write(d / "vocab.json", R"({"</s>": 0, "<unk>": 1, "<pad>": 2.5})");
  BOOST_CHECK_EXCEPTION(text::MarianTokenizer::load(d), runtime_error, has({"vocab.json", "\"<pad>\"", "integer"}));

  d = fresh("vocab_repeated_id");
  write(d / "vocab.json", R"({"</s>": 0, "<unk>": 1, "a": 1, "<pad>": 2})");
  BOOST_CHECK_EXCEPTION(text::MarianTokenizer::load(d), runtime_error, has({"vocab.json", "id 1"}));

  d = fresh("no_source_spm");
  fs::remove(d / "source.spm");
  BOOST_CHECK_EXCEPTION(text::MarianTokenizer::load(d), runtime_error, has({"no_source_spm/source.spm", "missing"}));

  d = fresh("no_target_spm");
  fs::remove(d / "target.spm");
  BOOST_CHECK_EXCEPTION(text::MarianTokenizer::load(d), runtime_error, has({"no_target_spm/target.spm", "missing"}));

  d = fresh("corrupt_spm");
  write(d / "source.spm", "this is not a SentencePiece model");
  BOOST_CHECK_EXCEPTION(text::MarianTokenizer::load(d), runtime_error,
                        has({"corrupt_spm/source.spm", "not a SentencePiece model"}));

  d = fresh("corrupt_target_spm");
  write(d / "target.spm", read(d / "target.spm").substr(0, 1000));  // truncated
  BOOST_CHECK_EXCEPTION(text::MarianTokenizer::load(d), runtime_error,
                        has({"corrupt_target_spm/target.spm", "not a SentencePiece model"}));

  d = fresh("config_list");
  write(d / "tokenizer_config.json", "[]");
  BOOST_CHECK_EXCEPTION(text::MarianTokenizer::load(d), runtime_error, has({"tokenizer_config.json", "JSON object"}));

  d = fresh("config_bad_field");
  write(d / "tokenizer_config.json", R"({"separate_vocabs": "no"})");
  BOOST_CHECK_EXCEPTION(text::MarianTokenizer::load(d), runtime_error,
                        has({"tokenizer_config.json", "\"separate_vocabs\"", "true or false"}));

  // special tokens given as Hugging Face AddedToken objects are read too
  d = fresh("config_added_tokens");
  write(d / "tokenizer_config.json", R"({"eos_token": {"content": "</s>", "special": true}, "model_max_length": 1e30})");
  const auto tok = text::MarianTokenizer::load(d);
  BOOST_TEST(tok.eos_id() == 0);
  BOOST_TEST(tok.model_max_length() == INT64_MAX);
}

BOOST_AUTO_TEST_CASE(bad_input_is_rejected) {
  const auto tok = text::MarianTokenizer::load(golden / "shared");
  BOOST_CHECK_EXCEPTION(tok.encode_source("ab\xC3"), std::invalid_argument, has({"not valid UTF-8", "byte 2"}));
  BOOST_CHECK_EXCEPTION(tok.encode_target("\xED\xA0\x80"), std::invalid_argument, has({"not valid UTF-8", "byte 0"}));
  const std::vector<int32_t> outside = {5, 1000};
  BOOST_CHECK_EXCEPTION(tok.decode_target(outside), std::out_of_range, has({"1000", "not in the vocabulary"}));
  const std::vector<int32_t> negative = {-1};
  BOOST_CHECK_EXCEPTION(tok.decode_target(negative), std::out_of_range, has({"-1"}));
}

BOOST_AUTO_TEST_CASE(bad_training_requests_are_rejected) {
  const auto en = lines(wmt / "train.en");
  const auto ro = lines(wmt / "train.ro");
  TempDir tmp("marian_train_errors");
  text::SentencePieceTrainingOptions o;
  o.normalization_rule_name = "identity";
  o.vocab_size = 5000;  // 1,000 short lines cannot give that many pieces
  BOOST_CHECK_EXCEPTION(text::train_marian_tokenizer(en, ro, o, tmp.dir / "big"), std::invalid_argument,
                        has({"vocab_size 5000", "more than this training text supports"}));
  o.vocab_size = 20;  // fewer than the characters of the text (coverage 1.0)
  BOOST_CHECK_EXCEPTION(text::train_marian_tokenizer(en, ro, o, tmp.dir / "small"), std::invalid_argument,
                        has({"vocab_size 20", "too small"}));
  BOOST_TEST(!fs::exists(tmp.dir / "big"));
  o.vocab_size = 300;
  o.model_type = "wordpiece";
  BOOST_CHECK_EXCEPTION(text::train_marian_tokenizer(en, ro, o, tmp.dir / "x"), std::invalid_argument,
                        has({"\"wordpiece\""}));
  o.model_type = "unigram";
  const std::vector<std::string> none;
  BOOST_CHECK_EXCEPTION(text::train_marian_tokenizer(none, none, o, tmp.dir / "x"), std::invalid_argument,
                        has({"no training text"}));
  const std::vector<std::string> bad = {"fine", "not \xFF fine"};
  BOOST_CHECK_EXCEPTION(text::train_marian_tokenizer(en, bad, o, tmp.dir / "x"), std::invalid_argument,
                        has({"target text 1", "UTF-8"}));
}

BOOST_AUTO_TEST_CASE(python_string_rules) {
  // What decoding borrows from Python: str.strip() and str.replace() (the trained models
  // above never put a no-break space at the ends of a decode, so it is checked here).
  namespace d = text::marian_detail;
  BOOST_TEST(d::python_strip("\xC2\xA0 a b\xE3\x80\x80\n\x1F") == "a b");    // U+00A0, U+3000, \n, U+001F
  BOOST_TEST(d::python_strip("\xE2\x80\x8B" "a ") == "\xE2\x80\x8B" "a");   // U+200B is no space for Python
  BOOST_TEST(d::python_strip(" \xE2\x80\xAF ") == "");                       // U+202F
  BOOST_TEST(d::clean_up_tokenization("a , b . c ' d isn 't it 's") == "a, b. c'd isn 't it's");  // Python's result
  auto [code, rest] = d::split_language_code(">>ro<< a >>b<<\n>>c<< d >>e<<");
  BOOST_TEST(code == ">>ro<< a >>b<<");  // greedy within the first line
  BOOST_TEST(rest == "\n");  // ">>c<< d >>e<<" is one match too
}
