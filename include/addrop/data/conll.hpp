#pragma once
// CoNLL-2003 column files: reading, tagging schemes (IOB1 / IOB2), label sets, and writing
// predictions for conlleval.
//
// File format, as distributed: one token per line, four columns "word POS chunk NER"
// separated by spaces (tabs are accepted too); a blank (or whitespace-only) line ends a
// sentence; "-DOCSTART- -X- -X- O" lines start a document and are skipped (a blank line
// after them is then just a separator); the last sentence may lack its final blank line;
// CRLF line ends are accepted. A line with another column count, an empty column (two
// separators in a row, a leading space) or an NER tag that is not "O", "B-TYPE" or
// "I-TYPE" fails with std::runtime_error "file:line: reason" (lines count from 1).
//
// Tagging schemes. IOB1 (the original eng.train/testa/testb): I- is the default inside tag
// and B- only marks an entity that directly follows one of the same type. IOB2 / BIO (the
// copies on the Hugging Face hub, the sample in examples/data): every entity starts with
// B-. Both are read through conlleval's chunk rules (see metrics/entity.hpp), so
// iob1_to_iob2 / iob2_to_iob1 keep every entity's start, end and type.
//   - A file read as IOB2 must be valid IOB2 (every I-X follows B-X or I-X); a violation
//     is a SchemeError at its line suggesting the IOB1 scheme.
//   - A file read as IOB1 accepts any B/I/O sequence (a B- after O is read as an entity
//     start, as conlleval does) and is re-emitted canonically in the output scheme, so a
//     valid IOB1 file read with out_scheme IOB1 comes back unchanged.
// Only the NER column is converted; the POS and chunk columns are kept as written.
//
// Label sets are ordered "O" first, then for each entity type in bytewise order its B- then
// its I- label: O, B-LOC, I-LOC, B-MISC, I-MISC, B-ORG, I-ORG, B-PER, I-PER for CoNLL-2003.
// Both labels of every type seen are included, whichever of them the data uses.
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <utility>
#include <vector>

