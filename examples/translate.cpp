// addrop-translate: WMT16-style translation with a Marian encoder-decoder (Hugging Face's
// MarianMTModel, OPUS-MT), plain or with AD-DROP on the encoder's self-attention, as the
// paper's translation experiment (OPUS-MT en-ro; all encoder layers, p 0.2, q 0.2).
//
//   addrop-translate train --model opus-mt-en-ro/ --train wmt16/train --dev wmt16/newsdev2016 --test wmt16/newstest2016 --output OUT
//   addrop-translate train --init mini --train data/train --train-lines 1:9500 --dev data/train --dev-lines 9501:10000 --output OUT
//   addrop-translate evaluate --model OUT/best --source newstest2016.en --reference newstest2016.ro --output-file hyp.ro
//   addrop-translate translate --model OUT/best < sentences.en > sentences.ro
//   addrop-translate score --hypotheses hyp.ro --reference newstest2016.ro [--json]
//
// Data: PREFIX.<source-lang> and PREFIX.<target-lang>, line-aligned, or a Hugging Face
// datasets JSON-lines file ({"translation": {"en": ..., "ro": ...}}); evaluate also reads
// WMT SGML (.sgm). Training writes, per run, the checkpoints (best on dev BLEU, last), each a
// complete Marian folder (config.json, model.safetensors, generation_config.json,
// source.spm, target.spm, vocab.json, tokenizer_config.json), metrics.jsonl, summary.json,
// and the test translations of the best checkpoint; the output folder gets curves.svg.
#include <CLI/CLI.hpp>

#include <addrop/data/parallel.hpp>
#include <addrop/metrics/bleu.hpp>
#include <addrop/metrics/chrf.hpp>
#include <addrop/text/marian_tokenizer.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "distributed.hpp"
#include "trainer_cli.hpp"
#include "translate_train.hpp"

namespace fs = std::filesystem;
using namespace addrop;

namespace {

/// Where sentence pairs come from: a JSON-lines file, or PREFIX.<src> + PREFIX.<tgt>; an
/// optional 1-based inclusive line range ("1:9500").
struct PairSource {
  std::string spec, lines;
  const char* flag;
};

struct LineRange {
  int64_t first = 1, last = std::numeric_limits<int64_t>::max();
};

LineRange parse_lines(const std::string& text, const std::string& flag) {
  if (text.empty()) return {};
  const auto colon = text.find(':');
  LineRange r;
  try {
    if (colon == std::string::npos) throw std::invalid_argument("no colon");
    std::size_t used = 0;
    r.first = std::stoll(text.substr(0, colon), &used);
    if (used != colon) throw std::invalid_argument("junk");
    const std::string tail = text.substr(colon + 1);
    r.last = std::stoll(tail, &used);
    if (used != tail.size()) throw std::invalid_argument("junk");
  } catch (const std::exception&) {
    throw std::invalid_argument(flag + " " + text + ": must be FIRST:LAST, 1-based line numbers, e.g. 1:9500");
  }
  if (r.first < 1 || r.last < r.first)
    throw std::invalid_argument(flag + " " + text + ": must be FIRST:LAST with 1 <= FIRST <= LAST");
  return r;
}

/// The files a spec names, checked to exist (before any is read).
std::pair<fs::path, fs::path> pair_files(const PairSource& s, const std::string& src, const std::string& tgt) {
  if (s.spec.ends_with(".jsonl") || s.spec.ends_with(".json")) {
    if (!fs::is_regular_file(s.spec)) throw std::runtime_error(std::string(s.flag) + " " + s.spec + ": no such file");
    return {s.spec, {}};
  }
  const fs::path a = s.spec + "." + src, b = s.spec + "." + tgt;
  for (const auto& f : {a, b})
    if (!fs::is_regular_file(f))
      throw std::runtime_error(std::string(s.flag) + " " + s.spec + ": no " + f.string() +
                               " (give PREFIX for PREFIX." + src + " and PREFIX." + tgt + ", or a .jsonl file)");
  return {a, b};
}

std::vector<data::ParallelExample> read_pairs(const PairSource& s, const std::string& src, const std::string& tgt,
                                              const data::ParallelReadOptions& options) {
  const auto [a, b] = pair_files(s, src, tgt);
  data::ParallelReadReport report;
  auto pairs = b.empty() ? data::read_parallel_jsonl(a, src, tgt, options, &report)
                         : data::read_parallel_files(a, b, options, &report);
  const LineRange range = parse_lines(s.lines, std::string(s.flag) + "-lines");
  if (!s.lines.empty()) {
    std::erase_if(pairs, [&](const data::ParallelExample& e) { return e.line < range.first || e.line > range.last; });
    if (pairs.empty())
      throw std::runtime_error(std::string(s.flag) + "-lines " + s.lines + ": no pair of " + a.string() + " lies in that range");
  }
  if (!report.skipped_lines.empty()) {
    std::fprintf(stderr, "%s: %zu pairs with an empty side dropped (line %lld", a.string().c_str(),
                 report.skipped_lines.size(), static_cast<long long>(report.skipped_lines.front()));
    if (report.skipped_lines.size() > 1) std::fprintf(stderr, " and %zu more", report.skipped_lines.size() - 1);
    std::fprintf(stderr, ")\n");
  }
  return pairs;
}

/// One reference or source file: plain lines, or the segments of a WMT .sgm file.
std::vector<std::string> read_segments(const fs::path& file, const char* flag) {
  if (!fs::is_regular_file(file)) throw std::runtime_error(std::string(flag) + " " + file.string() + ": no such file");
  if (file.extension() == ".sgm") return data::read_sgml_segments(file);
  std::vector<std::string> lines;
  std::ifstream in(file, std::ios::binary);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(line);
  }
  return lines;
}

