// Word <-> sub-token alignment for token classification (data/token_alignment.hpp): labels on
// the first sub-token, -100 or a label (--label-all-tokens, B-X continuing as I-X or as
// itself) on the others, -100 on special tokens; truncation reports; predictions mapped
// back to words; token batches. WordPiece and byte-level BPE vocabularies written by the
// test; the real bert-base-cased / roberta-base ones from the sample or $ADDROP_DATA_DIR.
#define BOOST_TEST_MODULE token_alignment
#include <boost/test/unit_test.hpp>

#include <addrop/data/conll.hpp>
#include <addrop/data/token_alignment.hpp>
#include <addrop/text/tokenizer.hpp>
#include <algorithm>
#include <cstdlib>
#include <fstream>

#include <nlohmann/json.hpp>

#include "support/data.hpp"
#include "support/helpers.hpp"

namespace fs = std::filesystem;
using namespace addrop;
using Ids = std::vector<int32_t>;
using Strings = std::vector<std::string>;

namespace {

constexpr int32_t X = data::kIgnoreLabel;

// O=0, B-LOC=1, I-LOC=2, B-PER=3, I-PER=4 (label_set_for_types order).
const Strings kLabels = data::label_set_for_types({"PER", "LOC"});
const Strings kWords = {"Mr", "Johnson", "lives", "in", "London", "."};
const Strings kTags = {"O", "B-PER", "O", "O", "B-LOC", "O"};

struct SmallWordPiece : testing::TempDir {
  SmallWordPiece() : testing::TempDir("wp") {
    std::ofstream v(dir / "vocab.txt");
    for (const char* s : {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "Mr", "John", "##son", "lives", "in", "Lon",
                          "##don", "."})
      v << s << "\n";
  }
  std::unique_ptr<text::Tokenizer> tokenizer() const {
    text::WordPieceOptions o;
    o.lower_case = false;
    return std::make_unique<text::WordPieceTokenizer>(dir / "vocab.txt", o);
  }
};

/// A byte-level BPE vocabulary: specials, the 256 byte characters, the merges' results.
struct SmallBpe : testing::TempDir {
  SmallBpe() : testing::TempDir("bpe") {
    nlohmann::ordered_json vocab = nlohmann::ordered_json::object();
    const Strings merges = {"h e", "l l", "he ll", "hell o", "Ġ hello", "Ġ w", "Ġw o", "r l", "Ġwo rl", "Ġworl d"};
    int id = 0;
    for (const char* s : {"<s>", "<pad>", "</s>", "<unk>", "<mask>"}) vocab[s] = id++;
    for (int b = 0; b < 256; ++b) {
      const auto& c = text::detail::byte_chars()[static_cast<std::size_t>(b)];
      if (!vocab.contains(c)) vocab[c] = id++;
    }
    for (const auto& m : merges) {
      const auto sp = m.find(' ');
      const std::string joined = m.substr(0, sp) + m.substr(sp + 1);
      if (!vocab.contains(joined)) vocab[joined] = id++;
    }
    std::ofstream(dir / "vocab.json") << vocab.dump();
    std::ofstream mf(dir / "merges.txt");
    mf << "#version: 0.2\n";
    for (const auto& s : merges) mf << s << "\n";
  }
  std::unique_ptr<text::Tokenizer> tokenizer() const {
    return std::make_unique<text::ByteBpeTokenizer>(dir / "vocab.json", dir / "merges.txt");
  }
};

data::TokenFeatures encode(const text::Tokenizer& tok, const std::vector<Strings>& words, const std::vector<Strings>& tags,
                           data::TokenAlignOptions options) {
  std::vector<Ids> ids;
  for (const auto& t : tags) ids.push_back(data::encode_tags(t, kLabels));
  const auto cont = data::b_to_i_map(kLabels);
  return data::encode_sentences(tok, words, ids, options, cont);
}

}  // namespace

