// addrop-tokenize: Hugging Face-exact tokenization of stdin, one output line per input line.
//
//   addrop-tokenize --model checkpoints/roberta-base < lines.txt > ids.txt
//   printf 'A premise.\tA hypothesis.\n' | addrop-tokenize --vocab vocab.txt --max-length 128
//
// A TAB separates the two sentences of a pair. Each output line holds the token ids (or,
// with --tokens, the token strings) with the special tokens, space-separated, no padding.
// Special-token strings in the text ("[SEP]", "<mask>") are those tokens, as in Hugging
// Face; --split-special-tokens tokenizes them as ordinary text.
// Input is read in large blocks; with --threads N each block is cut into N ranges of lines
// tokenized in parallel, and the output keeps the input order.
#include <CLI/CLI.hpp>

#include <addrop/text/tokenizer.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <vector>

#include "cli_common.hpp"

namespace text = addrop::text;

namespace {

struct Args {
  std::string model, vocab, vocab_json, merges;
  bool cased = false, tokens = false, add_prefix_space = false, split_special_tokens = false;
  int64_t max_length = 0;
  int threads = 1;
};

/// A usage error: exit status 2 (a failed run exits 1).
[[noreturn]] void fail(const std::string& msg) {
  std::fprintf(stderr, "addrop-tokenize: %s\n(try --help)\n", msg.c_str());
  std::exit(2);
}

/// The flags; CLI11 refuses a value of the wrong kind, a missing file or folder.
void add_flags(CLI::App& app, Args& a) {
  app.add_option("--model", a.model,
                 "checkpoint folder: vocab.txt (WordPiece) or vocab.json + merges.txt\n"
                 "(byte-level BPE) or tokenizer.json, with tokenizer_config.json")
      ->check(CLI::ExistingDirectory);
  app.add_option("--vocab", a.vocab, "a WordPiece vocab.txt (lower-cased unless --cased)")->check(CLI::ExistingFile);
  app.add_flag("--cased", a.cased, "keep case and accents (with --vocab)");
  app.add_option("--vocab-json", a.vocab_json, "a byte-level BPE vocab.json (needs --merges)")->check(CLI::ExistingFile);
  app.add_option("--merges", a.merges, "the merges.txt that goes with --vocab-json")->check(CLI::ExistingFile);
  app.add_flag("--add-prefix-space", a.add_prefix_space, "byte-level BPE: add a space before each text (with --vocab-json)");
  app.add_flag("--split-special-tokens", a.split_special_tokens,
               "tokenize special-token strings in the text (\"[CLS]\", \"[SEP]\",\n"
               "\"<s>\", \"<mask>\", ...) as ordinary text (Hugging Face's\n"
               "split_special_tokens=True); by default they are the special tokens");
  app.add_option("--max-length", a.max_length,
                 "truncate each example to N tokens, special tokens included\n"
                 "(Hugging Face's longest_first); 0: no truncation")
      ->transform(addrop_examples::whole_number<int64_t>());
  app.add_flag("--tokens", a.tokens, "print token strings instead of ids");
  app.add_option("--threads", a.threads, "tokenize with N threads (at most 256)")->transform(addrop_examples::whole_number<int>());
}

/// Each value on its own (its message names the flag and the value), then the flags that
/// go together; throws std::invalid_argument.
void check_flags(Args& a) {
  addrop_examples::require(a.max_length >= 0, "--max-length", a.max_length, "must be 0 or more (0: no truncation)");
  addrop_examples::require(a.threads >= 1, "--threads", a.threads, "must be at least 1");
  auto refuse = [](const char* why) { throw std::invalid_argument(why); };
  const int sources = !a.model.empty() + !a.vocab.empty() + !a.vocab_json.empty();
  if (sources != 1) refuse("give exactly one of --model, --vocab, --vocab-json");
  if (!a.vocab_json.empty() && a.merges.empty()) refuse("--vocab-json needs --merges");
  if (a.vocab_json.empty() && !a.merges.empty()) refuse("--merges goes with --vocab-json");
  if (a.cased && a.vocab.empty()) refuse("--cased goes with --vocab");
  if (a.add_prefix_space && a.vocab_json.empty()) refuse("--add-prefix-space goes with --vocab-json");
  a.threads = std::min(a.threads, 256);
}

std::unique_ptr<text::Tokenizer> make_tokenizer(const Args& a) {
  namespace fs = std::filesystem;
  if (!a.model.empty()) {
    text::TokenizerOverrides over;
    if (a.split_special_tokens) over.split_special_tokens = true;
    return text::load_tokenizer(a.model, over);
  }
  if (!a.vocab.empty()) {
    text::WordPieceOptions o;
    o.lower_case = !a.cased;
    o.split_special_tokens = a.split_special_tokens;
    return std::make_unique<text::WordPieceTokenizer>(fs::path(a.vocab), o);
  }
  text::ByteBpeOptions o;
  o.add_prefix_space = a.add_prefix_space;
  o.split_special_tokens = a.split_special_tokens;
  return std::make_unique<text::ByteBpeTokenizer>(fs::path(a.vocab_json), fs::path(a.merges), o);
}

/// Tokenizes the lines of `block` and appends one output line per input line to `out`.
class Worker {
 public:
  Worker(const text::Tokenizer& tok, const Args& args) : tok_(tok), args_(args) {
    wp_ = dynamic_cast<const text::WordPieceTokenizer*>(&tok);
    bpe_ = dynamic_cast<const text::ByteBpeTokenizer*>(&tok);
    double_sep_ = tok.kind() == "byte_bpe";
  }

