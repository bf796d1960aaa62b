// End-to-end tests of examples/addrop-inspect: the built binary runs on the golden
// fixture models (tests/golden/fixtures/<layout>) with batch files made here from the
// fixture batch plus the uniform draws of the PyTorch AD-DROP golden files
// (tests/golden/addrop/<layout>/<variant>.safetensors), and every tensor it writes is
// compared with those files: 1e-9 (f64) / 1e-4 (f32) norm-wise relative for values,
// exact for candidates and keep masks. Also: refusing to overwrite, a missing label
// tensor, other error messages, generator draws, and the SVG heat map.
#define BOOST_TEST_MODULE inspect_e2e
#include <boost/property_tree/ptree.hpp>
#include <boost/property_tree/xml_parser.hpp>
#include <boost/test/unit_test.hpp>

#include <addrop/io/safetensors.hpp>
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <span>
#include <sstream>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include "support/compare.hpp"
#include "support/helpers.hpp"

namespace fs = std::filesystem;
namespace pt = boost::property_tree;
using addrop::io::SafeTensors;

namespace {

/// The build's paths, unless the environment names others (a copy of the binaries run on
/// another machine, as tests/cuda/gpu_check.sh does).
fs::path from_env(const char* name, const char* built_in) {
  const char* v = std::getenv(name);
  return fs::path(v && *v ? v : built_in);
}

const fs::path kFixtures = from_env("ADDROP_FIXTURE_DIR", ADDROP_FIXTURE_DIR);
const fs::path kAddrop = kFixtures.parent_path() / "addrop";
const fs::path kBinary = from_env("ADDROP_INSPECT_BINARY", ADDROP_INSPECT_BINARY);

/// The scratch folder of this test binary run, removed at exit.
const fs::path& scratch() {
  static const addrop::testing::TempDir dir("inspect_e2e");
  return dir.dir;
}

struct RunResult {
  int status = -1;
  std::string err;  ///< stderr
};

/// `s` in single quotes for /bin/sh.
std::string quote(const std::string& s) {
  std::string q(1, '\'');
  for (char c : s) {
    if (c == '\'') q.append("'\\''");
    else q.push_back(c);
  }
  q.push_back('\'');
  return q;
}

std::string read_text(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// Runs addrop-inspect with `args`; returns its exit status and stderr.
RunResult inspect(const std::vector<std::string>& args) {
  static int counter = 0;
  const fs::path err = scratch() / ("stderr_" + std::to_string(counter++) + ".txt");
  std::string cmd = quote(kBinary.string());
  for (const auto& a : args) {
    cmd.push_back(' ');
    cmd.append(quote(a));
  }
  cmd.append(" >/dev/null 2>");
  cmd.append(quote(err.string()));
  const int raw = std::system(cmd.c_str());
  RunResult r;
  r.status = raw != -1 && WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  r.err = read_text(err);
  return r;
}

/// The batch file of a golden variant: input_ids, attention_mask, token_type_ids and
/// labels of the fixture's batch, the uniform draws of the golden file; `without` names
/// tensors to leave out.
fs::path make_batch(const std::string& layout, const fs::path& golden, const std::string& name,
                    const std::vector<std::string>& without = {}) {
  const auto batch = SafeTensors::load(kFixtures / layout / "batch.safetensors");
  SafeTensors out;
  for (const char* t : {"input_ids", "attention_mask", "token_type_ids", "labels"}) out.insert(t, batch.at(t));
  if (!golden.empty()) {
    const auto g = SafeTensors::load(golden);
    for (const auto& t : g.names())
      if (t.starts_with("uniforms")) out.insert(t, g.at(t));
  }
  for (const auto& t : without) out.erase(t);
  const fs::path file = scratch() / (name + ".safetensors");
  out.save(file);
  return file;
}

std::vector<std::string> flags_from(const std::map<std::string, std::string>& meta) {
  return {"--attribution", meta.at("attribution"), "--p", meta.at("p"), "--q", meta.at("q"),
          "--layers", meta.at("layers"), "--side", meta.at("side"), "--steps", meta.at("steps"),
          "--iga-target", meta.at("iga_target")};
}

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) {
    if (!s.empty()) s.push_back(' ');
    s.append(x);
  }
  return s;
}

