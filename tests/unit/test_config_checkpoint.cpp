// Hugging Face interoperability: config.json parsing and writing (io/hf_config.hpp),
// checkpoint folders (io/checkpoint.hpp: load_weights, load_pretrained, save_pretrained),
// batch validation (models/batch.hpp), Hugging Face's initialisation (models/init.hpp),
// and the parameter names and order of EncoderModel against the golden fixtures.
#define BOOST_TEST_MODULE config_checkpoint
#include <boost/test/unit_test.hpp>

#include "support/helpers.hpp"

#include <addrop/addrop.hpp>
#include <addrop/models/memory.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <random>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <unistd.h>

namespace fs = std::filesystem;
using namespace addrop;
using io::DType;
using models::Family;
using models::ModelConfig;
using models::Task;
template <class T>
using Model = models::EncoderModel<T>;

using addrop::testing::has;

namespace {

struct TempDir : addrop::testing::TempDir {
  TempDir() : addrop::testing::TempDir("config_checkpoint") {}
};

// ---------------------------------------------------------------------------------------
// Helpers


std::string family_name(Family f) { return models::family_prefix(f); }
std::string task_name(Task t) {
  return t == Task::SequenceClassification ? "seqcls" : t == Task::Regression ? "regression" : "token";
}

// A small model of each family: vocab 40, hidden 16, 2 layers, 4 heads (ELECTRA: embeddings of 8).
ModelConfig tiny(Family f, Task t) {
  ModelConfig c;
  c.family = f;
  c.task = t;
  c.vocab_size = 40;
  c.hidden_size = 16;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.intermediate_size = 32;
  c.max_position_embeddings = 24;
  c.num_labels = t == Task::Regression ? 1 : 3;
  if (f == Family::Roberta) {
    c.pad_token_id = 1;
    c.type_vocab_size = 1;
    c.layer_norm_eps = 1e-5;
  }
  if (f == Family::Electra) c.embedding_size = 8;
  return c;
}

const std::vector<Family> kFamilies{Family::Bert, Family::Roberta, Family::Electra};
const std::vector<Task> kTasks{Task::SequenceClassification, Task::Regression, Task::TokenClassification};

std::vector<int64_t> dims(const Shape& s) { return std::vector<int64_t>(s.dims.begin(), s.dims.begin() + s.rank); }

template <class T>
std::vector<double> values(const nn::Parameter<T, backend::Cpu>& p) {
  return std::vector<double>(p.value.data(), p.value.data() + p.value.numel());
}

// Gives every element of every parameter a distinct value that float cannot store exactly.
template <class T>
void fill_distinct(Model<T>& m, double salt = 0.1) {
  int k = 0;
  for (auto* p : m.parameters()) {
    for (int64_t j = 0; j < p->value.numel(); ++j)
      p->value.data()[j] = static_cast<T>(0.5 * std::sin(0.7 * k + 0.013 * static_cast<double>(j) + salt) + 1e-9);
    ++k;
  }
}

template <class T>
void fill_constant(Model<T>& m, T v) {
  for (auto* p : m.parameters()) std::fill(p->value.data(), p->value.data() + p->value.numel(), v);
}

// Every parameter of `m` stored as `dtype` under its own name.
template <class T>
io::SafeTensors checkpoint_of(const Model<T>& m, DType dtype = DType::F64) {
  io::SafeTensors st;
  for (const auto* p : m.parameters()) {
    const std::vector<double> v = values(*p);
    st.insert<double>(p->name, dims(p->value.shape()), std::span<const double>(v), dtype);
  }
  return st;
}

// Round trip through bytes so that the checkpoint carries a file name for the messages.
io::SafeTensors as_file(const io::SafeTensors& st, const std::string& label) {
  const auto bytes = st.to_bytes();
  return io::SafeTensors::from_bytes(bytes, label);
}

template <class A, class B>
bool bit_identical(const Model<A>& a, const Model<B>& b, std::string& first_difference) {
  static_assert(std::is_same_v<A, B>);
  const auto& pa = a.parameters();
  const auto& pb = b.parameters();
  if (pa.size() != pb.size()) {
    first_difference = "parameter counts differ";
    return false;
  }
  for (std::size_t i = 0; i < pa.size(); ++i) {
    if (pa[i]->name != pb[i]->name || !(pa[i]->value.shape() == pb[i]->value.shape()) ||
        std::memcmp(pa[i]->value.data(), pb[i]->value.data(), sizeof(A) * pa[i]->value.numel()) != 0) {
      first_difference = pa[i]->name;
      return false;
    }
  }
  return true;
}

void check_same_config(const ModelConfig& got, const ModelConfig& want) {
  BOOST_TEST((got.family == want.family));
  BOOST_TEST((got.task == want.task));
  BOOST_TEST(got.vocab_size == want.vocab_size);
  BOOST_TEST(got.hidden_size == want.hidden_size);
  BOOST_TEST(got.embedding_dim() == want.embedding_dim());
  BOOST_TEST(got.num_hidden_layers == want.num_hidden_layers);
  BOOST_TEST(got.num_attention_heads == want.num_attention_heads);
  BOOST_TEST(got.intermediate_size == want.intermediate_size);
  BOOST_TEST(got.max_position_embeddings == want.max_position_embeddings);
  BOOST_TEST(got.type_vocab_size == want.type_vocab_size);
  BOOST_TEST(got.pad_token_id == want.pad_token_id);
  BOOST_TEST(got.num_labels == want.num_labels);
  BOOST_TEST(got.layer_norm_eps == want.layer_norm_eps);
  BOOST_TEST(got.hidden_dropout_prob == want.hidden_dropout_prob);
  BOOST_TEST(got.attention_probs_dropout_prob == want.attention_probs_dropout_prob);
  BOOST_TEST(got.classifier_dropout == want.classifier_dropout);
  BOOST_TEST(got.hidden_act == want.hidden_act);
}

std::vector<std::string> sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

std::vector<std::string> parameter_names(const auto& model) {
  std::vector<std::string> names;
  for (const auto* p : model.parameters()) names.push_back(p->name);
  return names;
}

// ---------------------------------------------------------------------------------------
// config.json texts as Hugging Face writes them

const char* kBertBaseUncasedMnli = R"({
  "_name_or_path": "bert-base-uncased",
  "architectures": [
    "BertForSequenceClassification"
  ],
  "attention_probs_dropout_prob": 0.1,
  "classifier_dropout": null,
  "gradient_checkpointing": false,
  "hidden_act": "gelu",
  "hidden_dropout_prob": 0.1,
  "hidden_size": 768,
  "id2label": {
    "0": "entailment",
    "1": "neutral",
    "2": "contradiction"
  },
  "initializer_range": 0.02,
  "intermediate_size": 3072,
  "label2id": {
    "contradiction": 2,
    "entailment": 0,
    "neutral": 1
  },
  "layer_norm_eps": 1e-12,
  "max_position_embeddings": 512,
  "model_type": "bert",
  "num_attention_heads": 12,
  "num_hidden_layers": 12,
  "pad_token_id": 0,
  "position_embedding_type": "absolute",
  "problem_type": "single_label_classification",
  "torch_dtype": "float32",
  "transformers_version": "4.30.2",
  "type_vocab_size": 2,
  "use_cache": true,
  "vocab_size": 30522
}
)";

const char* kRobertaBase = R"({
  "architectures": [
    "RobertaForMaskedLM"
  ],
  "attention_probs_dropout_prob": 0.1,
  "bos_token_id": 0,
  "eos_token_id": 2,
  "hidden_act": "gelu",
  "hidden_dropout_prob": 0.1,
  "hidden_size": 768,
  "initializer_range": 0.02,
  "intermediate_size": 3072,
  "layer_norm_eps": 1e-05,
  "max_position_embeddings": 514,
  "model_type": "roberta",
  "num_attention_heads": 12,
  "num_hidden_layers": 12,
  "pad_token_id": 1,
  "type_vocab_size": 1,
  "vocab_size": 50265
}
)";

const char* kElectraBaseDiscriminator = R"({
  "architectures": [
    "ElectraForPreTraining"
  ],
  "attention_probs_dropout_prob": 0.1,
  "embedding_size": 768,
  "hidden_act": "gelu",
  "hidden_dropout_prob": 0.1,
  "hidden_size": 768,
  "initializer_range": 0.02,
  "intermediate_size": 3072,
  "layer_norm_eps": 1e-12,
  "max_position_embeddings": 512,
  "model_type": "electra",
  "num_attention_heads": 12,
  "num_hidden_layers": 12,
  "pad_token_id": 0,
  "type_vocab_size": 2,
  "vocab_size": 30522
}
)";

