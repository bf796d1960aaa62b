// One data-parallel training run of a tiny model (random init, dropout on, AD-DROP GA on
// every step), as tests/dist/run_distributed_tests.sh starts it: alone (dist::Local, no
// MPI at all) or under `mpirun -np N` (dist::Mpi). It writes, on rank 0, OUT/record.json (the loss of
// every step, the dev loss of every evaluation) and OUT/masks.bin (every step's AD-DROP
// keep masks of every example, gathered from the ranks in the whole batch's order), and
// the trainer's own OUT/last checkpoint. `--compare A B` checks two such folders against
// each other: losses and weights within --rtol, masks identical.
//
//   distributed_run --out DIR [--task seq|token] [--dtype f64|f32] [--examples 203]
//                   [--batch 8] [--epochs 2] [--resume] [--exit-rank R --exit-step S]
//                   [--throw-rank R --throw-step S]
//   distributed_run --compare DIR_A DIR_B --rtol 1e-12 [--from-step K]
#include <addrop/addrop.hpp>
#include <addrop/data/token_alignment.hpp>
#include <addrop/dist/mpi.hpp>
#include <addrop/io/safetensors.hpp>
#include <addrop/train/evaluate.hpp>
#include <addrop/train/trainer.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <iterator>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using namespace addrop;

namespace {

struct Args {
  std::string out, task = "seq", dtype = "f64";
  int examples = 203, batch = 8, epochs = 2;
  bool resume = false;
  int exit_rank = -1, exit_step = -1, throw_rank = -1, throw_step = -1;
  std::string compare_a, compare_b;
  double rtol = 1e-12;
  int from_step = 0;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(k + " needs a value");
      return argv[++i];
    };
    if (k == "--out") a.out = next();
    else if (k == "--task") a.task = next();
    else if (k == "--dtype") a.dtype = next();
    else if (k == "--examples") a.examples = std::stoi(next());
    else if (k == "--batch") a.batch = std::stoi(next());
    else if (k == "--epochs") a.epochs = std::stoi(next());
    else if (k == "--resume") a.resume = true;
    else if (k == "--exit-rank") a.exit_rank = std::stoi(next());
    else if (k == "--exit-step") a.exit_step = std::stoi(next());
    else if (k == "--throw-rank") a.throw_rank = std::stoi(next());
    else if (k == "--throw-step") a.throw_step = std::stoi(next());
    else if (k == "--compare") { a.compare_a = next(); a.compare_b = next(); }
    else if (k == "--rtol") a.rtol = std::stod(next());
    else if (k == "--from-step") a.from_step = std::stoi(next());
    else throw std::invalid_argument("unknown argument " + k);
  }
  return a;
}

models::ModelConfig tiny_config(bool token) {
  models::ModelConfig c;
  c.vocab_size = 40;
  c.hidden_size = 16;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.intermediate_size = 32;
  c.max_position_embeddings = 24;
  c.num_labels = token ? 3 : 2;
  c.task = token ? models::Task::TokenClassification : models::Task::SequenceClassification;
  c.hidden_dropout_prob = 0.1f;
  c.attention_probs_dropout_prob = 0.1f;
  return c;
}

// Sentences of 3..14 tokens; the label says whether token 7 occurs (sequence) or tags
// each token by its id (token: 0, 1, 2, some tokens -100 like continuations).
data::TokenFeatures make_data(int n, uint64_t seed) {
  data::TokenFeatures d;
  for (int i = 0; i < n; ++i) {
    data::Feature f;
    const int len = 3 + static_cast<int>(random::uniform(seed, 1, i) * 12);
    f.ids.push_back(2);
    std::vector<int32_t> labels{-100};
    for (int j = 0; j < len; ++j) {
      const int t = 3 + static_cast<int>(random::uniform(seed, 2, 100 * i + j) * 36);
      f.ids.push_back(t);
      labels.push_back(random::uniform(seed, 4, 100 * i + j) < 0.2f ? -100 : t % 3);
    }
    f.type_ids.assign(f.ids.size(), 0);
    f.label = 0;
    for (int32_t t : f.ids) f.label |= t == 7 || t == 8;
    f.index = i;
    d.word_ids.emplace_back(f.ids.size(), 0);
    d.num_words.push_back(1);
    d.features.push_back(f);
    d.labels.push_back(labels);
  }
  return d;
}

// AdDrop (GA, top-p, every step) that keeps each step's keep masks by the whole batch's
// example index, and fails on request (the fault tests).
template <class T>
struct Recording {
  AdDrop<attribution::Gradient, selection::TopP, schedule::Always> inner;
  const Args* args;
  int rank = 0;
  std::map<int64_t, std::map<int64_t, std::vector<uint8_t>>> masks;  // step -> example -> keep bytes