/// Runs the tool on one golden variant in `dtype` and compares every tensor.
void check_variant(const std::string& layout, const fs::path& golden, const std::string& dtype,
                   const std::string& device = "cpu") {
  const auto expected = SafeTensors::load(golden);
  const auto& meta = expected.metadata();
  const double tol = dtype == "f64" ? 1e-9 : 1e-4;
  const std::string stem = layout + "_" + golden.stem().string() + "_" + dtype + "_" + device;
  const fs::path batch = make_batch(layout, golden, "batch_" + stem);
  const fs::path output = scratch() / ("out_" + stem + ".safetensors");
  std::vector<std::string> args{"--model", (kFixtures / layout).string(), "--batch", batch.string(),
                                "--output", output.string(), "--dtype", dtype, "--threads", "2", "--device", device};
  for (auto& f : flags_from(meta)) args.push_back(f);
  BOOST_TEST_INFO("addrop-inspect " << joined(args));
  const auto r = inspect(args);
  BOOST_TEST_REQUIRE(r.status == 0, "exit status " << r.status << ", stderr: " << r.err);
  const auto got = SafeTensors::load(output);

  // Metadata, dtypes and the set of tensors.
  for (const char* key : {"attribution", "layers", "side", "steps", "iga_target"})
    BOOST_TEST(got.metadata().at(key) == meta.at(key), "metadata " << key);
  BOOST_TEST(std::stod(got.metadata().at("p")) == std::stod(meta.at("p")));
  BOOST_TEST(std::stod(got.metadata().at("q")) == std::stod(meta.at("q")));
  BOOST_TEST(got.metadata().at("dtype") == dtype);
  BOOST_TEST(got.metadata().at("uniforms") == "batch");
  BOOST_TEST(got.metadata().at("device") == device);
  const auto want_dtype = dtype == "f64" ? addrop::io::DType::F64 : addrop::io::DType::F32;
  const bool random = meta.at("attribution") == "rd";
  for (const auto& name : got.names()) {
    BOOST_TEST((got.at(name).dtype == want_dtype), name << " is stored as " << got.at(name).dtype);
    const bool known = expected.contains(name) || (random && name.starts_with("candidates.layer"));
    BOOST_TEST(known, "unexpected tensor " << name);
  }
  int compared = 0;
  for (const auto& name : expected.names()) {
    if (name.starts_with("uniforms")) continue;
    BOOST_TEST_CONTEXT(name) {
      BOOST_TEST_REQUIRE(got.contains(name), "the output lacks " << name);
      BOOST_TEST(got.at(name).shape == expected.at(name).shape,
                 addrop::io::shape_string(got.at(name).shape) << " vs " << addrop::io::shape_string(expected.at(name).shape));
      const auto g = got.values<double>(name);
      const auto w = expected.values<double>(name);
      BOOST_TEST_REQUIRE(g.size() == w.size());
      if (name.starts_with("candidates.") || name.starts_with("keep_mask.")) {
        int64_t differ = 0;
        for (std::size_t i = 0; i < g.size(); ++i) differ += g[i] != w[i];
        BOOST_TEST(differ == 0, name << ": " << differ << " of " << g.size() << " differ");
      } else if (name.ends_with("attention.self.key.bias")) {
        // Exactly zero in exact arithmetic (softmax is shift-invariant): absolute error
        // against the scale of the key weight's gradient, as the golden tests do.
        double scale = 0;
        for (double v : expected.values<double>(name.substr(0, name.size() - 4) + "weight")) scale = std::max(scale, std::abs(v));
        const auto cmp = addrop::testing::compare(name, g.data(), w.data(), static_cast<int64_t>(g.size()), tol);
        BOOST_CHECK_MESSAGE(cmp.max_abs_error <= tol * scale, cmp.report);
      } else {
        ADDROP_CHECK_CLOSE_TENSOR(name, g, w, tol);
      }
      ++compared;
    }
  }
  BOOST_TEST(compared > 30, compared << " tensors compared");
  if (random) {  // RD's candidates (not in the golden file): every non-pad key; each drop is a candidate
    for (const auto& name : got.names()) {
      if (!name.starts_with("candidates.layer")) continue;
      const auto c = got.values<double>(name);
      const auto k = got.values<double>("keep_mask" + name.substr(10));
      int64_t bad = 0;
      for (std::size_t i = 0; i < c.size(); ++i) bad += (c[i] != 0 && c[i] != 1) || (k[i] == 0 && c[i] != 1);
      BOOST_TEST(bad == 0, name << ": " << bad << " cells inconsistent with the keep mask");
    }
  }
  fs::remove(output);
}