/// Tokenized pairs (in parallel, order kept), sides cut to max_length tokens (</s> kept).
std::vector<data::TranslationPair> encode_pairs(const text::MarianTokenizer& tok, const std::vector<data::ParallelExample>& in,
                                                int64_t max_length, int64_t* truncated) {
  std::vector<data::TranslationPair> out(in.size());
  int64_t cut = 0;
#pragma omp parallel for schedule(dynamic, 256) reduction(+ : cut)
  for (std::size_t i = 0; i < in.size(); ++i) {
    auto& p = out[i];
    p.source = tok.encode_source(in[i].source);
    p.target = tok.encode_target(in[i].target);
    p.index = in[i].line - 1;
    for (auto* side : {&p.source, &p.target})
      if (static_cast<int64_t>(side->size()) > max_length) {
        side->resize(static_cast<std::size_t>(max_length - 1));
        side->push_back(tok.eos_id());
        ++cut;
      }
  }
  if (truncated) *truncated = cut;
  return out;
}

std::vector<std::string> sources_of(const std::vector<data::ParallelExample>& v) {
  std::vector<std::string> out;
  for (const auto& e : v) out.push_back(e.source);
  return out;
}

/// The generation settings of a command: the model config's, with the flags given.
struct GenerationFlags {
  int64_t num_beams = 0;  ///< 0: the config's
  int64_t max_new_tokens = 128;
  double length_penalty = std::numeric_limits<double>::quiet_NaN();
  int64_t batch_size = 32;
};

void add_generation_flags(CLI::App& app, GenerationFlags& g, const char* beams_help) {
  app.add_option("--num-beams", g.num_beams, beams_help);
  app.add_option("--max-new-tokens", g.max_new_tokens, "longest translation in tokens (run_translation.py's 128)");
  app.add_option("--length-penalty", g.length_penalty, "beam score / length^this (default: the model config's)")
      ->default_str("the model's");
  app.add_option("--translate-batch-size", g.batch_size, "sentences decoded together");
}

train::TranslationEvalOptions eval_options(const models::MarianConfig& c, const GenerationFlags& g, int64_t beams) {
  train::TranslationEvalOptions o;
  o.generation = models::GenerationOptions::from_config(c);
  o.generation.num_beams = beams > 0 ? beams : c.num_beams;
  o.generation.max_new_tokens = g.max_new_tokens;
  if (!std::isnan(g.length_penalty)) o.generation.length_penalty = g.length_penalty;
  o.batch_size = g.batch_size;
  return o;
}

void check_generation(const GenerationFlags& g) {
  addrop_examples::require(g.num_beams >= 0, "--num-beams", g.num_beams, "must be 1 or more (0: the model config's)");
  addrop_examples::require(g.max_new_tokens >= 1, "--max-new-tokens", g.max_new_tokens, "must be at least 1");
  addrop_examples::require(g.batch_size >= 1, "--translate-batch-size", g.batch_size, "must be at least 1");
}