  void run(std::string_view block, std::string& out) {
    std::size_t pos = 0;
    while (pos < block.size()) {
      std::size_t nl = block.find('\n', pos);
      if (nl == std::string_view::npos) nl = block.size();
      std::string_view line = block.substr(pos, nl - pos);
      pos = nl + 1;
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      line_(line, out);
      out.push_back('\n');
    }
  }

 private:
  void line_(std::string_view line, std::string& out) {
    const auto tab = line.find('\t');
    const std::string_view first = line.substr(0, tab);
    std::optional<std::string_view> second;
    if (tab != std::string_view::npos) second = line.substr(tab + 1);
    if (args_.tokens || (!wp_ && !bpe_)) {
      const auto e = tok_.encode(first, second, args_.max_length);
      for (std::size_t i = 0; i < e.size(); ++i) {
        if (i) out.push_back(' ');
        if (args_.tokens) out += e.tokens[i];
        else put(out, e.ids[i]);
      }
      return;
    }
    // Fast path: ids only, then truncation and special tokens as Tokenizer::encode does.
    a_.clear();
    b_.clear();
    ids(first, a_);
    if (second) ids(*second, b_);
    const int64_t added = second ? (double_sep_ ? 4 : 3) : 2;
    auto na = static_cast<int64_t>(a_.size()), nb = static_cast<int64_t>(b_.size());
    if (args_.max_length > 0) {
      if (args_.max_length < added)
        throw std::invalid_argument("--max-length " + std::to_string(args_.max_length) + " is smaller than the " +
                                    std::to_string(added) + " special tokens");
      const int64_t budget = args_.max_length - added;
      if (!second) na = std::min(na, budget);
      else std::tie(na, nb) = text::detail::longest_first_lengths(na, nb, budget);
    }
    const int32_t cls = tok_.cls_id(), sep = tok_.sep_id();
    put(out, cls);
    for (int64_t i = 0; i < na; ++i) out.push_back(' '), put(out, a_[static_cast<std::size_t>(i)]);
    out.push_back(' ');
    put(out, sep);
    if (second) {
      if (double_sep_) out.push_back(' '), put(out, sep);
      for (int64_t i = 0; i < nb; ++i) out.push_back(' '), put(out, b_[static_cast<std::size_t>(i)]);
      out.push_back(' ');
      put(out, sep);
    }
  }

  void ids(std::string_view s, std::vector<int32_t>& v) const {
    if (wp_) wp_->encode_ids(s, v);
    else bpe_->encode_ids(s, v);
  }