std::vector<fs::path> golden_files(const std::string& layout) {
  std::vector<fs::path> paths;
  for (const auto& e : fs::directory_iterator(kAddrop / layout))
    if (e.path().extension() == ".safetensors") paths.push_back(e.path());
  std::sort(paths.begin(), paths.end());
  return paths;
}

const std::vector<std::string> kLayouts{"bert_seqcls", "roberta_seqcls", "bert_regression"};

void check_all(const std::string& dtype, const std::string& device = "cpu") {
  int files = 0;
  for (const auto& layout : kLayouts)
    for (const auto& golden : golden_files(layout))
      BOOST_TEST_CONTEXT(layout << "/" << golden.filename().string() << " (" << dtype << ", " << device << ")") {
        check_variant(layout, golden, dtype, device);
        ++files;
      }
  BOOST_TEST(files >= 5);
}

/// The common arguments of a quick bert_seqcls GA run into `output`.
std::vector<std::string> basic_args(const fs::path& batch, const fs::path& output) {
  return {"--model", (kFixtures / "bert_seqcls").string(), "--batch", batch.string(), "--output", output.string(),
          "--threads", "1"};
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::vector<std::string> operator+(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

}  // namespace

BOOST_AUTO_TEST_CASE(required_variants_exist) {
  for (const char* f : {"bert_seqcls/ga_l0_high_p0.3_q0.3", "bert_seqcls/iga_l0_high_p0.3_q0.3_m20_fixed",
                        "roberta_seqcls/ga_l01_low_p0.4_q0.5", "bert_seqcls/rd_l0_p0.3_q0.3",
                        "bert_regression/aa_l0_high_p0.3_q0.6"})
    BOOST_TEST(fs::exists(kAddrop / (std::string(f) + ".safetensors")), f);
  BOOST_TEST(fs::exists(kBinary), kBinary);
}

// Every golden AD-DROP variant (GA, IGA fixed and per-step, AA, RD; one or two target
// layers; high and low; classification and regression), double precision.
BOOST_AUTO_TEST_CASE(matches_pytorch_in_double) { check_all("f64"); }

// The same in single precision at 1e-4.
BOOST_AUTO_TEST_CASE(matches_pytorch_in_float) { check_all("f32"); }

// --device cuda: on a machine with a GPU every golden variant again, on the GPU; without
// one (or in a build without CUDA) a refusal that says why, and no output file.
BOOST_AUTO_TEST_CASE(cuda_device_matches_pytorch_or_says_why) {
  const fs::path golden = kAddrop / "bert_seqcls" / "ga_l0_high_p0.3_q0.3.safetensors";
  const fs::path batch = make_batch("bert_seqcls", golden, "batch_cuda_probe");
  const fs::path output = scratch() / "cuda_probe.safetensors";
  const auto r = inspect(basic_args(batch, output) + std::vector<std::string>{"--device", "cuda"});
  if (r.status != 0) {
    BOOST_TEST_INFO(r.err);
    BOOST_TEST((contains(r.err, "--device cuda: ") &&
                (contains(r.err, "no CUDA support") || contains(r.err, "no CUDA device"))));
    BOOST_TEST(!fs::exists(output));
    BOOST_TEST_MESSAGE("no usable GPU here: the GPU comparison did not run (" << r.err << ")");
    return;
  }
  check_all("f64", "cuda");
  check_all("f32", "cuda");
}

BOOST_AUTO_TEST_CASE(refuses_to_overwrite) {
  const auto golden = kAddrop / "bert_seqcls" / "ga_l0_high_p0.3_q0.3.safetensors";
  const auto batch = make_batch("bert_seqcls", golden, "overwrite_batch");
  const auto output = scratch() / "existing.safetensors";
  { std::ofstream(output) << "precious"; }
  const auto r = inspect(basic_args(batch, output));
  BOOST_TEST(r.status == 1);
  BOOST_TEST(contains(r.err, "addrop-inspect: "), r.err);
  BOOST_TEST(contains(r.err, output.string()), r.err);
  BOOST_TEST(contains(r.err, "--overwrite"), r.err);
  BOOST_TEST(read_text(output) == "precious");

  auto args = basic_args(batch, output);
  args.push_back("--overwrite");
  const auto again = inspect(args);
  BOOST_TEST_REQUIRE(again.status == 0, again.err);
  BOOST_TEST(SafeTensors::load(output).contains("masked_logits"));
  for (const auto& e : fs::directory_iterator(scratch()))
    BOOST_TEST(!contains(e.path().filename().string(), ".tmp."), "temporary file left: " << e.path());
}

BOOST_AUTO_TEST_CASE(missing_labels_is_an_error) {
  const auto golden = kAddrop / "bert_seqcls" / "ga_l0_high_p0.3_q0.3.safetensors";
  const auto batch = make_batch("bert_seqcls", golden, "no_labels", {"labels"});
  const auto output = scratch() / "no_labels_out.safetensors";
  const auto r = inspect(basic_args(batch, output));
  BOOST_TEST(r.status == 1);
  BOOST_TEST(contains(r.err, "addrop-inspect: "), r.err);
  BOOST_TEST(contains(r.err, "\"labels\""), r.err);
  BOOST_TEST(contains(r.err, batch.string()), r.err);
  BOOST_TEST(!fs::exists(output));
}

BOOST_AUTO_TEST_CASE(error_messages_name_the_culprit) {
  const auto golden = kAddrop / "bert_seqcls" / "ga_l0_high_p0.3_q0.3.safetensors";
  const auto batch = make_batch("bert_seqcls", golden, "errors_batch");
  const auto output = scratch() / "errors_out.safetensors";
  struct Case {
    std::vector<std::string> extra;
    std::vector<std::string> expect;  // substrings of stderr
  };
  // A batch whose uniform draws have the wrong shape.
  SafeTensors bad = SafeTensors::load(batch);
  const std::vector<float> few(10, 0.5f);
  bad.insert<float>("uniforms.layer0", {10}, std::span<const float>(few));
  const auto bad_batch = scratch() / "bad_uniforms.safetensors";
  bad.save(bad_batch);
  // A model folder that lacks one parameter.
  const auto broken = scratch() / "broken_model";
  fs::create_directories(broken);
  fs::copy_file(kFixtures / "bert_seqcls" / "config.json", broken / "config.json");
  SafeTensors weights = SafeTensors::load(kFixtures / "bert_seqcls" / "model.safetensors");
  weights.erase("classifier.bias");
  weights.save(broken / "model.safetensors");

  const std::vector<Case> cases{
      {{"--layers", "5"}, {"--layers", "layer 5"}},
      {{"--p", "1.5"}, {"--p", "[0, 1]"}},
      {{"--q", "-0.1"}, {"--q"}},
      {{"--p", "abc"}, {"--p", "abc"}},
      {{"--attribution", "xyz"}, {"--attribution", "xyz"}},
      {{"--dtype", "f16"}, {"--dtype"}},
      {{"--frobnicate"}, {"--frobnicate"}},
      {{"--batch", (scratch() / "nonexistent.safetensors").string()}, {"nonexistent.safetensors"}},
      {{"--batch", bad_batch.string()}, {"uniforms.layer0", "[3, 4, 7, 7]"}},
      {{"--model", broken.string()}, {"classifier.bias"}},
      {{"--model", (scratch() / "no_model").string()}, {"no_model"}},
      {{"--svg", (scratch() / "e.svg").string(), "--svg-layer", "1"}, {"--svg-layer"}},
      {{"--svg", (scratch() / "e.svg").string(), "--svg-head", "4"}, {"--svg-head"}},
  };
  for (const auto& c : cases) {
    auto args = basic_args(batch, output);
    for (const auto& a : c.extra) args.push_back(a);  // a later flag wins
    BOOST_TEST_CONTEXT("addrop-inspect " << joined(args)) {
      const auto r = inspect(args);
      BOOST_TEST(r.status == 1);
      BOOST_TEST(r.err.starts_with("addrop-inspect: "), r.err);
      for (const auto& part : c.expect) BOOST_TEST(contains(r.err, part), "stderr lacks \"" << part << "\": " << r.err);
      BOOST_TEST(!fs::exists(output));
    }
  }
  // --help prints the usage and succeeds.
  const auto help = inspect({"--help"});
  BOOST_TEST(help.status == 0);
}

// Without uniforms in the batch, draws come from the counter-based generator: the same
// seed gives the same bytes, another seed other masks.
BOOST_AUTO_TEST_CASE(generator_draws_are_seeded) {
  const auto batch = make_batch("bert_seqcls", {}, "no_uniforms");
  auto run = [&](const std::string& seed, const std::string& name) {
    const auto output = scratch() / name;
    const auto r = inspect(basic_args(batch, output) +
                           std::vector<std::string>{"--seed", seed, "--dtype", "f64", "--attribution", "aa", "--layers", "0,1"});
    BOOST_TEST_REQUIRE(r.status == 0, r.err);
    return SafeTensors::load(output);
  };
  const auto a = run("7", "seed7a.safetensors"), b = run("7", "seed7b.safetensors"), c = run("8", "seed8.safetensors");
  BOOST_TEST(a.metadata().at("uniforms") == "generator");
  BOOST_TEST(a.metadata().at("seed") == "7");
  BOOST_TEST(a.to_bytes() != c.to_bytes());
  for (const auto& name : a.names()) BOOST_TEST(a.values<double>(name) == b.values<double>(name), name);
  BOOST_TEST(a.values<double>("keep_mask.layer0") != c.values<double>("keep_mask.layer0"));
  BOOST_TEST(a.values<double>("logits") == c.values<double>("logits"));  // the plain forward does not depend on it
}

// Layouts without golden AD-DROP files still run: token classification (logits [B, L, C])
// and ELECTRA.
BOOST_AUTO_TEST_CASE(other_layouts_run) {
  for (const std::string layout : {"bert_token", "electra_seqcls", "electra_token"}) {
    BOOST_TEST_CONTEXT(layout) {
      const auto batch = make_batch(layout, {}, "batch_" + layout);
      const auto output = scratch() / ("out_" + layout + ".safetensors");
      const auto r = inspect({"--model", (kFixtures / layout).string(), "--batch", batch.string(), "--output",
                              output.string(), "--attribution", "iga", "--steps", "3", "--layers", "0,1", "--threads", "1"});
      BOOST_TEST_REQUIRE(r.status == 0, r.err);
      const auto got = SafeTensors::load(output);
      const auto want = SafeTensors::load(kFixtures / layout / "expected.safetensors");
      BOOST_TEST(got.at("logits").shape == want.at("logits").shape);
      BOOST_TEST(got.at("masked_logits").shape == want.at("logits").shape);
      BOOST_TEST(got.contains("attribution.layer1"));
    }
  }
}

namespace {

void collect_rects(const pt::ptree& node, std::vector<std::string>& classes, std::vector<std::string>& titles) {
  for (const auto& [tag, child] : node) {
    if (tag == "rect") {
      classes.push_back(child.get<std::string>("<xmlattr>.class", ""));
      titles.push_back(child.get<std::string>("title", ""));
    }
    if (tag != "<xmlattr>") collect_rects(child, classes, titles);
  }
}

void collect_text(const pt::ptree& node, std::vector<std::string>& texts) {
  for (const auto& [tag, child] : node) {
    if (tag == "text") texts.push_back(child.get_value<std::string>());
    if (tag != "<xmlattr>") collect_text(child, texts);
  }
}

}  // namespace

// The SVG heat map: well-formed XML, one <rect class="cell ..."> per (query, key) pair of
// the example's non-pad tokens in each panel, as many dropped cells as the keep mask has
// zeros there, and token labels escaped.
BOOST_AUTO_TEST_CASE(svg_heat_map) {
  const auto golden = kAddrop / "bert_seqcls" / "ga_l01_low_p0.4_q0.5.safetensors";
  const auto batch = make_batch("bert_seqcls", golden, "svg_batch");
  const auto output = scratch() / "svg_out.safetensors";
  const auto svg = scratch() / "map.svg";
  const auto tokens = scratch() / "vocab.txt";
  {
    std::ofstream out(tokens, std::ios::binary);
    for (int i = 0; i < 60; ++i) {
      if (i % 3 == 0) out << "<t&" << i << "\">\r\n";  // needs escaping, Windows line end
      else if (i % 3 == 2) out << "\xff" << "bad" << i << "\x01\n";  // invalid UTF-8 and a control character
      else out << "tok" << i << "\n";
    }
  }
  const int64_t example = 1, head = 2, layer = 1;
  const std::vector<std::string> svg_args{"--layers", "0,1", "--side", "low", "--p", "0.4", "--q", "0.5",
                                          "--svg", svg.string(), "--svg-layer", "1", "--svg-head", "2",
                                          "--svg-example", "1", "--tokens", tokens.string()};
  const auto r = inspect(basic_args(batch, output) + svg_args);
  BOOST_TEST_REQUIRE(r.status == 0, r.err);

  pt::ptree tree;
  BOOST_REQUIRE_NO_THROW(pt::read_xml(svg.string(), tree));
  BOOST_TEST_REQUIRE(tree.count("svg") == 1u);
  std::vector<std::string> classes, titles, texts;
  collect_rects(tree.get_child("svg"), classes, titles);
  collect_text(tree.get_child("svg"), texts);

  const auto st = SafeTensors::load(batch);
  const auto mask = st.values<int64_t>("attention_mask");
  const auto ids = st.values<int64_t>("input_ids");
  const int64_t L = 7, H = 4;
  std::vector<int64_t> real;
  for (int64_t j = 0; j < L; ++j)
    if (mask[example * L + j]) real.push_back(j);
  const auto n = static_cast<int64_t>(real.size());
  BOOST_TEST(n == 5);
  const auto keep = SafeTensors::load(output).values<double>("keep_mask.layer" + std::to_string(layer));
  int64_t zeros = 0;
  for (int64_t i : real)
    for (int64_t j : real) zeros += keep[((example * H + head) * L + i) * L + j] == 0;

  int64_t cells = 0, dropped = 0, attribution_cells = 0;
  for (const auto& c : classes) {
    cells += c.starts_with("cell");
    dropped += c == "cell dropped";
    attribution_cells += c == "cell attribution";
  }
  BOOST_TEST(cells == 2 * n * n);
  BOOST_TEST(attribution_cells == n * n);
  BOOST_TEST(dropped == zeros);
  BOOST_TEST(zeros > 0);
  // Token labels: id k is line k of the file; entities come back unescaped.
  for (int64_t j : real) {
    const int64_t id = ids[example * L + j];
    if (id % 3 == 0) {
      const std::string label = "<t&" + std::to_string(id) + "\">";
      BOOST_TEST(std::count(texts.begin(), texts.end(), label) == 2 * 2, "label " << label << " (rows and columns)");
    } else if (id % 3 == 1) {
      const std::string label = "tok" + std::to_string(id);
      BOOST_TEST(std::count(texts.begin(), texts.end(), label) == 2 * 2, "label " << label);
    }
  }
  // Example 1 holds ids 2 and 17, whose lines have an invalid byte and a control character:
  // each becomes U+FFFD (the file stays valid UTF-8 XML).
  BOOST_TEST(contains(read_text(svg), "\xEF\xBF\xBD" "bad17\xEF\xBF\xBD"));

  // Without --tokens the axes show the ids.
  const auto ids_svg = scratch() / "ids.svg";
  const auto plain = inspect(basic_args(batch, output) +
                             std::vector<std::string>{"--overwrite", "--svg", ids_svg.string(), "--svg-example", "2"});
  BOOST_TEST_REQUIRE(plain.status == 0, plain.err);
  pt::ptree ids_tree;
  BOOST_REQUIRE_NO_THROW(pt::read_xml(ids_svg.string(), ids_tree));
  std::vector<std::string> id_texts;
  collect_text(ids_tree.get_child("svg"), id_texts);
  BOOST_TEST(std::count(id_texts.begin(), id_texts.end(), std::to_string(ids[2 * L])) >= 4);

  // An existing SVG is refused without --overwrite (and left as it was).
  const std::string before = read_text(svg);
  const auto refused = inspect(basic_args(batch, scratch() / "svg_out2.safetensors") + svg_args);
  BOOST_TEST(refused.status == 1);
  BOOST_TEST(contains(refused.err, "--svg"), refused.err);
  BOOST_TEST(read_text(svg) == before);
  BOOST_TEST(!fs::exists(scratch() / "svg_out2.safetensors"));
}