// ------------------------------------------------------------------ score
/// sacreBLEU's text lines (`sacrebleu -f text`), or one JSON object with its field names.
int print_scores(const std::vector<std::string>& hypotheses, const std::vector<std::string>& references, bool json) {
  const std::vector<std::vector<std::string>> streams{references};
  const auto bleu = metrics::corpus_bleu(hypotheses, streams);
  const auto chrf = metrics::corpus_chrf(hypotheses, streams);
  const std::string bleu_signature = "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp";
  const std::string chrf_signature = "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no";
  if (json) {
    nlohmann::json j;
    j["name"] = "BLEU";
    j["score"] = bleu.score;
    j["counts"] = bleu.stats.correct;
    j["totals"] = bleu.stats.total;
    j["precisions"] = bleu.precisions;
    j["bp"] = bleu.bp;
    j["sys_len"] = bleu.stats.hyp_len;
    j["ref_len"] = bleu.stats.ref_len;
    j["ratio"] = bleu.ratio;
    j["signature"] = bleu_signature;
    j["chrf"] = {{"name", "chrF2"}, {"score", chrf.score}, {"signature", chrf_signature}};
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::strict).c_str());
  } else {
    const std::string b = bleu.str();  // "BLEU = 48.53 82.4/..."
    std::printf("BLEU|%s = %s\n", bleu_signature.c_str(), b.substr(7).c_str());
    std::printf("chrF2|%s = %.2f\n", chrf_signature.c_str(), chrf.score);
  }
  return 0;
}

struct TrainOptions : addrop_examples::RunFlags {
  std::string train, dev, test, train_lines, dev_lines, test_lines;
  std::string source_lang = "en", target_lang = "ro";
  std::string normalization = "auto";
  int vocab_size = 8000;
  double label_smoothing = 0.1;
  int64_t dev_num_beams = 1;
  GenerationFlags generation;
  addrop_examples::AdDropFlags addrop;
  addrop_examples::TrainFlags training;
};

