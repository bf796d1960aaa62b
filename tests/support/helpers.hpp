#pragma once
// Shared test helpers: temporary folders, error-message predicates, fixture batches.
// Include after <boost/test/unit_test.hpp>.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <random>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <addrop/io/safetensors.hpp>
#include <addrop/models/batch.hpp>
#include <addrop/models/config.hpp>

namespace addrop::testing {

/// A fresh folder under the system temporary directory, removed with everything in it.
struct TempDir {
  std::filesystem::path dir;
  explicit TempDir(const std::string& tag = "test") {
    static std::atomic<int> counter{0};
    std::random_device rd;
    for (int attempt = 0;; ++attempt) {
      dir = std::filesystem::temp_directory_path() / ("addrop_" + tag + "_" + std::to_string(::getpid()) + "_" +
                                                      std::to_string(counter++) + "_" + std::to_string(rd()));
      if (std::filesystem::create_directory(dir)) break;
      if (attempt > 100) throw std::runtime_error("cannot create a temporary folder");
    }
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  /// The names in the folder, sorted.
  std::vector<std::string> listing() const {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(dir)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
};

/// Predicate for BOOST_CHECK_EXCEPTION: the message holds every word; reports the message if not.
struct HasWords {
  std::vector<std::string> words;
  bool operator()(const std::exception& e) const {
    const std::string msg = e.what();
    bool ok = true;
    for (const auto& w : words) {
      const bool found = msg.find(w) != std::string::npos;
      BOOST_CHECK_MESSAGE(found, "error message \"" << msg << "\" does not contain \"" << w << "\"");
      ok = ok && found;
    }
    return ok;
  }
};
inline HasWords has(std::initializer_list<std::string> words) { return HasWords{words}; }

/// The batch of a golden fixture's batch.safetensors (extra masks and scales are read separately).
inline models::Batch read_fixture_batch(const io::SafeTensors& st, const models::ModelConfig& c) {
  models::Batch b;
  const auto& shape = st.at("input_ids").shape;
  b.size = shape.at(0);
  b.length = shape.at(1);
  b.input_ids = st.values<int32_t>("input_ids", shape);
  b.attention_mask = st.values<int32_t>("attention_mask", shape);
  b.token_type_ids = st.values<int32_t>("token_type_ids", shape);
  if (c.task == models::Task::Regression) b.targets = st.values<double>("labels");
  else b.labels = st.values<int32_t>("labels");
  return b;
}

/// A small random BERT classifier's configuration (vocabulary 40, hidden 16, 4 heads,
/// 3 labels) with `layers` encoder layers, for tests that need a real model quickly.
inline models::ModelConfig small_config(int64_t layers = 3) {
  models::ModelConfig c;
  c.vocab_size = 40;
  c.hidden_size = 16;
  c.num_hidden_layers = layers;
  c.num_attention_heads = 4;
  c.intermediate_size = 32;
  c.max_position_embeddings = 16;
  c.num_labels = 3;
  return c;
}

/// Three examples of 9, 6 and 4 tokens padded to 9 (two segments), labels 0, 2, 1.
inline models::Batch small_batch() {
  models::Batch b;
  b.size = 3;
  b.length = 9;
  const int lengths[] = {9, 6, 4};
  for (int e = 0; e < 3; ++e)
    for (int j = 0; j < 9; ++j) {
      b.input_ids.push_back(j < lengths[e] ? 1 + (e * 13 + j * 7) % 39 : 0);
      b.attention_mask.push_back(j < lengths[e] ? 1 : 0);
      b.token_type_ids.push_back(j > 4 ? 1 : 0);
    }
  b.labels = {0, 2, 1};
  return b;
}

}  // namespace addrop::testing
