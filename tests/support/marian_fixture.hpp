#pragma once
// The Marian golden fixtures of tests/golden/marian/ (tests/golden/marian/README.md): the
// folder of a case and its batch as a models::Seq2SeqBatch.
#include <addrop/io/safetensors.hpp>
#include <addrop/models/seq2seq_batch.hpp>

#include <filesystem>
#include <string>

namespace addrop::testing {

inline std::filesystem::path marian_case_dir(const std::string& name) {
  return std::filesystem::path(ADDROP_FIXTURE_DIR).parent_path() / "marian" / name;
}

/// input_ids / attention_mask [B, Ls], labels / decoder_input_ids [B, Lt] (-100 at label pads).
inline models::Seq2SeqBatch read_seq2seq_batch(const io::SafeTensors& file) {
  models::Seq2SeqBatch b;
  b.size = file.at("input_ids").shape.at(0);
  b.source_length = file.at("input_ids").shape.at(1);
  b.target_length = file.at("labels").shape.at(1);
  b.input_ids = file.values<int32_t>("input_ids");
  b.attention_mask = file.values<int32_t>("attention_mask");
  b.labels = file.values<int32_t>("labels");
  b.decoder_input_ids = file.values<int32_t>("decoder_input_ids");
  b.target_mask.resize(b.labels.size());
  for (std::size_t i = 0; i < b.labels.size(); ++i) b.target_mask[i] = b.labels[i] != -100;
  return b;
}

}  // namespace addrop::testing