int train_command(const CLI::App& app, TrainOptions& o) {
  // Every flag is checked before any work.
  addrop_examples::require(o.vocab_size >= 16, "--vocab-size", o.vocab_size, "must be at least 16");
  addrop_examples::require(o.label_smoothing >= 0 && o.label_smoothing < 1, "--label-smoothing", o.label_smoothing,
                           "must be in [0, 1)");
  addrop_examples::require(o.dev_num_beams >= 1, "--dev-num-beams", o.dev_num_beams, "must be at least 1");
  check_generation(o.generation);
  if (o.model.empty() == o.init.empty()) throw std::runtime_error("give either --model DIR or --init tiny|mini|small");
  if (!o.model.empty() && !o.vocab.empty())
    throw std::invalid_argument("--vocab " + o.vocab + ": only with --init; a --model folder brings its own tokenizer");
  addrop_examples::require(o.threads >= 0, "--threads", o.threads, "must be 0 or more (0: all cores)");
  if (o.device == "cuda" && !addrop_examples::cuda_available())
    throw std::runtime_error("--device cuda: " + addrop_examples::cuda_unavailable_reason());
  addrop_examples::apply_defaults(o.training, app, addrop_examples::defaults_for(o));
  addrop_examples::validate(o.training);
  if (o.train.empty() || o.dev.empty()) throw std::runtime_error("--train and --dev are needed (PREFIX or FILE.jsonl)");
  const std::string normalization = o.normalization != "auto" ? o.normalization : o.init.empty() ? "none" : "comma-below";
  const data::ParallelReadOptions train_read{.target_normalization = data::romanian_normalization_from_name(normalization),
                                             .skip_empty = true};
  const PairSource train_src{o.train, o.train_lines, "--train"}, dev_src{o.dev, o.dev_lines, "--dev"},
      test_src{o.test, o.test_lines, "--test"};
  for (const auto* s : {&train_src, &dev_src}) pair_files(*s, o.source_lang, o.target_lang);
  if (!o.test.empty()) pair_files(test_src, o.source_lang, o.target_lang);
  for (const auto* s : {&train_src, &dev_src, &test_src}) parse_lines(s->lines, std::string(s->flag) + "-lines");
  const std::vector<addrop_examples::RunSpec> specs = addrop_examples::plan_runs(
      o.addrop, addrop_examples::split_list(o.runs), addrop_examples::split_list(o.seeds), o.grid);
  // The model's shape (its vocabulary comes later, from the tokenizer) checks the flags that
  // depend on it before any file is read.
  const models::MarianConfig shape = !o.model.empty() ? models::load_marian_config(fs::path(o.model) / "config.json")
                                                      : models::marian_preset(o.init, 100, 99, 0);
  addrop_examples::require(o.training.max_length <= shape.max_position_embeddings, "--max-length", o.training.max_length,
                           "exceeds the model's " + std::to_string(shape.max_position_embeddings) + " positions");
  addrop_examples::require(o.generation.max_new_tokens < shape.max_position_embeddings, "--max-new-tokens",
                           o.generation.max_new_tokens,
                           "must be below the model's " + std::to_string(shape.max_position_embeddings) + " positions");
  if (o.addrop.layers.empty())
    for (int l = 0; l < shape.encoder_layers; ++l) o.addrop.layers.push_back(l);
  addrop_examples::validate(o.addrop);
  addrop_examples::check_layers(o.addrop.layers, shape.encoder_layers + 2 * shape.decoder_layers,
                                addrop_examples::model_source(o) + " (attention sites: encoder layers first)");
  const fs::path out = addrop_examples::prepare_output(o);

  // Data: references stay as published; training targets (and the dev / test targets of the
  // teacher-forced loss) get the normalisation, which the tokenizer is trained on.
  const auto t0 = std::chrono::steady_clock::now();
  const auto train_pairs = read_pairs(train_src, o.source_lang, o.target_lang, train_read);
  if (o.training.max_train_examples > 0 && static_cast<int64_t>(train_pairs.size()) > o.training.max_train_examples)
    std::fprintf(stderr, "--max-train-examples: training on the first %lld of %zu pairs\n",
                 static_cast<long long>(o.training.max_train_examples), train_pairs.size());
  auto dev_pairs = read_pairs(dev_src, o.source_lang, o.target_lang, train_read);
  auto test_pairs = o.test.empty() ? std::vector<data::ParallelExample>{}
                                   : read_pairs(test_src, o.source_lang, o.target_lang, train_read);
  const data::ParallelReadOptions as_published{.skip_empty = true};
  std::vector<std::string> dev_refs, test_refs;
  for (const auto& e : read_pairs(dev_src, o.source_lang, o.target_lang, as_published)) dev_refs.push_back(e.target);
  if (!o.test.empty())
    for (const auto& e : read_pairs(test_src, o.source_lang, o.target_lang, as_published)) test_refs.push_back(e.target);

  // Tokenizer: the checkpoint's, the one given, or one trained on the training text (once
  // per output folder: a resumed or later run reuses it).
  text::MarianTokenizer tok = [&] {
    if (!o.model.empty()) return text::MarianTokenizer::load(o.model);
    if (!o.vocab.empty()) return text::MarianTokenizer::load(o.vocab);
    const fs::path dir = out / "tokenizer";
    // Rank 0 trains (or finds) it; the others receive its files (docs/distributed.md).
    return addrop_examples::shared_folder(dir, [&] {
      if (fs::exists(dir / "vocab.json")) return;
      std::vector<std::string> src, tgt;
      for (const auto& e : train_pairs) {
        src.push_back(e.source);
        tgt.push_back(e.target);
      }
      std::fprintf(stderr, "training a joint SentencePiece model (unigram, %d pieces) on %zu pairs...\n",
                   o.vocab_size, train_pairs.size());
      text::train_marian_tokenizer(
          src, tgt, {.vocab_size = o.vocab_size, .source_lang = o.source_lang, .target_lang = o.target_lang}, dir);
    }, [](const fs::path& folder) { return text::MarianTokenizer::load(folder); });
  }();

  // Model configuration: the checkpoint's, or a preset over the tokenizer's vocabulary.
  models::MarianConfig config = !o.model.empty() ? models::load_marian_config(fs::path(o.model) / "config.json")
                                                 : models::marian_preset(o.init, tok.vocab_size(), tok.pad_id(), tok.eos_id());
  if (config.vocab_size != tok.vocab_size())
    throw std::runtime_error((fs::path(o.model) / "config.json").string() + ": vocab_size " +
                             std::to_string(config.vocab_size) + " but the tokenizer's vocab.json has " +
                             std::to_string(tok.vocab_size()) + " entries");
  if (o.training.dropout >= 0) config.dropout = static_cast<float>(o.training.dropout);

  int64_t cut = 0, cut_all = 0;
  translate::Job job;
  job.train = encode_pairs(tok, train_pairs, o.training.max_length, &cut);
  cut_all += cut;
  if (o.training.max_train_examples > 0 && static_cast<int64_t>(job.train.size()) > o.training.max_train_examples)
    job.train.resize(static_cast<std::size_t>(o.training.max_train_examples));
  job.dev = encode_pairs(tok, dev_pairs, o.training.max_length, &cut);
  cut_all += cut;
  job.test = encode_pairs(tok, test_pairs, o.training.max_length, &cut);
  cut_all += cut;
  std::fprintf(stderr, "read and tokenized %zu train / %zu dev / %zu test pairs in %.1f s (vocabulary %lld%s)\n",
               job.train.size(), job.dev.size(), job.test.size(),
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
               static_cast<long long>(tok.vocab_size()),
               cut_all ? (", " + std::to_string(cut_all) + " sides cut to --max-length").c_str() : "");
  addrop_examples::warn_if_addrop_never_runs("addrop-translate", o.addrop, o.training, specs);

  // For scale: BLEU of the untranslated sources against the references.
  const double copy_dev = metrics::corpus_bleu(sources_of(dev_pairs), std::vector<std::vector<std::string>>{dev_refs}).score;
  const double copy_test =
      o.test.empty() ? 0.0 : metrics::corpus_bleu(sources_of(test_pairs), std::vector<std::vector<std::string>>{test_refs}).score;

  job.config = config;
  job.model_dir = o.model;
  job.dev_references = dev_refs;
  job.test_references = test_refs;
  job.detokenize = [&tok](const std::vector<int32_t>& ids) { return tok.decode_target(ids); };
  job.dev_eval = eval_options(config, o.generation, o.dev_num_beams);
  job.test_eval = eval_options(config, o.generation, o.generation.num_beams);
  job.label_smoothing = o.label_smoothing;
  job.layers = o.addrop.layers;
  job.attribution_precision = addrop_examples::attribution_precision(o.addrop.attribution_precision);
  job.side = o.addrop.side;
  job.schedule = o.addrop.schedule;
  job.ig_steps = o.addrop.ig_steps;
  job.trainer = addrop_examples::trainer_options(o.training);
  job.sampler = addrop_examples::sampler_options(o.training);
  job.trainer.save_extra = [&](const fs::path& dir) {
    tok.save(dir);
    nlohmann::json g = {{"decoder_start_token_id", config.decoder_start_token_id},
                        {"eos_token_id", config.eos_token_id},
                        {"pad_token_id", config.pad_token_id},
                        {"num_beams", config.num_beams},
                        {"max_length", config.max_length},
                        {"bad_words_ids", to_hf_json(config).at("bad_words_ids")},
                        {"forced_eos_token_id", to_hf_json(config).at("forced_eos_token_id")}};
    train::write_json_atomic(dir / "generation_config.json", g);
  };

  data::TaskInfo info{};
  info.name = "wmt16-" + o.source_lang + "-" + o.target_lang;
  info.main_metric = "bleu";
  const std::string detail = "encoder layers " + std::to_string(job.layers.size()) + ", ";
  return addrop_examples::run_all(o, specs, out, info, "BLEU", detail, [&](const auto& spec, const fs::path& dir, bool resume) {
    job.trainer.resume = resume;
    const translate::Outcome outcome = addrop_examples::on_device(
        o.device, o.threads, o.precision, [&](auto device) { return translate::train_run(device, job, spec, dir); });
    nlohmann::json summary = addrop_examples::summarize(outcome.run, spec, info, o.training, o);
    summary["layers"] = job.layers;
    summary["label_smoothing"] = o.label_smoothing;
    summary["target_normalization"] = normalization;
    summary["vocab_size"] = tok.vocab_size();
    summary["dev_num_beams"] = job.dev_eval.generation.num_beams;
    summary["copy_source_bleu"] = {{"dev", copy_dev}, {"test", copy_test}};
    if (outcome.test) {
      const auto& t = *outcome.test;
      summary["test"] = {{"bleu", t.bleu.score},       {"chrf", t.chrf.score},
                         {"bleu_line", t.bleu.str()},  {"counts", t.bleu.stats.correct},
                         {"totals", t.bleu.stats.total}, {"bp", t.bleu.bp},
                         {"sys_len", t.bleu.stats.hyp_len}, {"ref_len", t.bleu.stats.ref_len},
                         {"loss", t.loss},             {"num_beams", job.test_eval.generation.num_beams},
                         {"translate_seconds", t.seconds}, {"checkpoint", outcome.test_from_best ? "best" : "last"}};
      std::string text;
      for (const auto& h : t.hypotheses) text += h + "\n";
      if (addrop_examples::writes_files()) train::write_file_atomic(dir / "test_translations.txt", text);
      std::fprintf(stderr, "%s: test (%s checkpoint, %lld beams): %s, %s (copying the source: BLEU %.2f); %s\n",
                   spec.name.c_str(), outcome.test_from_best ? "best" : "last",
                   static_cast<long long>(job.test_eval.generation.num_beams), t.bleu.str().c_str(), t.chrf.str().c_str(),
                   copy_test, (dir / "test_translations.txt").c_str());
    }
    return addrop_examples::RunDone{std::move(summary), outcome.run.result};
  });
}

