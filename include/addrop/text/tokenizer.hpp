#pragma once
/// @file tokenizer.hpp
/// The text module: Hugging Face-exact tokenizers of the paper's checkpoints.
///
///   auto tok = addrop::text::load_tokenizer("checkpoints/roberta-base");
///   addrop::text::Encoding e = tok->encode("A premise.", "A hypothesis.", 128);
///
/// WordPiece (BERT, ELECTRA: vocab.txt) lives in text/wordpiece.hpp, byte-level BPE
/// (RoBERTa, GPT-2: vocab.json + merges.txt) in text/byte_bpe.hpp; both implement the
/// abstract `Tokenizer` of text/tokenizer_base.hpp. Link `addrop::text` (utf8proc, PCRE2).
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>

#include "addrop/text/byte_bpe.hpp"
#include "addrop/text/tokenizer_base.hpp"
#include "addrop/text/wordpiece.hpp"

namespace addrop::text {

/// Picks WordPiece (vocab.txt) or byte-level BPE (vocab.json + merges.txt, or a
/// tokenizer.json whose model is BPE / WordPiece) from a checkpoint folder; `overrides`
/// win over the folder's settings.
inline std::unique_ptr<Tokenizer> load_tokenizer(const std::filesystem::path& dir, const TokenizerOverrides& overrides = {}) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(dir)) throw std::runtime_error("addrop::text: " + dir.string() + " is not a folder");
  if (fs::exists(dir / "vocab.json") && fs::exists(dir / "merges.txt")) return ByteBpeTokenizer::from_folder(dir, overrides);
  if (fs::exists(dir / "vocab.txt")) return WordPieceTokenizer::from_folder(dir, overrides);
  if (fs::exists(dir / "tokenizer.json")) {
    const auto j = detail::parse_json(dir / "tokenizer.json");
    const std::string type = j.contains("model") ? j.at("model").value("type", "") : "";
    if (type == "BPE") return ByteBpeTokenizer::from_folder(dir, overrides);
    if (type == "WordPiece") return WordPieceTokenizer::from_folder(dir, overrides);
    throw std::runtime_error("addrop::text: " + (dir / "tokenizer.json").string() + ": unsupported model type '" + type +
                             "' (WordPiece and BPE are supported)");
  }
  throw std::runtime_error("addrop::text: " + dir.string() +
                           ": no tokenizer files (vocab.txt, vocab.json + merges.txt, or tokenizer.json)");
}

}  // namespace addrop::text
