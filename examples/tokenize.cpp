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
#include <addrop/text/tokenizer.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
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

namespace text = addrop::text;

namespace {

constexpr const char* kUsage = R"(usage: addrop-tokenize (--model DIR | --vocab FILE [--cased] | --vocab-json FILE --merges FILE)
                       [--max-length N] [--tokens] [--threads N] [--add-prefix-space]
                       [--split-special-tokens]

Reads lines from stdin (a TAB separates the two sentences of a pair) and prints, for each
line, its token ids with the special tokens, space-separated, no padding.

  --model DIR          checkpoint folder: vocab.txt (WordPiece) or vocab.json + merges.txt
                       (byte-level BPE) or tokenizer.json, with tokenizer_config.json
  --vocab FILE         a WordPiece vocab.txt (lower-cased unless --cased)
  --cased              keep case and accents (with --vocab)
  --vocab-json FILE    a byte-level BPE vocab.json (needs --merges)
  --merges FILE        the merges.txt that goes with --vocab-json
  --add-prefix-space   byte-level BPE: add a space before each text (with --vocab-json)
  --split-special-tokens
                       tokenize special-token strings in the text ("[CLS]", "[SEP]",
                       "<s>", "<mask>", ...) as ordinary text (Hugging Face's
                       split_special_tokens=True); by default they are the special tokens
  --max-length N       truncate each example to N tokens, special tokens included
                       (Hugging Face's longest_first); 0 (default): no truncation
  --tokens             print token strings instead of ids
  --threads N          tokenize with N threads (default 1)
  --help               this text
)";

struct Args {
  std::string model, vocab, vocab_json, merges;
  bool cased = false, tokens = false, add_prefix_space = false, split_special_tokens = false;
  int64_t max_length = 0;
  int threads = 1;
};

[[noreturn]] void fail(const std::string& msg) {
  std::fprintf(stderr, "addrop-tokenize: %s\n(try --help)\n", msg.c_str());
  std::exit(2);
}

int64_t parse_int(const std::string& flag, const char* s, int64_t lo) {
  int64_t v = 0;
  const char* end = s + std::strlen(s);
  const auto [p, ec] = std::from_chars(s, end, v);
  if (ec != std::errc() || p != end || v < lo) fail(flag + " needs an integer >= " + std::to_string(lo) + ", got '" + s + "'");
  return v;
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string f = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) fail(f + " needs a value");
      return argv[++i];
    };
    if (f == "--help" || f == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (f == "--model") a.model = value();
    else if (f == "--vocab") a.vocab = value();
    else if (f == "--vocab-json") a.vocab_json = value();
    else if (f == "--merges") a.merges = value();
    else if (f == "--cased") a.cased = true;
    else if (f == "--tokens") a.tokens = true;
    else if (f == "--add-prefix-space") a.add_prefix_space = true;
    else if (f == "--split-special-tokens") a.split_special_tokens = true;
    else if (f == "--max-length") a.max_length = parse_int(f, value(), 0);
    else if (f == "--threads") a.threads = static_cast<int>(std::min<int64_t>(parse_int(f, value(), 1), 256));
    else fail("unknown option '" + f + "'");
  }
  const int sources = !a.model.empty() + !a.vocab.empty() + !a.vocab_json.empty();
  if (sources != 1) fail("give exactly one of --model, --vocab, --vocab-json");
  if (!a.vocab_json.empty() && a.merges.empty()) fail("--vocab-json needs --merges");
  if (a.vocab_json.empty() && !a.merges.empty()) fail("--merges goes with --vocab-json");
  if (a.cased && a.vocab.empty()) fail("--cased goes with --vocab");
  if (a.add_prefix_space && a.vocab_json.empty()) fail("--add-prefix-space goes with --vocab-json");
  return a;
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
  const Args args = parse(argc, argv);
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