// ------------------------------------------------------------------ evaluate / translate
struct UseOptions {
  std::string model, source, reference, output_file, device = "cpu", precision = "f32";
  int threads = 0;
  bool json = false;
  GenerationFlags generation;
};

std::vector<std::string> run_translation(const UseOptions& o, const text::MarianTokenizer& tok,
                                         const std::vector<std::string>& sentences) {
  const models::MarianConfig config = models::load_marian_config(fs::path(o.model) / "config.json");
  std::vector<data::TranslationPair> pairs(sentences.size());
  for (std::size_t i = 0; i < sentences.size(); ++i) {
    pairs[i].source = tok.encode_source(sentences[i], config.max_position_embeddings);
    pairs[i].index = static_cast<int64_t>(i);
  }
  const auto options = eval_options(config, o.generation, o.generation.num_beams);
  const translate::Detokenize detok = [&tok](const std::vector<int32_t>& ids) { return tok.decode_target(ids); };
  return addrop_examples::on_device(o.device, o.threads, o.precision, [&](auto device) {
    return translate::translate_run(device, o.model, pairs, options, detok);
  });
}

int evaluate_command(const UseOptions& o) {
  check_generation(o.generation);
  const auto sources = read_segments(o.source, "--source");
  const auto references = read_segments(o.reference, "--reference");
  if (sources.size() != references.size())
    throw std::runtime_error("--source " + o.source + " has " + std::to_string(sources.size()) + " segments but --reference " +
                             o.reference + " has " + std::to_string(references.size()));
  const auto tok = text::MarianTokenizer::load(o.model);
  const auto t0 = std::chrono::steady_clock::now();
  const auto hyps = run_translation(o, tok, sources);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::fprintf(stderr, "translated %zu sentences in %.1f s (%.1f sentences/s)\n", hyps.size(), seconds,
               static_cast<double>(hyps.size()) / seconds);
  if (!o.output_file.empty()) {
    std::string text;
    for (const auto& h : hyps) text += h + "\n";
    train::write_file_atomic(o.output_file, text);
  }
  return print_scores(hyps, references, o.json);
}