const char* kElectraSmallNer = R"({
  "_name_or_path": "google/electra-small-discriminator",
  "architectures": [
    "ElectraForTokenClassification"
  ],
  "attention_probs_dropout_prob": 0.1,
  "classifier_dropout": null,
  "embedding_size": 128,
  "hidden_act": "gelu",
  "hidden_dropout_prob": 0.1,
  "hidden_size": 256,
  "id2label": {
    "0": "O",
    "1": "B-PER",
    "2": "I-PER",
    "3": "B-ORG",
    "4": "I-ORG",
    "5": "B-LOC",
    "6": "I-LOC",
    "7": "B-MISC",
    "8": "I-MISC"
  },
  "initializer_range": 0.02,
  "intermediate_size": 1024,
  "label2id": {
    "B-LOC": 5,
    "B-MISC": 7,
    "B-ORG": 3,
    "B-PER": 1,
    "I-LOC": 6,
    "I-MISC": 8,
    "I-ORG": 4,
    "I-PER": 2,
    "O": 0
  },
  "layer_norm_eps": 1e-12,
  "max_position_embeddings": 512,
  "model_type": "electra",
  "num_attention_heads": 4,
  "num_hidden_layers": 12,
  "pad_token_id": 0,
  "position_embedding_type": "absolute",
  "summary_activation": "gelu",
  "summary_last_dropout": 0.1,
  "summary_type": "first",
  "summary_use_proj": true,
  "torch_dtype": "float32",
  "transformers_version": "4.30.2",
  "type_vocab_size": 2,
  "use_cache": true,
  "vocab_size": 30522
}
)";

const char* kBertStsb = R"({
  "_name_or_path": "bert-base-uncased",
  "architectures": [
    "BertForSequenceClassification"
  ],
  "attention_probs_dropout_prob": 0.1,
  "classifier_dropout": null,
  "hidden_act": "gelu",
  "hidden_dropout_prob": 0.1,
  "hidden_size": 768,
  "id2label": {
    "0": "LABEL_0"
  },
  "initializer_range": 0.02,
  "intermediate_size": 3072,
  "label2id": {
    "LABEL_0": 0
  },
  "layer_norm_eps": 1e-12,
  "max_position_embeddings": 512,
  "model_type": "bert",
  "num_attention_heads": 12,
  "num_hidden_layers": 12,
  "pad_token_id": 0,
  "position_embedding_type": "absolute",
  "problem_type": "regression",
  "type_vocab_size": 2,
  "vocab_size": 30522
}
)";

// The smallest valid config, for mutation into broken ones.
nlohmann::json minimal_config() {
  return nlohmann::json{{"model_type", "bert"},       {"vocab_size", 100},        {"hidden_size", 32},
                        {"num_hidden_layers", 2},     {"num_attention_heads", 4}, {"intermediate_size", 64}};
}

}  // namespace

// =======================================================================================
BOOST_AUTO_TEST_SUITE(hf_config)

BOOST_AUTO_TEST_CASE(bert_base_uncased_sequence_classification) {
  const ModelConfig c = io::parse_hf_config(kBertBaseUncasedMnli, "bert-base-uncased-mnli/config.json");
  BOOST_TEST((c.family == Family::Bert));
  BOOST_TEST((c.task == Task::SequenceClassification));
  BOOST_TEST(c.vocab_size == 30522);
  BOOST_TEST(c.hidden_size == 768);
  BOOST_TEST(c.embedding_dim() == 768);
  BOOST_TEST(c.num_hidden_layers == 12);
  BOOST_TEST(c.num_attention_heads == 12);
  BOOST_TEST(c.intermediate_size == 3072);
  BOOST_TEST(c.max_position_embeddings == 512);
  BOOST_TEST(c.type_vocab_size == 2);
  BOOST_TEST(c.pad_token_id == 0);
  BOOST_TEST(c.num_labels == 3);
  BOOST_TEST(c.layer_norm_eps == 1e-12);
  BOOST_TEST(c.hidden_dropout_prob == 0.1f);
  BOOST_TEST(c.attention_probs_dropout_prob == 0.1f);
  BOOST_TEST(c.classifier_dropout == -1.0f);  // null: use hidden_dropout_prob
  BOOST_TEST(c.head_dropout() == 0.1f);
  BOOST_TEST(c.hidden_act == "gelu");
  BOOST_TEST(c.prefix() == "bert");
  BOOST_TEST(c.architecture() == "BertForSequenceClassification");
}

BOOST_AUTO_TEST_CASE(roberta_base) {
  const ModelConfig c = io::parse_hf_config(kRobertaBase, "roberta-base/config.json");
  BOOST_TEST((c.family == Family::Roberta));
  BOOST_TEST((c.task == Task::SequenceClassification));  // a MaskedLM config gets a fresh 2-way head
  BOOST_TEST(c.num_labels == 2);
  BOOST_TEST(c.vocab_size == 50265);
  BOOST_TEST(c.pad_token_id == 1);
  BOOST_TEST(c.layer_norm_eps == 1e-5);
  BOOST_TEST(c.type_vocab_size == 1);
  BOOST_TEST(c.max_position_embeddings == 514);
  BOOST_TEST(c.hidden_size == 768);
  BOOST_TEST(c.embedding_dim() == 768);
  BOOST_TEST(c.architecture() == "RobertaForSequenceClassification");

  // Without pad_token_id, RoBERTa's default is 1 (BERT's is 0).
  auto j = nlohmann::json::parse(kRobertaBase);
  j.erase("pad_token_id");
  BOOST_TEST(io::parse_hf_config(j.dump()).pad_token_id == 1);
  j["model_type"] = "bert";
  BOOST_TEST(io::parse_hf_config(j.dump()).pad_token_id == 0);
}

BOOST_AUTO_TEST_CASE(electra_base_discriminator) {
  const ModelConfig c = io::parse_hf_config(kElectraBaseDiscriminator, "electra-base-discriminator/config.json");
  BOOST_TEST((c.family == Family::Electra));
  BOOST_TEST((c.task == Task::SequenceClassification));
  BOOST_TEST(c.num_labels == 2);
  BOOST_TEST(c.embedding_size == 768);
  BOOST_TEST(c.embedding_dim() == 768);
  BOOST_TEST(c.hidden_size == 768);
  BOOST_TEST(c.vocab_size == 30522);
  BOOST_TEST(c.architecture() == "ElectraForSequenceClassification");
}

BOOST_AUTO_TEST_CASE(electra_small_token_classification) {
  const ModelConfig c = io::parse_hf_config(kElectraSmallNer, "electra-small-ner/config.json");
  BOOST_TEST((c.family == Family::Electra));
  BOOST_TEST((c.task == Task::TokenClassification));
  BOOST_TEST(c.num_labels == 9);
  BOOST_TEST(c.embedding_size == 128);
  BOOST_TEST(c.embedding_dim() == 128);
  BOOST_TEST(c.hidden_size == 256);
  BOOST_TEST(c.num_attention_heads == 4);
  BOOST_TEST(c.intermediate_size == 1024);
  BOOST_TEST(c.num_hidden_layers == 12);
  BOOST_TEST(c.architecture() == "ElectraForTokenClassification");

  // ELECTRA without embedding_size: the embeddings are hidden_size wide.
  auto j = nlohmann::json::parse(kElectraSmallNer);
  j.erase("embedding_size");
  BOOST_TEST(io::parse_hf_config(j.dump()).embedding_dim() == 256);
}

BOOST_AUTO_TEST_CASE(regression_from_problem_type_or_a_single_label) {
  // STS-B as Hugging Face writes it: one label and problem_type "regression".
  const ModelConfig c = io::parse_hf_config(kBertStsb, "bert-stsb/config.json");
  BOOST_TEST((c.task == Task::Regression));
  BOOST_TEST(c.num_labels == 1);

  // num_labels 1 alone (no problem_type) also means regression.
  auto j = nlohmann::json::parse(kBertStsb);
  j.erase("problem_type");
  BOOST_TEST((io::parse_hf_config(j.dump()).task == Task::Regression));
  j.erase("id2label");
  j.erase("label2id");
  j["num_labels"] = 1;
  const ModelConfig c2 = io::parse_hf_config(j.dump());
  BOOST_TEST((c2.task == Task::Regression));
  BOOST_TEST(c2.num_labels == 1);

  // Explicit num_labels wins over id2label; several labels are classification.
  auto k = nlohmann::json::parse(kBertBaseUncasedMnli);
  k["num_labels"] = 5;
  BOOST_TEST(io::parse_hf_config(k.dump()).num_labels == 5);
  BOOST_TEST((io::parse_hf_config(k.dump()).task == Task::SequenceClassification));

  // problem_type "regression" with more than one label is contradictory.
  auto bad = nlohmann::json::parse(kBertBaseUncasedMnli);
  bad["problem_type"] = "regression";
  BOOST_CHECK_EXCEPTION(io::parse_hf_config(bad.dump(), "contradictory/config.json"), io::Error,
                        has({"contradictory/config.json", "num_labels"}));
}