namespace addrop::data {

/// One sentence of a CoNLL-2003 file.
struct Sentence {
  std::vector<std::string> words, pos, chunk, tags;  ///< the four columns, one entry per token
  int64_t line = 0;      ///< line of the first token in the file (from 1)
  int64_t document = 0;  ///< index of the document (from 0; a new one at each -DOCSTART- after sentences)
};

enum class TagScheme { IOB1, IOB2 };

/// A file whose tags break the scheme it was read with but fit another: `suggested`
/// carries that scheme, so that a program can name its own option for it (the message
/// names the scheme only, "read it with the IOB1 scheme").
struct SchemeError : std::runtime_error {
  TagScheme suggested;
  std::filesystem::path file;
  int64_t line;
  SchemeError(const std::string& what, TagScheme scheme, std::filesystem::path where, int64_t at)
      : std::runtime_error(what), suggested(scheme), file(std::move(where)), line(at) {}
};

namespace conll_detail {

struct Tag {
  char prefix = 'O';  // 'O', 'B' or 'I'
  std::string_view type;
};

/// Parses "O", "B-TYPE" or "I-TYPE"; false for anything else.
inline bool parse(std::string_view tag, Tag& out) {
  if (tag == "O") {
    out = {};
    return true;
  }
  if (tag.size() >= 3 && tag[1] == '-' && (tag[0] == 'B' || tag[0] == 'I')) {
    out = {tag[0], tag.substr(2)};
    return true;
  }
  return false;
}

inline Tag parse_or_throw(std::string_view tag, std::size_t index) {
  Tag t;
  if (!parse(tag, t))
    throw std::invalid_argument("token " + std::to_string(index) + ": bad tag \"" + std::string(tag) +
                                "\" (expected O, B-TYPE or I-TYPE)");
  return t;
}

/// Index of the first tag that breaks IOB2 (an I-X not after B-X / I-X), or -1.
inline int64_t first_iob2_violation(const std::vector<std::string>& tags) {
  Tag prev;
  for (std::size_t i = 0; i < tags.size(); ++i) {
    const Tag t = parse_or_throw(tags[i], i);
    if (t.prefix == 'I' && (prev.prefix == 'O' || prev.type != t.type)) return static_cast<int64_t>(i);
    prev = t;
  }
  return -1;
}

/// True where a chunk starts at token i (conlleval's rule for B/I/O tags).
inline std::vector<bool> chunk_starts(const std::vector<std::string>& tags) {
  std::vector<bool> starts(tags.size(), false);
  Tag prev;
  for (std::size_t i = 0; i < tags.size(); ++i) {
    const Tag t = parse_or_throw(tags[i], i);
    starts[i] = t.prefix == 'B' || (t.prefix == 'I' && (prev.prefix == 'O' || prev.type != t.type));
    prev = t;
  }
  return starts;
}

[[noreturn]] inline void fail(const std::filesystem::path& file, int64_t line, const std::string& reason) {
  throw std::runtime_error(file.string() + ":" + std::to_string(line) + ": " + reason);
}

/// Reads whitespace-separated column lines grouped into sentences. `on_token(fields, line)`
/// gets each token line split into exactly `columns` non-empty fields; `on_end()` closes a
/// sentence; `on_docstart(line)` sees a -DOCSTART- line (the current sentence is closed first).
template <class OnToken, class OnEnd, class OnDocstart>
void read_columns(const std::filesystem::path& file, std::size_t columns, OnToken on_token, OnEnd on_end,
                  OnDocstart on_docstart) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error(file.string() + ": cannot open for reading");
  std::string raw;
  std::vector<std::string> fields;
  int64_t line = 0;
  bool open = false;
  auto close = [&] {
    if (open) on_end();
    open = false;
  };
  while (std::getline(in, raw)) {
    ++line;
    std::string_view s(raw);
    while (!s.empty() && (s.back() == '\r' || s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    if (s.find_first_not_of(" \t") == std::string_view::npos) {
      close();
      continue;
    }
    fields.clear();
    std::size_t pos = 0;
    while (true) {
      const std::size_t sep = s.find_first_of(" \t", pos);
      fields.emplace_back(s.substr(pos, sep == std::string_view::npos ? std::string_view::npos : sep - pos));
      if (sep == std::string_view::npos) break;
      pos = sep + 1;
    }
    if (fields[0] == "-DOCSTART-") {
      close();
      on_docstart(line);
      continue;
    }
    for (std::size_t c = 0; c < fields.size(); ++c)
      if (fields[c].empty())
        fail(file, line,
             std::string(c == 0 ? "empty word" : "empty column " + std::to_string(c + 1)) +
                 " (a leading separator or two in a row): \"" + std::string(s) + "\"");
    if (fields.size() != columns)
      fail(file, line,
           std::to_string(fields.size()) + " columns, expected " + std::to_string(columns) + ": \"" +
               std::string(s) + "\"");
    on_token(fields, line);
    open = true;
  }
  if (in.bad()) throw std::runtime_error(file.string() + ": read error after line " + std::to_string(line));
  close();
}

}  // namespace conll_detail

/// True if every tag is "O", "B-X" or "I-X" and every I-X follows B-X or I-X (valid IOB2).
inline bool is_iob2(const std::vector<std::string>& tags) {
  for (const auto& t : tags) {
    conll_detail::Tag parsed;
    if (!conll_detail::parse(t, parsed)) return false;
  }
  return conll_detail::first_iob2_violation(tags) < 0;
}

/// True if every tag is "O", "B-X" or "I-X" and every B-X follows B-X or I-X (valid IOB1:
/// B- only where an entity directly follows another of the same type).
inline bool is_iob1(const std::vector<std::string>& tags) {
  conll_detail::Tag prev;
  for (const auto& t : tags) {
    conll_detail::Tag cur;
    if (!conll_detail::parse(t, cur)) return false;
    if (cur.prefix == 'B' && (prev.prefix == 'O' || prev.type != cur.type)) return false;
    prev = cur;
  }
  return true;
}

/// IOB1 -> IOB2: every chunk (conlleval's rules) starts with B-. Accepts any B/I/O
/// sequence; throws std::invalid_argument on a tag that is not O, B-X or I-X.
inline std::vector<std::string> iob1_to_iob2(const std::vector<std::string>& tags) {
  const auto starts = conll_detail::chunk_starts(tags);
  std::vector<std::string> out(tags);
  for (std::size_t i = 0; i < out.size(); ++i)
    if (out[i] != "O") out[i][0] = starts[i] ? 'B' : 'I';
  return out;
}

/// IOB2 -> IOB1: a chunk starts with B- only if the token before it ends a chunk of the same
/// type, else with I-. Reads the input with conlleval's rules, so IOB1 input is normalized
/// too; throws std::invalid_argument on a tag that is not O, B-X or I-X.
inline std::vector<std::string> iob2_to_iob1(const std::vector<std::string>& tags) {
  const auto starts = conll_detail::chunk_starts(tags);
  std::vector<std::string> out(tags);
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (out[i] == "O") continue;
    const bool after_same_type =
        i > 0 && tags[i - 1] != "O" && std::string_view(tags[i - 1]).substr(2) == std::string_view(tags[i]).substr(2);
    out[i][0] = starts[i] && after_same_type ? 'B' : 'I';
  }
  return out;
}

/// Converts tags between schemes (a copy when from == to, except IOB1 -> IOB1, which is
/// normalized as described at the top of this file).
inline std::vector<std::string> convert_tags(const std::vector<std::string>& tags, TagScheme from, TagScheme to) {
  if (to == TagScheme::IOB2) return from == TagScheme::IOB2 ? tags : iob1_to_iob2(tags);
  return iob2_to_iob1(tags);
}

/// Reads a CoNLL-2003 file whose NER column uses `file_scheme`, returning the tags in
/// `out_scheme`. Throws std::runtime_error "file:line: reason" on a malformed line or,
/// for file_scheme IOB2, SchemeError (suggesting IOB1) on a tag sequence that is not valid IOB2.
inline std::vector<Sentence> read_conll(const std::filesystem::path& file, TagScheme file_scheme = TagScheme::IOB2,
                                        TagScheme out_scheme = TagScheme::IOB2) {
  std::vector<Sentence> sentences;
  Sentence cur;
  int64_t document = 0;
  bool document_has_sentences = false;
  auto on_token = [&](const std::vector<std::string>& f, int64_t line) {
    conll_detail::Tag t;
    if (!conll_detail::parse(f[3], t))
      conll_detail::fail(file, line, "bad NER tag \"" + f[3] + "\" (expected O, B-TYPE or I-TYPE)");
    if (file_scheme == TagScheme::IOB2 && t.prefix == 'I') {
      conll_detail::Tag prev;
      if (!cur.tags.empty()) conll_detail::parse(cur.tags.back(), prev);
      if (prev.prefix == 'O' || prev.type != t.type)
        throw SchemeError(file.string() + ":" + std::to_string(line) + ": \"" + f[3] + "\" " +
                              (cur.tags.empty() ? std::string("at a sentence start") : "after \"" + cur.tags.back() + "\"") +
                              " is not valid IOB2 (an entity must start with B-); the file looks like IOB1 tagging: "
                              "read it with the IOB1 scheme",
                          TagScheme::IOB1, file, line);
    }
    if (cur.words.empty()) cur.line = line;
    cur.words.push_back(f[0]);
    cur.pos.push_back(f[1]);
    cur.chunk.push_back(f[2]);
    cur.tags.push_back(f[3]);
  };
  auto on_end = [&] {
    if (file_scheme != out_scheme || file_scheme == TagScheme::IOB1)
      cur.tags = convert_tags(cur.tags, file_scheme, out_scheme);
    cur.document = document;
    document_has_sentences = true;
    sentences.push_back(std::move(cur));
    cur = Sentence{};
  };
  auto on_docstart = [&](int64_t) {
    if (document_has_sentences) ++document;
    document_has_sentences = false;
  };
  conll_detail::read_columns(file, 4, on_token, on_end, on_docstart);
  return sentences;
}

/// The labels for the given entity types: "O", then per type (bytewise order, duplicates
/// dropped) "B-type", "I-type".
inline std::vector<std::string> label_set_for_types(std::vector<std::string> types) {
  std::sort(types.begin(), types.end());
  types.erase(std::unique(types.begin(), types.end()), types.end());
  std::vector<std::string> labels{"O"};
  for (const auto& t : types) {
    if (t.empty()) throw std::invalid_argument("label_set_for_types: empty entity type");
    labels.push_back("B-" + t);
    labels.push_back("I-" + t);
  }
  return labels;
}

/// The label set of a corpus (usually the training file): "O", then B-/I- of every entity
/// type seen, ordered as label_set_for_types. Throws std::invalid_argument on a bad tag.
inline std::vector<std::string> label_set(const std::vector<Sentence>& sentences) {
  std::set<std::string> types;
  for (std::size_t s = 0; s < sentences.size(); ++s)
    for (std::size_t i = 0; i < sentences[s].tags.size(); ++i) {
      conll_detail::Tag t;
      if (!conll_detail::parse(sentences[s].tags[i], t))
        throw std::invalid_argument("label_set: sentence " + std::to_string(s) + ", token " + std::to_string(i) +
                                    ": bad tag \"" + sentences[s].tags[i] + "\"");
      if (t.prefix != 'O') types.emplace(t.type);
    }
  return label_set_for_types({types.begin(), types.end()});
}

/// Checks a label list given by the user or a checkpoint (`source` names it in errors):
/// every label is O, B-type or I-type, none repeats, O is present, and every type has
/// both its B- and its I- label (IOB1 and IOB2 data need both).
inline void check_label_list(const std::vector<std::string>& labels, const std::string& source) {
  std::set<std::string> seen, begins, insides;
  for (std::size_t i = 0; i < labels.size(); ++i) {
    conll_detail::Tag t;
    if (!conll_detail::parse(labels[i], t))
      throw std::invalid_argument(source + ": label " + std::to_string(i) + " \"" + labels[i] +
                                  "\" is not O, B-<type> or I-<type>");
    if (!seen.insert(labels[i]).second)
      throw std::invalid_argument(source + ": label \"" + labels[i] + "\" appears twice");
    if (t.prefix == 'B') begins.emplace(t.type);
    if (t.prefix == 'I') insides.emplace(t.type);
  }
  if (!seen.count("O")) throw std::invalid_argument(source + ": the label list has no \"O\"");
  for (const auto& type : begins)
    if (!insides.count(type)) throw std::invalid_argument(source + ": B-" + type + " but no I-" + type);
  for (const auto& type : insides)
    if (!begins.count(type)) throw std::invalid_argument(source + ": I-" + type + " but no B-" + type);
}

/// Label ids of `tags` in `labels`; throws std::invalid_argument naming an unknown tag.
inline std::vector<int32_t> encode_tags(const std::vector<std::string>& tags, const std::vector<std::string>& labels) {
  std::unordered_map<std::string_view, int32_t> index;
  for (std::size_t i = 0; i < labels.size(); ++i) index.emplace(labels[i], static_cast<int32_t>(i));
  std::vector<int32_t> ids;
  ids.reserve(tags.size());
  for (std::size_t i = 0; i < tags.size(); ++i) {
    const auto it = index.find(tags[i]);
    if (it == index.end())
      throw std::invalid_argument("token " + std::to_string(i) + ": tag \"" + tags[i] + "\" is not in the label set");
    ids.push_back(it->second);
  }
  return ids;
}

/// Writes "word gold predicted" lines, one blank line after each sentence, in the form
/// conlleval reads (no -DOCSTART- lines, which conlleval would count as tokens). Writes
/// "<file>.tmp.<pid>" and renames it over `file`, so `file` is either the old one or the
/// complete new one. Throws std::invalid_argument if the sizes differ or a word or tag is
/// empty or holds whitespace, std::runtime_error on an I/O failure.
inline void write_conll_predictions(const std::filesystem::path& file, const std::vector<Sentence>& sentences,
                                    const std::vector<std::vector<std::string>>& predicted) {
  if (sentences.size() != predicted.size())
    throw std::invalid_argument("write_conll_predictions: " + std::to_string(sentences.size()) + " sentences but " +
                                std::to_string(predicted.size()) + " predictions");
  auto check = [](const std::string& field, std::size_t s, std::size_t i, const char* what) {
    if (field.empty() || field.find_first_of(" \t\r\n") != std::string::npos)
      throw std::invalid_argument("write_conll_predictions: sentence " + std::to_string(s) + ", token " +
                                  std::to_string(i) + ": " + what + " \"" + field +
                                  "\" is empty or holds whitespace");
  };
  std::string text;
  for (std::size_t s = 0; s < sentences.size(); ++s) {
    const auto& sen = sentences[s];
    if (sen.tags.size() != sen.words.size() || predicted[s].size() != sen.words.size())
      throw std::invalid_argument("write_conll_predictions: sentence " + std::to_string(s) + " has " +
                                  std::to_string(sen.words.size()) + " words, " + std::to_string(sen.tags.size()) +
                                  " gold tags and " + std::to_string(predicted[s].size()) + " predicted tags");
    for (std::size_t i = 0; i < sen.words.size(); ++i) {
      check(sen.words[i], s, i, "word");
      check(sen.tags[i], s, i, "gold tag");
      check(predicted[s][i], s, i, "predicted tag");
      text += sen.words[i];
      text += ' ';
      text += sen.tags[i];
      text += ' ';
      text += predicted[s][i];
      text += '\n';
    }
    text += '\n';
  }
  std::filesystem::path tmp = file;
  tmp += ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error(tmp.string() + ": cannot open for writing");
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    out.flush();
    if (!out) {
      out.close();
      std::error_code ec;
      std::filesystem::remove(tmp, ec);
      throw std::runtime_error(tmp.string() + ": write failed");
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, file, ec);
  if (ec) {
    std::error_code ignored;
    std::filesystem::remove(tmp, ignored);
    throw std::runtime_error(file.string() + ": cannot rename \"" + tmp.string() + "\" over it: " + ec.message());
  }
}

/// One sentence of a predictions file written by write_conll_predictions.
struct PredictedSentence {
  std::vector<std::string> words, gold, predicted;
  int64_t line = 0;  ///< line of the first token (from 1)
};

/// Reads a "word gold predicted" file (conlleval's input). Throws std::runtime_error
/// "file:line: reason" on a line without exactly three non-empty columns.
inline std::vector<PredictedSentence> read_conll_predictions(const std::filesystem::path& file) {
  std::vector<PredictedSentence> sentences;
  PredictedSentence cur;
  conll_detail::read_columns(
      file, 3,
      [&](const std::vector<std::string>& f, int64_t line) {
        if (cur.words.empty()) cur.line = line;
        cur.words.push_back(f[0]);
        cur.gold.push_back(f[1]);
        cur.predicted.push_back(f[2]);
      },
      [&] {
        sentences.push_back(std::move(cur));
        cur = PredictedSentence{};
      },
      [](int64_t) {});
  return sentences;
}

}  // namespace addrop::data