int translate_command(const UseOptions& o) {
  check_generation(o.generation);
  const auto tok = text::MarianTokenizer::load(o.model);
  std::vector<std::string> lines;
  for (std::string line; std::getline(std::cin, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(line);
  }
  for (const auto& h : run_translation(o, tok, lines)) std::printf("%s\n", h.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  addrop_examples::ProcessGroup process_group(argc, argv, "addrop-translate");
  CLI::App app{"addrop-translate: train, evaluate and use a Marian translation model, with or without AD-DROP"};
  app.require_subcommand(1);
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast)->always_capture_default();

  TrainOptions t;
  // The reference's WMT16 en-ro setting: every encoder layer a target, p 0.2, q 0.2.
  t.addrop.p = 0.2;
  t.addrop.q = 0.2;
  t.addrop.layers.clear();  // empty = every encoder layer (filled in once the model is known)
  CLI::App* train_app = app.add_subcommand("train", "train (or fine-tune) a Marian on sentence pairs");
  train_app->get_formatter()->column_width(36);
  train_app->option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast)->always_capture_default();
  train_app->add_option("--model", t.model, "Marian folder to fine-tune (config.json, model.safetensors, source.spm, target.spm, vocab.json)");
  train_app->add_option("--init", t.init, "train from scratch instead: tiny, mini or small (OPUS-MT's shape)")
      ->check(CLI::IsMember({"tiny", "mini", "small"}));
  train_app->add_option("--vocab", t.vocab, "with --init: a Marian tokenizer folder (default: train one on the training text)");
  train_app->add_option("--vocab-size", t.vocab_size, "pieces of the SentencePiece model trained with --init and no --vocab");
  train_app->add_option("--train", t.train, "training pairs: PREFIX (PREFIX.<src>, PREFIX.<tgt>) or FILE.jsonl");
  train_app->add_option("--dev", t.dev, "dev pairs, scored by BLEU after every epoch (best checkpoint, early stopping)");
  train_app->add_option("--test", t.test, "test pairs, scored with the best checkpoint at the end");
  train_app->add_option("--train-lines", t.train_lines, "only these lines of --train, FIRST:LAST (1-based), e.g. 1:9500");
  train_app->add_option("--dev-lines", t.dev_lines, "only these lines of --dev, e.g. 9501:10000");
  train_app->add_option("--test-lines", t.test_lines, "only these lines of --test");
  train_app->add_option("--source-lang", t.source_lang, "source language code (file suffix, JSON key)");
  train_app->add_option("--target-lang", t.target_lang, "target language code");
  train_app->add_option("--target-normalization", t.normalization,
                        "Romanian targets for training: none, comma-below (cedilla ş ţ -> ș ț), remove-diacritics; "
                        "auto: comma-below with --init, none with --model. References are never changed")
      ->check(CLI::IsMember({"auto", "none", "comma-below", "remove-diacritics"}));
  train_app->add_option("--label-smoothing", t.label_smoothing, "label smoothing of the training loss (0: plain CE)");
  train_app->add_option("--dev-num-beams", t.dev_num_beams, "beams of the dev translations each epoch (1: greedy)");
  add_generation_flags(*train_app, t.generation, "beams of the test translations (0: the model config's num_beams)");
  addrop_examples::add_run_flags(*train_app, t);
  addrop_examples::add_addrop_flags(*train_app, t.addrop);
  train_app->get_option("--layers")->default_str("every encoder layer");
  addrop_examples::add_train_flags(*train_app, t.training);

  UseOptions use;
  CLI::App* eval_app = app.add_subcommand("evaluate", "translate a source file and score it against references");
  CLI::App* translate_app = app.add_subcommand("translate", "translate standard input, one sentence a line, to standard output");
  for (CLI::App* sub : {eval_app, translate_app}) {
    sub->option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast)->always_capture_default();
    sub->add_option("--model", use.model, "a Marian folder (a checkpoint addrop-translate train wrote, or OPUS-MT's)")->required();
    sub->add_option("--device", use.device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
    sub->add_option("--threads", use.threads, "CPU threads (0: all cores)");
    addrop_examples::add_precision_flag(*sub, use.precision);
    add_generation_flags(*sub, use.generation, "beams (0: the model config's num_beams)");
  }
  eval_app->add_option("--source", use.source, "source sentences: one a line, or a WMT .sgm file")->required();
  eval_app->add_option("--reference", use.reference, "reference translations: one a line, or a WMT .sgm file")->required();
  eval_app->add_option("--output-file", use.output_file, "write the translations here");
  eval_app->add_flag("--json", use.json, "print one JSON object (sacreBLEU's field names)");

  std::string hypotheses, reference;
  bool score_json = false;
  CLI::App* score_app = app.add_subcommand("score", "BLEU and chrF2 of a hypothesis file against a reference file, as sacreBLEU computes them");
  score_app->add_option("--hypotheses", hypotheses, "hypotheses, one segment a line")->required();
  score_app->add_option("--reference", reference, "references, one segment a line (or a WMT .sgm file)")->required();
  score_app->add_flag("--json", score_json, "print one JSON object (sacreBLEU's field names: score, counts, totals, bp, sys_len, ref_len)");
  CLI11_PARSE(app, argc, argv);

  try {
    if (train_app->parsed()) return train_command(*train_app, t);
    if (eval_app->parsed()) return evaluate_command(use);
    if (translate_app->parsed()) return translate_command(use);
    const auto hyps = read_segments(hypotheses, "--hypotheses");
    const auto refs = read_segments(reference, "--reference");
    if (hyps.size() != refs.size())
      throw std::runtime_error("--hypotheses " + hypotheses + " has " + std::to_string(hyps.size()) +
                               " lines but --reference " + reference + " has " + std::to_string(refs.size()));
    return print_scores(hyps, refs, score_json);
  } catch (const std::exception& e) {
    return process_group.fail(e);
  }
}