BOOST_AUTO_TEST_CASE(errors_name_the_file_and_the_field) {
  const std::string where = "models/some-checkpoint/config.json";
  {
    auto j = minimal_config();
    BOOST_CHECK_NO_THROW(io::parse_hf_config(j.dump(), where));
    j.erase("model_type");
    BOOST_CHECK_EXCEPTION(io::parse_hf_config(j.dump(), where), io::Error, has({where, "model_type", "missing"}));
  }
  {
    auto j = minimal_config();
    j["model_type"] = "gpt2";
    BOOST_CHECK_EXCEPTION(io::parse_hf_config(j.dump(), where), io::Error, has({where, "model_type", "gpt2"}));
  }
  {
    auto j = minimal_config();
    j["hidden_size"] = 30;  // 4 heads
    BOOST_CHECK_EXCEPTION(io::parse_hf_config(j.dump(), where), io::Error,
                          has({where, "hidden_size", "num_attention_heads"}));
  }
  {
    auto j = minimal_config();
    j["num_hidden_layers"] = "12";
    BOOST_CHECK_EXCEPTION(io::parse_hf_config(j.dump(), where), io::Error,
                          has({where, "num_hidden_layers", "integer"}));
  }
  {
    auto j = minimal_config();
    j["hidden_size"] = 32.5;
    BOOST_CHECK_EXCEPTION(io::parse_hf_config(j.dump(), where), io::Error, has({where, "hidden_size"}));
  }
  {
    auto j = minimal_config();
    j["layer_norm_eps"] = "1e-12";
    BOOST_CHECK_EXCEPTION(io::parse_hf_config(j.dump(), where), io::Error, has({where, "layer_norm_eps"}));
  }
  {
    auto j = minimal_config();
    j.erase("vocab_size");
    BOOST_CHECK_EXCEPTION(io::parse_hf_config(j.dump(), where), io::Error, has({where, "vocab_size", "missing"}));
  }
  {
    auto j = minimal_config();
    j["hidden_act"] = "relu";
    BOOST_CHECK_EXCEPTION(io::parse_hf_config(j.dump(), where), io::Error, has({where, "hidden_act", "relu"}));
  }
  {
    std::string text = minimal_config().dump();
    text.pop_back();  // drop the closing brace
    BOOST_CHECK_EXCEPTION(io::parse_hf_config(text, where), io::Error, has({where, "JSON"}));
    BOOST_CHECK_EXCEPTION(io::parse_hf_config("{\"model_type\": \"bert\",}", where), io::Error, has({where, "JSON"}));
    BOOST_CHECK_EXCEPTION(io::parse_hf_config("[1, 2]", where), io::Error, has({where, "object"}));
  }
}

BOOST_AUTO_TEST_CASE(load_hf_config_reads_a_folder_or_a_file) {
  TempDir tmp;
  {
    std::ofstream out(tmp.dir / "config.json");
    out << kRobertaBase;
  }
  BOOST_TEST(io::load_hf_config(tmp.dir).max_position_embeddings == 514);
  BOOST_TEST(io::load_hf_config(tmp.dir / "config.json").pad_token_id == 1);
  {
    std::ofstream out(tmp.dir / "broken.json");
    out << "{\"model_type\": \"bert\", \"vocab_size\": \"many\"}";
  }
  const std::string broken = (tmp.dir / "broken.json").string();
  BOOST_CHECK_EXCEPTION(io::load_hf_config(tmp.dir / "broken.json"), io::Error, has({broken, "vocab_size"}));
  const std::string absent = (tmp.dir / "nowhere" / "config.json").string();
  BOOST_CHECK_EXCEPTION(io::load_hf_config(tmp.dir / "nowhere" / "config.json"), io::Error, has({absent}));
}

BOOST_AUTO_TEST_CASE(to_hf_json_round_trips_for_every_family_and_task) {
  for (Family f : kFamilies) {
    for (Task t : kTasks) {
      BOOST_TEST_CONTEXT(family_name(f) << " " << task_name(t)) {
        ModelConfig c = tiny(f, t);
        c.hidden_dropout_prob = 0.15f;
        c.attention_probs_dropout_prob = 0.05f;
        if (f == Family::Roberta) c.classifier_dropout = 0.3f;
        if (f == Family::Bert) c.hidden_act = "tanh";
        const nlohmann::json j = io::to_hf_json(c);
        BOOST_TEST(j.at("model_type").get<std::string>() == family_name(f));
        BOOST_TEST(j.at("architectures").at(0).get<std::string>() == c.architecture());
        BOOST_TEST(j.at("id2label").size() == static_cast<std::size_t>(c.num_labels));
        BOOST_TEST(j.contains("embedding_size") == (f == Family::Electra));
        const ModelConfig back = io::parse_hf_config(j.dump(2), "round-trip/config.json");
        check_same_config(back, c);
      }
    }
  }
  // ELECTRA with embedding_size = hidden_size (the base model) survives too.
  ModelConfig e = tiny(Family::Electra, Task::SequenceClassification);
  e.embedding_size = 16;
  check_same_config(io::parse_hf_config(io::to_hf_json(e).dump()), e);
  // And the parsed real configs come back unchanged.
  for (const char* text : {kBertBaseUncasedMnli, kRobertaBase, kElectraBaseDiscriminator, kElectraSmallNer, kBertStsb}) {
    const ModelConfig c = io::parse_hf_config(text);
    check_same_config(io::parse_hf_config(io::to_hf_json(c).dump()), c);
  }
}

BOOST_AUTO_TEST_SUITE_END()

// =======================================================================================
BOOST_AUTO_TEST_SUITE(save_and_load)