  static void put(std::string& out, int32_t v) {
    char buf[16];
    const auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, p);
  }

  const text::Tokenizer& tok_;
  const Args& args_;
  const text::WordPieceTokenizer* wp_ = nullptr;
  const text::ByteBpeTokenizer* bpe_ = nullptr;
  bool double_sep_ = false;
  std::vector<int32_t> a_, b_;
};

void write_all(const std::string& s) {
  if (!s.empty() && std::fwrite(s.data(), 1, s.size(), stdout) != s.size()) {
    std::fprintf(stderr, "addrop-tokenize: cannot write the output\n");
    std::exit(1);
  }
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  CLI::App app{"addrop-tokenize: reads lines from stdin (a TAB separates the two sentences of a pair) and prints,\n"
               "for each line, its token ids with the special tokens, space-separated, no padding.\n"
               "Give one of --model DIR, --vocab FILE [--cased], --vocab-json FILE --merges FILE."};
  app.get_formatter()->column_width(30);
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast)->always_capture_default();  // a later flag wins; --help shows defaults
  add_flags(app, args);
  try {
    app.parse(argc, argv);
    check_flags(args);
  } catch (const CLI::Success& e) {
    return app.exit(e);  // --help
  } catch (const std::exception& e) {
    fail(e.what());
  }
  try {
    const auto tok = make_tokenizer(args);
    const int nt = args.threads;
    std::vector<Worker> workers;
    for (int t = 0; t < nt; ++t) workers.emplace_back(*tok, args);
    std::vector<std::string> outs(static_cast<std::size_t>(nt));
    constexpr std::size_t kBlock = std::size_t{8} << 20;
    std::string buf;
    buf.reserve(kBlock + 4096);
    std::vector<char> chunk(kBlock);
    bool eof = false;
    while (!eof || !buf.empty()) {
      if (!eof) {
        const std::size_t n = std::fread(chunk.data(), 1, chunk.size(), stdin);
        if (n < chunk.size()) {
          if (std::ferror(stdin)) throw std::runtime_error("cannot read stdin");
          eof = true;
        }
        buf.append(chunk.data(), n);
      }
      // Complete lines only, unless the input has ended.
      std::size_t end = buf.size();
      if (!eof) {
        const auto last = buf.rfind('\n');
        if (last == std::string::npos) continue;
        end = last + 1;
      } else if (end > 0 && buf.back() != '\n') {
        buf.push_back('\n');
        end = buf.size();
      }
      const std::string_view block(buf.data(), end);
      if (nt == 1) {
        outs[0].clear();
        workers[0].run(block, outs[0]);
      } else {
        // Cut the block into nt ranges at line ends; each thread writes its own string.
        std::vector<std::size_t> cuts{0};
        for (int t = 1; t < nt; ++t) {
          std::size_t c = block.size() * static_cast<std::size_t>(t) / static_cast<std::size_t>(nt);
          if (c <= cuts.back()) {
            c = cuts.back();
          } else {
            const auto nl = block.find('\n', c - 1);
            c = nl == std::string_view::npos ? block.size() : nl + 1;
          }
          cuts.push_back(c);
        }
        cuts.push_back(block.size());
        std::vector<std::thread> threads;
        std::vector<std::exception_ptr> errors(static_cast<std::size_t>(nt));
        for (int t = 0; t < nt; ++t)
          threads.emplace_back([&, t] {
            const auto ti = static_cast<std::size_t>(t);
            try {
              outs[ti].clear();
              workers[ti].run(block.substr(cuts[ti], cuts[ti + 1] - cuts[ti]), outs[ti]);
            } catch (...) {
              errors[ti] = std::current_exception();
            }
          });
        for (auto& th : threads) th.join();
        for (auto& e : errors)
          if (e) std::rethrow_exception(e);
      }
      for (const auto& o : outs) write_all(o);
      buf.erase(0, end);
    }
    std::fflush(stdout);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "addrop-tokenize: %s\n", e.what());
    return 1;
  }
  return 0;
}