  template <class Model>
  auto step(Model& model, const models::Batch& batch, int epoch) {
    const int64_t s = inner.step_count() + 1;
    if (rank == args->exit_rank && s == args->exit_step) std::_Exit(3);  // as if killed
    if (rank == args->throw_rank && s == args->throw_step)
      throw std::runtime_error("batch of step " + std::to_string(s) + " is unreadable (injected fault)");
    auto out = inner.step(model, batch, epoch);
    auto& at = masks[s];
    for (std::size_t l = 0; l < out.keep.size(); ++l) {
      const auto& keep = *out.keep[l];
      const int64_t per = keep.numel() / batch.size;
      for (int64_t b = 0; b < batch.size; ++b) {
        auto& bytes = at[batch.shard.first_example + b];
        for (int64_t e = 0; e < per; ++e) bytes.push_back(keep.data()[b * per + e] != T(0));
      }
    }
    return out;
  }
  int64_t step_count() const { return inner.step_count(); }
  void set_step_count(int64_t n) { inner.set_step_count(n); }
};

struct LossLog {
  nlohmann::json steps = nlohmann::json::array();
  void on_step(const train::StepInfo& s) { steps.push_back({{"step", s.step}, {"loss", s.loss}}); }
};

template <class T>
int run(const Args& a, dist::AnyCommunicator& comm) {
  const bool token = a.task == "token";
  if (comm.rank() == 0) fs::create_directories(a.out);
  comm.barrier();
  models::EncoderModel<T> model(tiny_config(token), {.threads = 1});
  models::init_weights(model, 11);
  const auto train_data = make_data(a.examples, 1), dev_data = make_data(61, 2);
  Recording<T> reg{AdDrop<attribution::Gradient, selection::TopP, schedule::Always>(
                       AdDropOptions{.p = 0.3, .q = 0.5, .layers = {0, 1}, .seed = 5, .record_masks = true}),
                   &a, comm.rank(), {}};
  train::TrainerOptions opt;
  opt.epochs = a.epochs;
  opt.optimizer.lr = 1e-3;
  opt.lr_schedule = train::ScheduleKind::Linear;
  opt.warmup = 0.1;
  opt.output = a.out;
  opt.resume = a.resume;
  opt.progress = false;
  train::Trainer trainer(model, reg, opt, comm);
  LossLog log;
  nlohmann::json dev_losses = nlohmann::json::array();
  auto evaluate = [&](auto& m) {
    train::EvalResult r;
    if (token) {
      r.loss = train::predict_tokens(m, dev_data, 16, 0, {}, comm).loss;
    } else {
      r.loss = train::predict(m, dev_data.features, 16, 0, {}, comm).loss;
    }
    r.main = -r.loss;
    dev_losses.push_back(r.loss);
    return r;
  };
  const data::SamplerOptions sampler{.batch_size = a.batch, .seed = 3};
  train::TrainResult result;
  if (token) {
    result = trainer.fit(data::TokenBatches(train_data, sampler, 0), evaluate, log);
  } else {
    result = trainer.fit(data::SequenceBatches(train_data.features, sampler, 0, false), evaluate, log);
  }
  // Every rank's masks to rank 0, in step and example order.
  std::vector<std::byte> mine;
  auto put = [&](const void* p, std::size_t n) {
    mine.insert(mine.end(), static_cast<const std::byte*>(p), static_cast<const std::byte*>(p) + n);
  };
  for (const auto& [s, examples] : reg.masks)
    for (const auto& [e, bytes] : examples) {
      const int64_t n = static_cast<int64_t>(bytes.size());
      put(&s, 8);
      put(&e, 8);
      put(&n, 8);
      put(bytes.data(), bytes.size());
    }
  const auto all = comm.host_all_gather(mine);
  if (comm.rank() != 0) return 0;
  std::map<std::pair<int64_t, int64_t>, std::vector<uint8_t>> merged;
  for (const auto& from : all) {
    std::size_t at = 0;
    while (at < from.size()) {
      int64_t s, e, n;
      std::memcpy(&s, from.data() + at, 8);
      std::memcpy(&e, from.data() + at + 8, 8);
      std::memcpy(&n, from.data() + at + 16, 8);
      at += 24;
      auto& v = merged[{s, e}];
      v.resize(static_cast<std::size_t>(n));
      std::memcpy(v.data(), from.data() + at, static_cast<std::size_t>(n));
      at += static_cast<std::size_t>(n);
    }
  }
  std::ofstream masks(fs::path(a.out) / "masks.bin", std::ios::binary);
  for (const auto& [key, v] : merged) {
    const int64_t head[3] = {key.first, key.second, static_cast<int64_t>(v.size())};
    masks.write(reinterpret_cast<const char*>(head), 24);
    masks.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size()));
  }
  nlohmann::json rec{{"steps", log.steps}, {"dev_losses", dev_losses}, {"processes", comm.size()},
                     {"total_steps", result.steps}};
  std::ofstream(fs::path(a.out) / "record.json") << rec.dump(1);
  return 0;
}