BOOST_AUTO_TEST_CASE(b_to_i_map_sends_b_to_i) {
  BOOST_TEST(data::b_to_i_map(kLabels) == (Ids{0, 2, 2, 4, 4}), boost::test_tools::per_element());
  // a B- without its I- stays itself
  BOOST_TEST(data::b_to_i_map({"O", "B-X", "I-Y"}) == (Ids{0, 1, 2}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(align_labels_first_sub_token_and_all_tokens) {
  const Ids word_ids{-1, 0, 1, 1, 2, 3, 4, 4, 5, -1};
  const Ids word_labels{0, 3, 0, 0, 1, 0};
  const Ids cont = data::b_to_i_map(kLabels);
  BOOST_TEST(data::align_labels(word_ids, word_labels, false) == (Ids{X, 0, 3, X, 0, 0, 1, X, 0, X}),
             boost::test_tools::per_element());
  BOOST_TEST(data::align_labels(word_ids, word_labels, true, cont) == (Ids{X, 0, 3, 4, 0, 0, 1, 2, 0, X}),
             boost::test_tools::per_element());
  BOOST_TEST(data::align_labels(word_ids, word_labels, true) == (Ids{X, 0, 3, 3, 0, 0, 1, 1, 0, X}),
             boost::test_tools::per_element());
  BOOST_CHECK_EXCEPTION(data::align_labels(Ids{-1, 7, -1}, word_labels, false), std::invalid_argument,
                        testing::has({"word 7", "6 word labels"}));
}

BOOST_AUTO_TEST_CASE(wordpiece_sentence) {
  SmallWordPiece v;
  const auto tok = v.tokenizer();
  // [CLS] Mr John ##son lives in Lon ##don . [SEP]
  auto f = encode(*tok, {kWords}, {kTags}, {.max_length = 64});
  BOOST_REQUIRE_EQUAL(f.size(), 1u);
  BOOST_TEST(f.word_ids[0] == (Ids{-1, 0, 1, 1, 2, 3, 4, 4, 5, -1}), boost::test_tools::per_element());
  BOOST_TEST(f.labels[0] == (Ids{X, 0, 3, X, 0, 0, 1, X, 0, X}), boost::test_tools::per_element());
  BOOST_TEST(f.features[0].ids.size() == 10u);
  BOOST_TEST(f.features[0].index == 0);  // its position
  BOOST_TEST(f.num_words[0] == 6);
  BOOST_TEST(f.truncated_words == 0);
  BOOST_TEST(f.truncated_sentences == 0);

  auto all = encode(*tok, {kWords}, {kTags}, {.max_length = 64, .label_all_tokens = true});
  BOOST_TEST(all.labels[0] == (Ids{X, 0, 3, 4, 0, 0, 1, 2, 0, X}), boost::test_tools::per_element());
  auto same = encode(*tok, {kWords}, {kTags},
                     {.max_length = 64, .label_all_tokens = true, .continuation = data::Continuation::Same});
  BOOST_TEST(same.labels[0] == (Ids{X, 0, 3, 3, 0, 0, 1, 1, 0, X}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(byte_bpe_sentence_has_a_prefix_space_per_word) {
  SmallBpe v;
  const auto tok = v.tokenizer();
  const Strings words{"hello", "worlds"};
  const auto enc = tok->encode_words(words);
  BOOST_TEST(enc.tokens == (Strings{"<s>", "Ġhello", "Ġworld", "s", "</s>"}), boost::test_tools::per_element());
  std::vector<Ids> ids{{3, 1}};
  const auto f = data::encode_sentences(*tok, {words}, ids, {.max_length = 0, .label_all_tokens = true},
                                        data::b_to_i_map(kLabels));
  BOOST_TEST(f.word_ids[0] == (Ids{-1, 0, 1, 1, -1}), boost::test_tools::per_element());
  BOOST_TEST(f.labels[0] == (Ids{X, 3, 1, 2, X}), boost::test_tools::per_element());
  const auto first = data::encode_sentences(*tok, {words}, ids, {.max_length = 0});
  BOOST_TEST(first.labels[0] == (Ids{X, 3, 1, X, X}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(truncation_is_reported_and_mapped_to_o) {
  SmallWordPiece v;
  const auto tok = v.tokenizer();
  // max 6: [CLS] Mr John ##son lives [SEP]: "in", "London", "." cut
  auto f6 = encode(*tok, {kWords, {"Mr", "."}}, {kTags, {"O", "O"}}, {.max_length = 6});
  BOOST_TEST(f6.truncated_words == 3);
  BOOST_TEST(f6.truncated_sentences == 1);
  BOOST_TEST(f6.word_ids[0] == (Ids{-1, 0, 1, 1, 2, -1}), boost::test_tools::per_element());
  // max 8: London keeps its first sub-token, so only "." is cut
  auto f8 = encode(*tok, {kWords}, {kTags}, {.max_length = 8});
  BOOST_TEST(f8.truncated_words == 1);
  BOOST_TEST(f8.word_ids[0] == (Ids{-1, 0, 1, 1, 2, 3, 4, -1}), boost::test_tools::per_element());
  // predictions back to words: cut words get the fill label
  const Ids pred{0, 0, 3, 4, 0, -1};
  BOOST_TEST(data::word_predictions(f6.word_ids[0], pred, 6, 0) == (Ids{0, 3, 0, 0, 0, 0}),
             boost::test_tools::per_element());
  BOOST_TEST(data::word_predictions(f6.word_ids[0], pred, 6, -1) == (Ids{0, 3, 0, -1, -1, -1}),
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(word_predictions_take_the_first_sub_token) {
  const Ids word_ids{-1, 0, 1, 1, 2, 3, 4, 4, 5, -1};
  const Ids pred{2, 0, 3, 0, 0, 0, 1, 4, 0, 2};  // continuation predictions are ignored
  BOOST_TEST(data::word_predictions(word_ids, pred, 6, 0) == (Ids{0, 3, 0, 0, 1, 0}), boost::test_tools::per_element());
  BOOST_CHECK_THROW(data::word_predictions(word_ids, Ids{1, 2}, 6, 0), std::invalid_argument);
  BOOST_CHECK_THROW(data::word_predictions(word_ids, pred, 3, 0), std::invalid_argument);
  // a word the tokenizer maps to nothing (not truncated) is "empty" and gets the fill
  SmallWordPiece v;
  const auto tok = v.tokenizer();
  auto f = encode(*tok, {{"Mr", "\x01", "."}}, {{"O", "B-PER", "O"}}, {.max_length = 64});
  BOOST_TEST(f.empty_words == 1);
  BOOST_TEST(f.truncated_words == 0);
  BOOST_TEST(f.word_ids[0] == (Ids{-1, 0, 2, -1}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(token_batches_pad_labels_with_ignore) {
  SmallWordPiece v;
  const auto tok = v.tokenizer();
  auto f = encode(*tok, {kWords, {"Mr", "."}}, {kTags, {"O", "O"}}, {.max_length = 64});
  const auto batch = data::make_token_batch(f, {1, 0}, tok->pad_id());
  BOOST_TEST(batch.size == 2);
  BOOST_TEST(batch.length == 10);
  BOOST_REQUIRE_EQUAL(batch.labels.size(), 20u);
  const Ids row0(batch.labels.begin(), batch.labels.begin() + 10), row1(batch.labels.begin() + 10, batch.labels.end());
  BOOST_TEST(row0 == (Ids{X, 0, 0, X, X, X, X, X, X, X}), boost::test_tools::per_element());
  BOOST_TEST(row1 == f.labels[0], boost::test_tools::per_element());
  models::ModelConfig c;
  c.task = models::Task::TokenClassification;
  c.num_labels = 5;
  c.vocab_size = tok->vocab_size();
  BOOST_CHECK_NO_THROW(batch.validate(c, true));
  // the token labels come from the positions, whatever Feature::label holds
  auto relabelled = f;
  for (auto& feature : relabelled.features) feature.label = 77;
  BOOST_TEST(data::make_token_batch(relabelled, {1, 0}, tok->pad_id()).labels == batch.labels,
             boost::test_tools::per_element());
  BOOST_CHECK_EXCEPTION(data::make_token_batch(f, {5, 0}, tok->pad_id()), std::invalid_argument,
                        testing::has({"index 5"}));
  auto short_labels = f;
  short_labels.labels.pop_back();
  BOOST_CHECK_EXCEPTION(data::make_token_batch(short_labels, {0}, tok->pad_id()), std::invalid_argument,
                        testing::has({"1 label rows for 2 features"}));
}

// The trainer's source for token classification: epoch_batches' batches in its order
// (the same seeded order as sequence features), each made by make_token_batch.
BOOST_AUTO_TEST_CASE(token_batches_are_the_sampler_s_batches) {
  SmallWordPiece v;
  const auto tok = v.tokenizer();
  std::vector<Strings> words, tags;
  for (int i = 0; i < 37; ++i) {
    words.push_back(i % 3 ? kWords : Strings{"Mr", "."});
    tags.push_back(i % 3 ? kTags : Strings{"O", "O"});
  }
  const auto f = encode(*tok, words, tags, {.max_length = 64});
  for (bool bucket : {false, true}) {
    const data::SamplerOptions o{.batch_size = 8, .bucket_by_length = bucket, .bucket_window = 2, .seed = 4};
    const data::TokenBatches source(f, o, tok->pad_id());
    BOOST_TEST(source.num_batches(0) == 5);
    for (int epoch = 0; epoch < 3; ++epoch) {
      const auto plan = data::epoch_batches(f.features, o, epoch);
      std::size_t i = 0;
      for (const models::Batch& b : source.batches(epoch)) {
        BOOST_REQUIRE_LT(i, plan.size());
        const models::Batch want = data::make_token_batch(f, plan[i], tok->pad_id());
        BOOST_TEST(b.input_ids == want.input_ids);
        BOOST_TEST(b.token_type_ids == want.token_type_ids);
        BOOST_TEST(b.labels == want.labels);
        BOOST_TEST(b.labels.size() == static_cast<std::size_t>(b.size * b.length));
        ++i;
      }
      BOOST_TEST(i == plan.size());
    }
  }
}

BOOST_AUTO_TEST_CASE(unlabelled_and_mismatched_input) {
  SmallWordPiece v;
  const auto tok = v.tokenizer();
  const auto f = data::encode_sentences(*tok, {kWords}, {}, {.max_length = 64});
  BOOST_TEST(std::all_of(f.labels[0].begin(), f.labels[0].end(), [](int32_t l) { return l == X; }));
  BOOST_CHECK_EXCEPTION(data::encode_sentences(*tok, {kWords}, {{0, 1}}, {.max_length = 64}), std::invalid_argument,
                        testing::has({"sentence 0", "6 words but 2 labels"}));
}

BOOST_AUTO_TEST_CASE(real_vocabularies) {
  // The sample has bert-base-cased and roberta-base; the full data adds ELECTRA's vocabulary.
  const fs::path base = testing::data_root() / "tokenizers";
  BOOST_TEST_MESSAGE("data: " << testing::data_root_description());
  int seen = 0;
  for (const char* model : {"bert-base-cased", "roberta-base", "electra-base-discriminator"}) {
    if (!fs::exists(base / model)) continue;
    ++seen;
    BOOST_TEST_CONTEXT(model) {
      const auto tok = text::load_tokenizer(base / model);
      const Strings words{"EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."};
      const Strings tags{"B-ORG", "O", "B-MISC", "O", "O", "O", "B-MISC", "O", "O"};
      std::vector<Ids> ids{data::encode_tags(tags, data::label_set_for_types({"ORG", "MISC"}))};
      const auto f = data::encode_sentences(*tok, {words}, ids, {.max_length = 128});
      // every word has exactly one labelled (first) sub-token, in order
      Ids firsts;
      for (std::size_t t = 0; t < f.labels[0].size(); ++t)
        if (f.labels[0][t] != X) firsts.push_back(f.word_ids[0][t]);
      BOOST_TEST(firsts == (Ids{0, 1, 2, 3, 4, 5, 6, 7, 8}), boost::test_tools::per_element());
      BOOST_TEST(f.word_ids[0].front() == -1);
      BOOST_TEST(f.word_ids[0].back() == -1);
    }
  }
  BOOST_TEST(seen >= 2, "bert-base-cased and roberta-base must be under " << base);
}