BOOST_AUTO_TEST_CASE(save_pretrained_f64_is_bit_identical_for_every_family_and_task) {
  for (Family f : kFamilies) {
    for (Task t : kTasks) {
      BOOST_TEST_CONTEXT(family_name(f) << " " << task_name(t)) {
        TempDir tmp;
        const ModelConfig c = tiny(f, t);
        Model<double> saved(c, {.threads = 1});
        fill_distinct(saved);
        // A stale folder: another model's config.json, which save_pretrained must replace.
        {
          std::ofstream out(tmp.dir / "config.json");
          out << kRobertaBase;
        }
        io::save_pretrained(saved, tmp.dir, DType::F64);
        BOOST_TEST(tmp.listing() == (std::vector<std::string>{"config.json", "model.safetensors"}),
                   "temporary files left behind");

        const ModelConfig reread = io::load_hf_config(tmp.dir);
        check_same_config(reread, c);
        Model<double> loaded(reread, {.threads = 1});
        const io::LoadReport report = io::load_pretrained(loaded, tmp.dir);
        BOOST_TEST(report.missing.empty(), report.summary());
        BOOST_TEST(report.unused.empty(), report.summary());
        BOOST_TEST(report.loaded.size() == saved.parameters().size());
        std::string diff;
        BOOST_TEST(bit_identical(loaded, saved, diff), "first difference: " << diff);

        // The file holds F64 tensors under Hugging Face's names.
        const auto st = io::SafeTensors::load(tmp.dir / "model.safetensors");
        BOOST_TEST(st.size() == saved.parameters().size());
        BOOST_TEST((st.at(c.prefix() + ".embeddings.word_embeddings.weight").dtype == DType::F64));
        BOOST_TEST(st.metadata().count("format") == 1);
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(save_pretrained_f32_rounds_to_float) {
  TempDir tmp;
  const ModelConfig c = tiny(Family::Bert, Task::SequenceClassification);
  Model<double> saved(c, {.threads = 1});
  fill_distinct(saved);
  io::save_pretrained(saved, tmp.dir);  // default: F32
  BOOST_TEST(tmp.listing() == (std::vector<std::string>{"config.json", "model.safetensors"}));
  const auto st = io::SafeTensors::load(tmp.dir / "model.safetensors");
  BOOST_TEST((st.at("classifier.weight").dtype == DType::F32));

  Model<double> loaded(io::load_hf_config(tmp.dir), {.threads = 1});
  io::load_pretrained(loaded, tmp.dir);
  int64_t not_float = 0, too_far = 0, changed = 0, total = 0;
  for (std::size_t i = 0; i < saved.parameters().size(); ++i) {
    const auto want = values(*saved.parameters()[i]);
    const auto got = values(*loaded.parameters()[i]);
    for (std::size_t j = 0; j < want.size(); ++j) {
      ++total;
      not_float += got[j] != static_cast<double>(static_cast<float>(want[j]));
      too_far += std::abs(got[j] - want[j]) > std::ldexp(std::abs(want[j]), -24);
      changed += got[j] != want[j];
    }
  }
  BOOST_TEST(not_float == 0);
  BOOST_TEST(too_far == 0);
  BOOST_TEST(changed > total / 2);  // the values really went through float

  // A float model saved as F32 comes back bit-identical.
  TempDir tmp32;
  Model<float> saved32(c, {.threads = 1});
  fill_distinct(saved32);
  io::save_pretrained(saved32, tmp32.dir);
  Model<float> loaded32(io::load_hf_config(tmp32.dir), {.threads = 1});
  const auto report = io::load_pretrained(loaded32, tmp32.dir);
  BOOST_TEST(report.missing.empty());
  std::string diff;
  BOOST_TEST(bit_identical(loaded32, saved32, diff), "first difference: " << diff);
  BOOST_TEST(tmp32.listing() == (std::vector<std::string>{"config.json", "model.safetensors"}));
}

BOOST_AUTO_TEST_CASE(save_pretrained_overwrites_an_earlier_save) {
  TempDir tmp;
  const ModelConfig c = tiny(Family::Electra, Task::TokenClassification);
  Model<double> first(c, {.threads = 1}), second(c, {.threads = 1});
  fill_distinct(first, 0.1);
  fill_distinct(second, 2.0);
  io::save_pretrained(first, tmp.dir, DType::F64);
  io::save_pretrained(second, tmp.dir, DType::F64);
  BOOST_TEST(tmp.listing() == (std::vector<std::string>{"config.json", "model.safetensors"}));
  Model<double> loaded(c, {.threads = 1});
  io::load_pretrained(loaded, tmp.dir);
  std::string diff;
  BOOST_TEST(bit_identical(loaded, second, diff), "first difference: " << diff);
  BOOST_TEST(!bit_identical(loaded, first, diff));
}

BOOST_AUTO_TEST_SUITE_END()

// =======================================================================================
BOOST_AUTO_TEST_SUITE(load_weights)

BOOST_AUTO_TEST_CASE(wrong_shape_names_the_parameter_and_both_shapes) {
  const ModelConfig c = tiny(Family::Bert, Task::SequenceClassification);
  Model<double> source(c, {.threads = 1}), target(c, {.threads = 1});
  fill_distinct(source);
  io::SafeTensors st = checkpoint_of(source);
  const std::vector<double> narrow(16 * 8, 0.25);
  st.insert<double>("bert.encoder.layer.0.attention.self.query.weight", {16, 8}, std::span<const double>(narrow));
  const auto file = as_file(st, "wrong_shape.safetensors");
  BOOST_CHECK_EXCEPTION(io::load_weights(target, file), io::Error,
                        has({"wrong_shape.safetensors", "bert.encoder.layer.0.attention.self.query.weight",
                             "[16, 8]", "[16, 16]"}));
  BOOST_CHECK_EXCEPTION(io::load_weights(target, file, true), io::Error, has({"[16, 8]", "[16, 16]"}));

  // A head of the wrong label count (a 3-way head into a 2-way model); tensors are read in
  // name order, so the bias is the first to disagree.
  ModelConfig two = c;
  two.num_labels = 2;
  Model<double> binary(two, {.threads = 1});
  BOOST_CHECK_EXCEPTION(io::load_weights(binary, as_file(checkpoint_of(source), "mnli.safetensors")), io::Error,
                        has({"mnli.safetensors", "\"classifier.bias\"", "[3]", "[2]"}));
  io::SafeTensors weight_only = checkpoint_of(source);
  weight_only.erase("classifier.bias");
  BOOST_CHECK_EXCEPTION(io::load_weights(binary, as_file(weight_only, "mnli.safetensors")), io::Error,
                        has({"\"classifier.weight\"", "[3, 16]", "[2, 16]"}));
}

BOOST_AUTO_TEST_CASE(a_failing_load_leaves_the_model_untouched) {
  const ModelConfig c = tiny(Family::Bert, Task::SequenceClassification);
  Model<double> source(c, {.threads = 1}), target(c, {.threads = 1});
  fill_distinct(source);
  io::SafeTensors st = checkpoint_of(source);
  // The bad tensor sorts last, after every good one.
  const std::vector<double> narrow(3, 0.25);
  st.insert<double>("classifier.weight", {3}, std::span<const double>(narrow));
  const auto* word = target.find_parameter("bert.embeddings.word_embeddings.weight");
  const std::vector<double> before(word->value.data(), word->value.data() + word->value.numel());
  BOOST_CHECK_THROW(io::load_weights(target, as_file(st, "bad_last.safetensors")), io::Error);
  BOOST_TEST(std::equal(before.begin(), before.end(), word->value.data()));
  st.erase("classifier.weight");
  BOOST_CHECK_THROW(io::load_weights(target, as_file(st, "missing.safetensors"), true), io::Error);
  BOOST_TEST(std::equal(before.begin(), before.end(), word->value.data()));
}

BOOST_AUTO_TEST_CASE(strict_mode_lists_missing_parameters) {
  const ModelConfig c = tiny(Family::Bert, Task::SequenceClassification);
  Model<double> source(c, {.threads = 1}), target(c, {.threads = 1});
  fill_distinct(source);
  io::SafeTensors st = checkpoint_of(source);
  BOOST_CHECK_NO_THROW(io::load_weights(target, as_file(st, "complete.safetensors"), true));
  st.erase("classifier.weight");
  st.erase("bert.encoder.layer.1.output.LayerNorm.bias");
  BOOST_CHECK_EXCEPTION(io::load_weights(target, as_file(st, "partial.safetensors"), true), io::Error,
                        has({"partial.safetensors", "classifier.weight", "bert.encoder.layer.1.output.LayerNorm.bias"}));
  BOOST_CHECK_NO_THROW(io::load_weights(target, as_file(st, "partial.safetensors"), false));
}

BOOST_AUTO_TEST_CASE(non_strict_reports_missing_and_unused) {
  const ModelConfig c = tiny(Family::Bert, Task::SequenceClassification);
  Model<double> source(c, {.threads = 1}), target(c, {.threads = 1});
  fill_distinct(source);
  fill_constant(target, 3.0);
  io::SafeTensors st = checkpoint_of(source);
  const std::vector<double> extra(40, 0.5);
  st.insert<double>("cls.predictions.bias", {40}, std::span<const double>(extra));
  st.erase("classifier.weight");
  const io::LoadReport r = io::load_weights(target, as_file(st, "pretraining.safetensors"));
  BOOST_TEST(r.missing == (std::vector<std::string>{"classifier.weight"}));
  BOOST_TEST(r.unused == (std::vector<std::string>{"cls.predictions.bias"}));
  BOOST_TEST(r.loaded.size() == source.parameters().size() - 1);
  BOOST_TEST((std::find(r.loaded.begin(), r.loaded.end(), "classifier.weight") == r.loaded.end()));
  BOOST_TEST((std::find(r.loaded.begin(), r.loaded.end(), "classifier.bias") != r.loaded.end()));
  for (std::size_t i = 0; i < source.parameters().size(); ++i) {
    const auto* p = target.parameters()[i];
    if (p->name == "classifier.weight") {
      // Left as it was.
      const auto v = values(*p);
      BOOST_TEST(std::all_of(v.begin(), v.end(), [](double x) { return x == 3.0; }), p->name << " was overwritten");
    } else {
      BOOST_TEST(values(*p) == values(*source.parameters()[i]), p->name);
    }
  }
  BOOST_TEST(r.summary().find("cls.predictions.bias") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(bare_body_checkpoint_loads) {
  // An AutoModel checkpoint: body names without the "bert." / "electra." prefix.
  for (Family f : {Family::Bert, Family::Electra}) {
    BOOST_TEST_CONTEXT(family_name(f)) {
      const ModelConfig c = tiny(f, Task::SequenceClassification);
      Model<double> source(c, {.threads = 1}), target(c, {.threads = 1});
      fill_distinct(source);
      const std::string prefix = c.prefix() + ".";
      io::SafeTensors st;
      int stripped = 0;
      for (const auto* p : source.parameters()) {
        std::string name = p->name;
        if (name.rfind(prefix, 0) == 0) {
          name = name.substr(prefix.size());
          ++stripped;
        }
        const auto v = values(*p);
        st.insert<double>(name, dims(p->value.shape()), std::span<const double>(v));
      }
      BOOST_TEST(stripped > 20);
      BOOST_TEST(st.contains("embeddings.word_embeddings.weight"));
      const io::LoadReport r = io::load_weights(target, as_file(st, "body.safetensors"), true);
      BOOST_TEST(r.missing.empty(), r.summary());
      BOOST_TEST(r.unused.empty(), r.summary());
      std::string diff;
      BOOST_TEST(bit_identical(target, source, diff), "first difference: " << diff);
      // The report names the model's parameters, not the stored names.
      BOOST_TEST((std::find(r.loaded.begin(), r.loaded.end(), prefix + "embeddings.word_embeddings.weight") !=
                  r.loaded.end()));
    }
  }
}

BOOST_AUTO_TEST_CASE(legacy_gamma_beta_names_load) {
  const ModelConfig c = tiny(Family::Bert, Task::SequenceClassification);
  Model<double> source(c, {.threads = 1}), target(c, {.threads = 1});
  fill_distinct(source);
  io::SafeTensors st;
  int renamed = 0;
  for (const auto* p : source.parameters()) {
    std::string name = p->name;
    for (const auto& [from, to] : {std::pair<std::string, std::string>{"LayerNorm.weight", "LayerNorm.gamma"},
                                   std::pair<std::string, std::string>{"LayerNorm.bias", "LayerNorm.beta"}}) {
      if (name.size() > from.size() && name.compare(name.size() - from.size(), from.size(), from) == 0) {
        name = name.substr(0, name.size() - from.size()) + to;
        ++renamed;
      }
    }
    const auto v = values(*p);
    st.insert<double>(name, dims(p->value.shape()), std::span<const double>(v));
  }
  BOOST_TEST(renamed == 2 + 2 * 2 * 2);  // embeddings + two per layer, weight and bias each
  BOOST_TEST(st.contains("bert.embeddings.LayerNorm.gamma"));
  BOOST_TEST(st.contains("bert.encoder.layer.1.attention.output.LayerNorm.beta"));
  const io::LoadReport r = io::load_weights(target, as_file(st, "legacy.safetensors"), true);
  BOOST_TEST(r.unused.empty(), r.summary());
  BOOST_TEST(r.missing.empty(), r.summary());
  std::string diff;
  BOOST_TEST(bit_identical(target, source, diff), "first difference: " << diff);
  BOOST_TEST((std::find(r.loaded.begin(), r.loaded.end(), "bert.embeddings.LayerNorm.weight") != r.loaded.end()));
}

BOOST_AUTO_TEST_CASE(half_and_bfloat16_checkpoints_load_into_a_float_model) {
  const ModelConfig c = tiny(Family::Roberta, Task::SequenceClassification);
  Model<float> source(c, {.threads = 1});
  fill_distinct(source);
  source.find_parameter("classifier.out_proj.bias")->value.data()[0] = 0.1f;
  for (DType dtype : {DType::F16, DType::BF16}) {
    BOOST_TEST_CONTEXT(dtype) {
      Model<float> target(c, {.threads = 1});
      io::SafeTensors st;
      for (const auto* p : source.parameters()) {
        const std::vector<float> v(p->value.data(), p->value.data() + p->value.numel());
        st.insert<float>(p->name, dims(p->value.shape()), std::span<const float>(v), dtype);
      }
      const io::LoadReport r = io::load_weights(target, as_file(st, "half.safetensors"), true);
      BOOST_TEST(r.missing.empty());
      int64_t wrong = 0, changed = 0, total = 0;
      for (std::size_t i = 0; i < source.parameters().size(); ++i) {
        const auto* s = source.parameters()[i];
        const auto* t = target.parameters()[i];
        for (int64_t j = 0; j < s->value.numel(); ++j) {
          const float v = s->value.data()[j];
          const float want = dtype == DType::F16 ? io::half_to_float(io::float_to_half(v))
                                                 : io::bf16_to_float(io::float_to_bf16(v));
          wrong += t->value.data()[j] != want;
          changed += t->value.data()[j] != v;
          // F16 keeps 11 significant bits, BF16 8: relative rounding error 2^-11 or 2^-8 (normal range).
          if (std::abs(v) > 1e-4f)
            wrong += std::abs(t->value.data()[j] - v) > std::ldexp(std::abs(v), dtype == DType::F16 ? -11 : -8);
          ++total;
        }
      }
      BOOST_TEST(wrong == 0);
      BOOST_TEST(changed > total / 2);
      // 0.1 rounds to 0x2E66 = 0.0999755859375 in F16 and 0x3DCD = 0.10009765625 in BF16.
      const float tenth = target.find_parameter("classifier.out_proj.bias")->value.data()[0];
      BOOST_TEST(tenth == (dtype == DType::F16 ? 0.0999755859375f : 0.10009765625f));
    }
  }
}

BOOST_AUTO_TEST_CASE(integer_tensor_for_a_float_parameter_is_an_error) {
  const ModelConfig c = tiny(Family::Bert, Task::SequenceClassification);
  Model<float> source(c, {.threads = 1}), target(c, {.threads = 1});
  fill_distinct(source);
  io::SafeTensors st = checkpoint_of(source, DType::F32);
  const std::vector<int32_t> ints{1, 2, 3};
  st.insert<int32_t>("classifier.bias", {3}, std::span<const int32_t>(ints));
  BOOST_CHECK_EXCEPTION(io::load_weights(target, as_file(st, "ints.safetensors")), io::Error,
                        has({"ints.safetensors", "classifier.bias", "I32"}));
  const std::vector<int64_t> longs(16 * 16, 1);
  io::SafeTensors st64 = checkpoint_of(source, DType::F32);
  st64.insert<int64_t>("bert.pooler.dense.weight", {16, 16}, std::span<const int64_t>(longs));
  BOOST_CHECK_EXCEPTION(io::load_weights(target, as_file(st64, "longs.safetensors")), io::Error,
                        has({"longs.safetensors", "bert.pooler.dense.weight", "I64"}));
}

BOOST_AUTO_TEST_SUITE_END()

// =======================================================================================
BOOST_AUTO_TEST_SUITE(load_pretrained)

BOOST_AUTO_TEST_CASE(missing_head_is_initialised_and_reported) {
  struct Case { Family family; std::vector<std::string> head, head_weights; };
  const std::vector<Case> cases{
      {Family::Bert, {"classifier.bias", "classifier.weight"}, {"classifier.weight"}},
      {Family::Roberta,
       {"classifier.dense.bias", "classifier.dense.weight", "classifier.out_proj.bias", "classifier.out_proj.weight"},
       {"classifier.dense.weight", "classifier.out_proj.weight"}}};
  for (const Case& k : cases) {
    BOOST_TEST_CONTEXT(family_name(k.family)) {
      TempDir tmp;
      const ModelConfig c = tiny(k.family, Task::SequenceClassification);
      Model<double> source(c, {.threads = 1});
      fill_distinct(source);
      io::save_pretrained(source, tmp.dir, DType::F64);
      // Replace the weights by a body-only checkpoint (a pre-trained model without a task head).
      io::SafeTensors body = checkpoint_of(source);
      for (const auto& h : k.head) BOOST_TEST_REQUIRE(body.erase(h));
      body.save(tmp.dir / "model.safetensors");

      Model<double> fresh(io::load_hf_config(tmp.dir), {.threads = 1});
      fill_constant(fresh, 7.0);
      const io::LoadReport r = io::load_pretrained(fresh, tmp.dir, 3);
      BOOST_TEST(sorted(r.missing) == k.head, r.summary());
      BOOST_TEST(r.unused.empty(), r.summary());
      BOOST_TEST(r.loaded.size() == source.parameters().size() - k.head.size());

      for (std::size_t i = 0; i < fresh.parameters().size(); ++i) {
        const auto* p = fresh.parameters()[i];
        const auto got = values(*p);
        const bool in_head = std::find(k.head.begin(), k.head.end(), p->name) != k.head.end();
        if (!in_head) {
          BOOST_TEST(got == values(*source.parameters()[i]), p->name << " not loaded");
        } else if (p->name.ends_with(".bias")) {
          BOOST_TEST(std::all_of(got.begin(), got.end(), [](double x) { return x == 0.0; }), p->name << " not zeroed");
        } else {
          double sum_sq = 0, max_abs = 0;
          int64_t zeros = 0;
          for (double v : got) {
            sum_sq += v * v;
            max_abs = std::max(max_abs, std::abs(v));
            zeros += v == 0.0;
          }
          const double sd = std::sqrt(sum_sq / static_cast<double>(got.size()));
          BOOST_TEST(zeros == 0, p->name);
          BOOST_TEST(max_abs < 0.15, p->name << " max |w| " << max_abs);  // not the 7.0 it held
          BOOST_TEST((sd > 0.012 && sd < 0.028), p->name << " std " << sd);
        }
      }

      // The head's initialisation is a function of the seed.
      Model<double> again(c, {.threads = 1}), other(c, {.threads = 1});
      io::load_pretrained(again, tmp.dir, 3);
      io::load_pretrained(other, tmp.dir, 4);
      for (const auto& w : k.head_weights) {
        BOOST_TEST(values(*again.find_parameter(w)) == values(*fresh.find_parameter(w)), w);
        BOOST_TEST(values(*other.find_parameter(w)) != values(*fresh.find_parameter(w)), w);
      }
      // Two head matrices of one model are not copies of each other.
      if (k.head_weights.size() == 2) {
        const auto a = values(*fresh.find_parameter(k.head_weights[0]));
        const auto b = values(*fresh.find_parameter(k.head_weights[1]));
        BOOST_TEST(!std::equal(b.begin(), b.end(), a.begin()));
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(folder_without_model_safetensors_is_an_error) {
  TempDir tmp;
  const ModelConfig c = tiny(Family::Bert, Task::SequenceClassification);
  {
    std::ofstream out(tmp.dir / "config.json");
    out << io::to_hf_json(c).dump(2);
    std::ofstream bin(tmp.dir / "pytorch_model.bin");
    bin << "not a safetensors file";
  }
  Model<double> m(c, {.threads = 1});
  const std::string path = (tmp.dir / "model.safetensors").string();
  BOOST_CHECK_EXCEPTION(io::load_pretrained(m, tmp.dir), io::Error, has({path, "not found"}));
  const std::string elsewhere = (tmp.dir / "no_such_folder" / "model.safetensors").string();
  BOOST_CHECK_EXCEPTION(io::load_pretrained(m, tmp.dir / "no_such_folder"), io::Error, has({elsewhere}));
}

BOOST_AUTO_TEST_SUITE_END()

// =======================================================================================
BOOST_AUTO_TEST_SUITE(batch_validation)

namespace {
models::Batch valid_batch(const ModelConfig& c, int64_t B, int64_t L) {
  models::Batch b;
  b.size = B;
  b.length = L;
  for (int64_t i = 0; i < B * L; ++i) {
    b.input_ids.push_back(static_cast<int32_t>(2 + i % (c.vocab_size - 2)));
    b.attention_mask.push_back(1);
    b.token_type_ids.push_back(0);
  }
  if (c.task == Task::Regression) {
    for (int64_t i = 0; i < B; ++i) b.targets.push_back(0.5 * static_cast<double>(i));
  } else {
    const int64_t rows = c.task == Task::TokenClassification ? B * L : B;
    for (int64_t i = 0; i < rows; ++i) b.labels.push_back(static_cast<int32_t>(i % c.num_labels));
  }
  return b;
}
}  // namespace

BOOST_AUTO_TEST_CASE(valid_batches_pass) {
  for (Family f : kFamilies)
    for (Task t : kTasks) {
      const ModelConfig c = tiny(f, t);
      BOOST_CHECK_NO_THROW(valid_batch(c, 2, 5).validate(c, true));
    }
}

BOOST_AUTO_TEST_CASE(token_id_outside_the_vocabulary) {
  const ModelConfig c = tiny(Family::Bert, Task::SequenceClassification);
  auto b = valid_batch(c, 2, 5);
  b.input_ids[1 * 5 + 2] = 40;  // vocab_size 40
  BOOST_CHECK_EXCEPTION(b.validate(c, false), std::invalid_argument, has({"input_ids[1][2]", "40", "vocabulary"}));
  b.input_ids[1 * 5 + 2] = 39;
  BOOST_CHECK_NO_THROW(b.validate(c, false));
  b.input_ids[3] = -1;
  BOOST_CHECK_EXCEPTION(b.validate(c, false), std::invalid_argument, has({"input_ids[0][3]", "-1"}));
  b.input_ids[3] = 0;
  b.token_type_ids[6] = 2;  // type_vocab_size 2
  BOOST_CHECK_EXCEPTION(b.validate(c, false), std::invalid_argument, has({"token_type_ids[1][1]"}));
}

BOOST_AUTO_TEST_CASE(length_beyond_max_position_embeddings) {
  const ModelConfig c = tiny(Family::Bert, Task::SequenceClassification);  // 24 positions
  BOOST_CHECK_NO_THROW(valid_batch(c, 1, 24).validate(c, true));
  BOOST_CHECK_EXCEPTION(valid_batch(c, 1, 25).validate(c, true), std::invalid_argument,
                        has({"25", "max_position_embeddings", "24"}));
  // RoBERTa's positions start at pad_token_id + 1 = 2, so 24 rows hold 22 tokens.
  const ModelConfig r = tiny(Family::Roberta, Task::SequenceClassification);
  BOOST_CHECK_NO_THROW(valid_batch(r, 1, 22).validate(r, true));
  BOOST_CHECK_EXCEPTION(valid_batch(r, 1, 23).validate(r, true), std::invalid_argument,
                        has({"max_position_embeddings"}));
  // roberta-base: 514 positions, 512 tokens.
  const ModelConfig rb = io::parse_hf_config(kRobertaBase);
  BOOST_CHECK_NO_THROW(valid_batch(rb, 1, 512).validate(rb, false));
  BOOST_CHECK_EXCEPTION(valid_batch(rb, 1, 513).validate(rb, false), std::invalid_argument,
                        has({"513", "max_position_embeddings", "514"}));
}

BOOST_AUTO_TEST_CASE(wrong_label_count) {
  const ModelConfig c = tiny(Family::Bert, Task::SequenceClassification);
  auto b = valid_batch(c, 2, 5);
  b.labels.push_back(0);
  BOOST_CHECK_EXCEPTION(b.validate(c, true), std::invalid_argument, has({"labels", "3", "2"}));
  BOOST_CHECK_NO_THROW(b.validate(c, false));  // labels only matter when asked for

  const ModelConfig t = tiny(Family::Electra, Task::TokenClassification);
  auto bt = valid_batch(t, 2, 5);
  bt.labels.resize(2);  // one per sequence instead of one per token
  BOOST_CHECK_EXCEPTION(bt.validate(t, true), std::invalid_argument, has({"labels", "10"}));

  const ModelConfig g = tiny(Family::Roberta, Task::Regression);
  auto bg = valid_batch(g, 2, 5);
  bg.targets.pop_back();
  BOOST_CHECK_EXCEPTION(bg.validate(g, true), std::invalid_argument, has({"targets"}));

  auto short_mask = valid_batch(c, 2, 5);
  short_mask.attention_mask.pop_back();
  BOOST_CHECK_EXCEPTION(short_mask.validate(c, false), std::invalid_argument, has({"attention_mask", "9", "10"}));
}

BOOST_AUTO_TEST_CASE(label_out_of_range) {
  const ModelConfig c = tiny(Family::Bert, Task::SequenceClassification);  // 3 labels
  auto b = valid_batch(c, 2, 5);
  b.labels[1] = 3;
  BOOST_CHECK_EXCEPTION(b.validate(c, true), std::invalid_argument, has({"labels[1]", "3", "[0, 3)"}));
  b.labels[1] = -1;
  BOOST_CHECK_EXCEPTION(b.validate(c, true), std::invalid_argument, has({"labels[1]", "-1"}));
  // -100 (ignored) is allowed.
  const ModelConfig t = tiny(Family::Bert, Task::TokenClassification);
  auto bt = valid_batch(t, 2, 5);
  bt.labels[4] = -100;
  BOOST_CHECK_NO_THROW(bt.validate(t, true));
  bt.labels[7] = 3;
  BOOST_CHECK_EXCEPTION(bt.validate(t, true), std::invalid_argument, has({"labels[7]"}));
}

BOOST_AUTO_TEST_SUITE_END()

// =======================================================================================
BOOST_AUTO_TEST_SUITE(init)

BOOST_AUTO_TEST_CASE(deterministic_for_a_seed_and_different_across_seeds) {
  const ModelConfig c = tiny(Family::Electra, Task::SequenceClassification);
  Model<double> a(c, {.threads = 1}), b(c, {.threads = 2}), d(c, {.threads = 1});
  fill_constant(b, 5.0);
  models::init_weights(a, 42);
  models::init_weights(b, 42);
  models::init_weights(d, 43);
  std::string diff;
  BOOST_TEST(bit_identical(a, b, diff), "first difference: " << diff);
  const auto w42 = values(*a.find_parameter("electra.embeddings.word_embeddings.weight"));
  const auto w43 = values(*d.find_parameter("electra.embeddings.word_embeddings.weight"));
  int64_t same = 0;
  for (std::size_t i = 0; i < w42.size(); ++i) same += w42[i] == w43[i];
  BOOST_TEST(same < 40, same << " equal entries");  // the padding row (8 zeros) is the same
  // Parameters of the same shape get independent draws.
  const auto q = values(*a.find_parameter("electra.encoder.layer.0.attention.self.query.weight"));
  const auto k = values(*a.find_parameter("electra.encoder.layer.0.attention.self.key.weight"));
  const auto q1 = values(*a.find_parameter("electra.encoder.layer.1.attention.self.query.weight"));
  BOOST_TEST(q != k);
  BOOST_TEST(q != q1);
  // float and double models get the same draws (rounded).
  Model<float> f(c, {.threads = 1});
  models::init_weights(f, 42);
  const auto* pf = f.find_parameter("electra.encoder.layer.0.attention.self.query.weight");
  int64_t mismatches = 0;
  for (std::size_t i = 0; i < q.size(); ++i) mismatches += pf->value.data()[i] != static_cast<float>(q[i]);
  BOOST_TEST(mismatches == 0);
}

BOOST_AUTO_TEST_CASE(layer_norm_bias_and_padding_rows) {
  for (Family fam : kFamilies) {
    BOOST_TEST_CONTEXT(family_name(fam)) {
      const ModelConfig c = tiny(fam, Task::SequenceClassification);
      Model<double> m(c, {.threads = 1});
      fill_constant(m, 5.0);  // so that zeros and ones below come from the initialisation
      models::init_weights(m, 7);
      int layer_norms = 0, biases = 0, matrices = 0;
      for (const auto* p : m.parameters()) {
        const auto v = values(*p);
        const bool ln = p->name.find("LayerNorm") != std::string::npos;
        const bool bias = p->name.ends_with(".bias");
        if (ln && !bias) {
          ++layer_norms;
          BOOST_TEST(std::all_of(v.begin(), v.end(), [](double x) { return x == 1.0; }), p->name);
        } else if (bias) {
          ++biases;
          BOOST_TEST(std::all_of(v.begin(), v.end(), [](double x) { return x == 0.0; }), p->name);
        } else {
          ++matrices;
          double max_abs = 0;
          for (double x : v) max_abs = std::max(max_abs, std::abs(x));
          BOOST_TEST((max_abs > 0.0 && max_abs < 0.15), p->name << " max |w| " << max_abs);
        }
      }
      BOOST_TEST(layer_norms == 1 + 2 * 2);
      BOOST_TEST(biases > 10);
      BOOST_TEST(matrices > 10);

      const int64_t E = c.embedding_dim(), pad = c.pad_token_id;
      auto row_is_zero = [&](const std::string& name, int64_t row) {
        const auto v = values(*m.find_parameter(name));
        return std::all_of(v.begin() + row * E, v.begin() + (row + 1) * E, [](double x) { return x == 0.0; });
      };
      const std::string word = c.prefix() + ".embeddings.word_embeddings.weight";
      const std::string position = c.prefix() + ".embeddings.position_embeddings.weight";
      BOOST_TEST(row_is_zero(word, pad));
      BOOST_TEST(!row_is_zero(word, pad + 1));
      BOOST_TEST(!row_is_zero(word, pad == 0 ? 2 : 0));
      // RoBERTa's position table also has a padding row (padding_idx = pad_token_id).
      BOOST_TEST(row_is_zero(position, pad) == (fam == Family::Roberta));
      BOOST_TEST(!row_is_zero(position, pad + 1));
    }
  }
}

BOOST_AUTO_TEST_CASE(std_of_a_large_matrix_is_the_initializer_range) {
  ModelConfig c = tiny(Family::Bert, Task::SequenceClassification);
  c.vocab_size = 2000;
  c.hidden_size = 64;
  c.intermediate_size = 128;
  Model<double> m(c, {.threads = 1});
  models::init_weights(m, 1234);
  auto moments = [&](const std::string& name, double& mean, double& sd) {
    const auto v = values(*m.find_parameter(name));
    double s = 0, s2 = 0;
    for (double x : v) {
      s += x;
      s2 += x * x;
    }
    mean = s / static_cast<double>(v.size());
    sd = std::sqrt(s2 / static_cast<double>(v.size()) - mean * mean);
    return v.size();
  };
  double mean = 0, sd = 0;
  // 128000 draws: sd of the mean 0.02/sqrt(n) = 5.6e-5, relative sd of the std 1/sqrt(2n) = 0.2%.
  const auto n = moments("bert.embeddings.word_embeddings.weight", mean, sd);
  BOOST_TEST(n == 128000u);
  BOOST_TEST(std::abs(mean) < 3e-4, "mean " << mean);
  BOOST_TEST(std::abs(sd - 0.02) < 0.02 * 0.015, "std " << sd);
  moments("bert.encoder.layer.1.intermediate.dense.weight", mean, sd);  // 8192 draws
  BOOST_TEST(std::abs(sd - 0.02) < 0.02 * 0.05, "std " << sd);
  // The initializer range scales the draws exactly.
  Model<double> wide(c, {.threads = 1});
  models::init_weights(wide, 1234, 0.1);
  const auto a = values(*m.find_parameter("bert.pooler.dense.weight"));
  const auto b = values(*wide.find_parameter("bert.pooler.dense.weight"));
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(b[i] - 5.0 * a[i]));
  BOOST_TEST(worst < 1e-15);
}

BOOST_AUTO_TEST_SUITE_END()

// =======================================================================================
BOOST_AUTO_TEST_SUITE(golden_fixture_names)

BOOST_AUTO_TEST_CASE(every_fixture_loads_strictly_with_nothing_left_over) {
  for (const char* name : {"bert_seqcls", "bert_regression", "bert_token", "roberta_seqcls", "electra_seqcls",
                           "electra_token"}) {
    BOOST_TEST_CONTEXT(name) {
      const fs::path dir = fs::path(ADDROP_FIXTURE_DIR) / name;
      const ModelConfig c = io::load_hf_config(dir);
      Model<double> model(c, {.threads = 1});
      const auto file = io::SafeTensors::load(dir / "model.safetensors");
      const io::LoadReport r = io::load_weights(model, file, true);
      BOOST_TEST(r.unused.empty(), r.summary());
      BOOST_TEST(r.missing.empty(), r.summary());
      BOOST_TEST(r.loaded.size() == model.parameters().size());

      const auto names = parameter_names(model);
      const std::set<std::string> unique(names.begin(), names.end());
      BOOST_TEST(unique.size() == names.size(), "duplicate parameter names");
      const auto stored = file.names();
      BOOST_TEST((std::set<std::string>(stored.begin(), stored.end()) == unique));
      // Loaded exactly (F64 file into a double model).
      for (const auto* p : model.parameters()) BOOST_TEST(values(*p) == file.values<double>(p->name), p->name);
      // Hugging Face's state-dict order: embeddings, (projection), layers in order, head last.
      BOOST_TEST(names.front() == c.prefix() + ".embeddings.word_embeddings.weight");
      BOOST_TEST(names.back().rfind("classifier", 0) == 0);
      auto index_of = [&](const std::string& n) { return std::find(names.begin(), names.end(), n) - names.begin(); };
      BOOST_TEST(index_of(c.prefix() + ".encoder.layer.0.attention.self.query.weight") <
                 index_of(c.prefix() + ".encoder.layer.1.attention.self.query.weight"));
      BOOST_TEST(index_of(c.prefix() + ".embeddings.LayerNorm.bias") <
                 index_of(c.prefix() + ".encoder.layer.0.attention.self.query.weight"));
    }
  }
}

BOOST_AUTO_TEST_CASE(bert_seqcls_parameters_in_hugging_face_order) {
  const fs::path dir = fs::path(ADDROP_FIXTURE_DIR) / "bert_seqcls";
  const ModelConfig c = io::load_hf_config(dir);
  Model<double> model(c, {.threads = 1});
  const auto report = io::load_weights(model, io::SafeTensors::load(dir / "model.safetensors"), true);
  BOOST_TEST(report.unused.empty());
  BOOST_TEST(report.missing.empty());
  // BertForSequenceClassification.state_dict().keys() of transformers (no buffers).
  std::vector<std::string> want{"bert.embeddings.word_embeddings.weight", "bert.embeddings.position_embeddings.weight",
                                "bert.embeddings.token_type_embeddings.weight", "bert.embeddings.LayerNorm.weight",
                                "bert.embeddings.LayerNorm.bias"};
  for (int l = 0; l < 2; ++l) {
    const std::string p = "bert.encoder.layer." + std::to_string(l) + ".";
    for (const char* s : {"attention.self.query.weight", "attention.self.query.bias", "attention.self.key.weight",
                          "attention.self.key.bias", "attention.self.value.weight", "attention.self.value.bias",
                          "attention.output.dense.weight", "attention.output.dense.bias",
                          "attention.output.LayerNorm.weight", "attention.output.LayerNorm.bias",
                          "intermediate.dense.weight", "intermediate.dense.bias", "output.dense.weight",
                          "output.dense.bias", "output.LayerNorm.weight", "output.LayerNorm.bias"})
      want.push_back(p + s);
  }
  for (const char* s : {"bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight", "classifier.bias"})
    want.push_back(s);
  BOOST_TEST(parameter_names(model) == want, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_SUITE_END()

// =======================================================================================
// Memory: the estimate counts what the model allocates; a config or run that cannot fit
// is refused before anything is allocated, naming what drives the need and the numbers.
BOOST_AUTO_TEST_SUITE(memory)

namespace {
ModelConfig bert_base() { return io::parse_hf_config(kBertBaseUncasedMnli, "bert-base/config.json"); }
constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

// The error check_memory throws (or a default one with an empty message when none).
models::MemoryError memory_error(const ModelConfig& c, const models::RunShape& shape, double available) {
  try {
    models::check_memory(c, shape, available);
  } catch (const models::MemoryError& e) {
    return e;
  }
  BOOST_ERROR("check_memory accepted a run it should refuse");
  return {models::MemoryDriver::Model, "", "", 0};
}
}  // namespace

BOOST_AUTO_TEST_CASE(parameter_counts_match_the_built_model) {
  for (Family f : kFamilies)
    for (Task t : kTasks) {
      const ModelConfig c = tiny(f, t);
      Model<float> model(c);
      double n = 0;
      for (const auto* p : model.parameters()) n += static_cast<double>(p->value.numel());
      BOOST_TEST(c.parameter_counts().total() == n, family_name(f) << " " << task_name(t));
    }
  BOOST_TEST(bert_base().parameter_counts().total() == 109484547.0);  // BertForSequenceClassification, 3 labels
}

BOOST_AUTO_TEST_CASE(estimate_counts_weights_optimizer_and_attention) {
  const ModelConfig c = bert_base();
  const double P = c.parameter_counts().total();
  const models::MemoryEstimate e = models::estimate_memory(c, {.batch_size = 32, .sequence_length = 128});
  BOOST_TEST(e.model == 2 * P * 4);      // weights and gradients
  BOOST_TEST(e.optimizer == 2 * P * 4);  // AdamW's m and v
  const double A = 32.0 * 12 * 128 * 128 * 4;  // one [B, H, L, L] float tensor
  BOOST_TEST(e.attention == (12 * 3 + 1) * A);  // per layer probs, dropped, grad; the scores' gradient
  BOOST_TEST(e.activations > e.attention);
  BOOST_TEST(e.total() == e.model + e.optimizer + e.activations);
  // Attention grows with the square of the length; AD-DROP adds scores and a mask per target layer.
  BOOST_TEST(models::estimate_memory(c, {.batch_size = 32, .sequence_length = 256}).attention == 4 * e.attention);
  const auto ad = models::estimate_memory(c, {.batch_size = 32, .sequence_length = 128, .target_layers = 2});
  BOOST_TEST(ad.attention == e.attention + 2 * 2 * A);
  // Integrated gradients' stacked passes add at least one more workspace.
  BOOST_TEST(models::estimate_memory(c, {.batch_size = 32, .sequence_length = 128, .target_layers = 2, .ig_steps = 20})
                 .activations > ad.activations + e.activations * 0.9);
  // Evaluation batches larger than training ones size the workspace (but not attention
  // dropout's copy, which only training makes); no optimizer, no state.
  const auto ev = models::estimate_memory(c, {.batch_size = 32, .eval_batch_size = 64, .sequence_length = 128});
  BOOST_TEST(ev.attention == (12 * (2 * 2 + 1) + 2) * A);
  BOOST_TEST(ev.activations > 1.8 * e.activations);
  BOOST_TEST(models::estimate_memory(c, {.batch_size = 32, .sequence_length = 128, .optimizer = false}).optimizer == 0);
  BOOST_TEST(models::estimate_memory(c, {.value_bytes = 8}).model == 2 * P * 8);
}

BOOST_AUTO_TEST_CASE(a_run_that_fits_passes) {
  BOOST_CHECK_NO_THROW(models::check_memory(bert_base(), {.batch_size = 32, .sequence_length = 128}, 16 * kGiB));
  // Unknown machine memory: nothing to check against.
  BOOST_CHECK_NO_THROW(models::check_memory(bert_base(), {.batch_size = 1 << 20, .sequence_length = 1 << 20}, 0));
}

BOOST_AUTO_TEST_CASE(a_long_sequence_names_the_length_and_the_attention) {
  const auto e = memory_error(bert_base(), {.batch_size = 32, .sequence_length = 100000}, 23.4 * kGiB);
  BOOST_TEST((e.driver == models::MemoryDriver::SequenceLength));
  BOOST_TEST(e.value == 100000);
  BOOST_TEST(e.quantity == "sequence length 100000");
  const std::string msg = e.what();
  BOOST_TEST_INFO(msg);
  for (const char* w : {"sequence length 100000: attention scores need ", " TiB at batch size 32",
                        "even for one example", "this machine has 23.4 GiB"})
    BOOST_TEST(msg.find(w) != std::string::npos, w);
  BOOST_TEST(msg.find("--") == std::string::npos);  // the library names quantities, not a program's flags
}

BOOST_AUTO_TEST_CASE(a_large_batch_names_the_batch_and_the_largest_that_fits) {
  const ModelConfig c = bert_base();
  const double machine = 23.4 * kGiB;
  const auto e = memory_error(c, {.batch_size = 100000, .sequence_length = 128}, machine);
  BOOST_TEST((e.driver == models::MemoryDriver::BatchSize));
  BOOST_TEST(e.value == 100000);
  const std::string msg = e.what();
  BOOST_TEST_INFO(msg);
  BOOST_TEST(msg.find("batch size 100000: activations need ") == 0u);
  BOOST_TEST(msg.find("at sequence length 128") != std::string::npos);
  // "at most K examples per batch fit": K fits and K + 1 does not.
  const auto at = msg.find("at most ");
  BOOST_REQUIRE(at != std::string::npos);
  const int64_t k = std::stoll(msg.substr(at + 8));
  BOOST_TEST(k > 1);
  BOOST_CHECK_NO_THROW(models::check_memory(c, {.batch_size = k, .sequence_length = 128}, machine));
  BOOST_CHECK_THROW(models::check_memory(c, {.batch_size = k + 1, .sequence_length = 128}, machine), models::MemoryError);
  // The evaluation batch, when it is the one that does not fit.
  const auto ev = memory_error(c, {.batch_size = 32, .eval_batch_size = 100000, .sequence_length = 128}, machine);
  BOOST_TEST((ev.driver == models::MemoryDriver::EvalBatchSize));
  BOOST_TEST(std::string(ev.what()).find("evaluation batch size 100000: ") == 0u);
}

BOOST_AUTO_TEST_CASE(a_model_too_big_names_its_largest_field) {
  ModelConfig c = bert_base();
  c.num_hidden_layers = 1000;  // 7 G parameters: 113 GB to train in float
  const auto e = memory_error(c, {.batch_size = 32, .sequence_length = 128}, 64 * kGiB);
  BOOST_TEST((e.driver == models::MemoryDriver::Model));
  BOOST_TEST(e.value == 1000);
  const std::string msg = e.what();
  BOOST_TEST_INFO(msg);
  BOOST_TEST(msg.find("num_hidden_layers 1000: the model alone needs ") == 0u);
  BOOST_TEST(msg.find("for weights, gradients and optimizer state (7.1 G parameters); this machine has 64.0 GiB") !=
             std::string::npos);
  ModelConfig wide = bert_base();
  wide.vocab_size = 2000000000;
  BOOST_TEST(memory_error(wide, {}, 64 * kGiB).quantity == "vocab_size 2000000000");
}

// Loading an absurd config.json is refused before anything is allocated, with the file,
// the field and the numbers (it used to end in std::bad_alloc when the model was built).
BOOST_AUTO_TEST_CASE(an_absurd_config_is_refused_when_loaded) {
  const std::string where = "huge/config.json";
  auto j = nlohmann::json::parse(kBertBaseUncasedMnli);
  j["num_hidden_layers"] = 100000;  // 708 G parameters: 5 TiB of weights and gradients
  BOOST_CHECK_EXCEPTION(io::parse_hf_config(j.dump(), where), io::Error,
                        has({where + ": num_hidden_layers 100000: the model's weights and gradients alone need ",
                             " TiB (708.", "this machine has "}));
  ModelConfig c = bert_base();
  c.num_hidden_layers = 100000;
  BOOST_CHECK_EXCEPTION(c.validate(), models::MemoryError, [](const models::MemoryError& e) {
    return e.driver == models::MemoryDriver::Model && e.value == 100000;
  });
  // One layer too wide names its width.
  auto wide = nlohmann::json::parse(kBertBaseUncasedMnli);
  wide["hidden_size"] = 1 << 22;
  wide["num_attention_heads"] = 16;
  BOOST_CHECK_EXCEPTION(io::parse_hf_config(wide.dump(), where), io::Error, has({where, "hidden_size 4194304: "}));
  // Ids in a batch are int32: a vocabulary beyond them is refused whatever the memory.
  auto ids = minimal_config();
  ids["vocab_size"] = int64_t{3000000000};
  BOOST_CHECK_EXCEPTION(io::parse_hf_config(ids.dump(), where), io::Error, has({where, "vocab_size 3000000000", "int32"}));
}

BOOST_AUTO_TEST_SUITE_END()