double rel(double a, double b) { return std::abs(a - b) / std::max({std::abs(a), std::abs(b), 1e-30}); }

// masks.bin: records of (step, example, n) as int64 and n bytes, steps >= from_step kept.
std::map<std::pair<int64_t, int64_t>, std::string> read_masks(const fs::path& file, int from_step) {
  std::ifstream in(file, std::ios::binary);
  const std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::map<std::pair<int64_t, int64_t>, std::string> out;
  std::size_t at = 0;
  while (at + 24 <= all.size()) {
    int64_t head[3];
    std::memcpy(head, all.data() + at, 24);
    if (head[0] >= from_step) out[{head[0], head[1]}] = all.substr(at + 24, static_cast<std::size_t>(head[2]));
    at += 24 + static_cast<std::size_t>(head[2]);
  }
  return out;
}

int compare(const Args& a) {
  int failures = 0;
  auto fail = [&](const std::string& what) {
    std::fprintf(stderr, "MISMATCH: %s\n", what.c_str());
    ++failures;
  };
  const auto ra = nlohmann::json::parse(std::ifstream(fs::path(a.compare_a) / "record.json"));
  const auto rb = nlohmann::json::parse(std::ifstream(fs::path(a.compare_b) / "record.json"));
  std::map<int64_t, double> la, lb;
  for (const auto& s : ra.at("steps")) la[s.at("step").get<int64_t>()] = s.at("loss").get<double>();
  for (const auto& s : rb.at("steps")) lb[s.at("step").get<int64_t>()] = s.at("loss").get<double>();
  double worst_loss = 0;
  int compared = 0;
  for (const auto& [s, l] : la) {
    if (s < a.from_step) continue;
    if (!lb.count(s)) { fail("step " + std::to_string(s) + " missing in " + a.compare_b); continue; }
    worst_loss = std::max(worst_loss, rel(l, lb[s]));
    ++compared;
  }
  if (compared == 0) fail("no step compared");
  if (worst_loss > a.rtol) fail("per-step loss differs by " + std::to_string(worst_loss) + " relative");
  // Masks: every (step, example) of A, identical in B.
  const auto A = read_masks(fs::path(a.compare_a) / "masks.bin", a.from_step);
  const auto B = read_masks(fs::path(a.compare_b) / "masks.bin", a.from_step);
  std::size_t differing = 0, mask_bytes = 0;
  for (const auto& [key, v] : A) {
    mask_bytes += v.size();
    const auto it = B.find(key);
    if (it == B.end() || it->second != v) ++differing;
  }
  if (A.empty()) fail("no masks recorded");
  if (differing) fail(std::to_string(differing) + " of " + std::to_string(A.size()) + " examples' keep masks differ");
  // Final weights.
  const auto wa = io::SafeTensors::load(fs::path(a.compare_a) / "last" / "model.safetensors");
  const auto wb = io::SafeTensors::load(fs::path(a.compare_b) / "last" / "model.safetensors");
  double worst_weight = 0;
  for (const auto& name : wa.names()) {
    const auto va = wa.values<double>(name), vb = wb.values<double>(name);
    if (va.size() != vb.size()) { fail(name + " has another size"); continue; }
    for (std::size_t i = 0; i < va.size(); ++i) worst_weight = std::max(worst_weight, std::abs(va[i] - vb[i]) / std::max(1.0, std::abs(va[i])));
  }
  if (worst_weight > a.rtol) fail("final weights differ by " + std::to_string(worst_weight));
  std::printf("compared %d steps: worst loss difference %.3g (relative), worst weight difference %.3g; "
              "keep masks of %zu (step, example) pairs, %zu values: %zu differ\n",
              compared, worst_loss, worst_weight, A.size(), mask_bytes, differing);
  return failures ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  try {
    a = parse(argc, argv);
    if (!a.compare_a.empty()) return compare(a);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "distributed_run: %s\n", e.what());
    return 2;
  }
  // Alone it is one process without MPI (dist::Local), as the programs are; under mpirun
  // a rank of dist::Mpi.
  std::unique_ptr<dist::MpiSession> session;
  dist::AnyCommunicator comm;
  if (dist::launched_by_mpi()) {
    session = std::make_unique<dist::MpiSession>(argc, argv);
    comm = dist::AnyCommunicator(dist::Mpi());
    dist::report_termination("distributed_run", comm.rank(), comm.size());
  }
  try {
    if (a.out.empty()) throw std::invalid_argument("--out is required");
    return a.dtype == "f32" ? run<float>(a, comm) : run<double>(a, comm);
  } catch (const std::exception& e) {
    if (comm.size() == 1) {
      std::fprintf(stderr, "distributed_run: %s\n", e.what());
      return 1;
    }
    comm.abort("distributed_run: rank " + std::to_string(comm.rank()) + " of " + std::to_string(comm.size()) +
               " failed: " + e.what());
  }
}
