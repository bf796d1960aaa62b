// A training step allocates nothing once the workspace has seen its batch shape: no
// tensor buffer, no operator new (std::vector and friends), and no Eigen heap block
// (Eigen's own run-time switch, turned into an exception here instead of an assert).
#include <atomic>
#include <cstdlib>
#include <new>
#include <stdexcept>

#define EIGEN_RUNTIME_NO_MALLOC
#define eigen_assert(x) \
  do { if (!(x)) throw std::runtime_error("Eigen assertion failed: " #x); } while (0)

#define BOOST_TEST_MODULE no_allocation
#include <boost/test/unit_test.hpp>

#include <addrop/addrop.hpp>

namespace {
std::atomic<long> g_news{0};
std::atomic<bool> g_counting{false};
}  // namespace

// Every operator new of the process goes through here while counting is on. (The pair is
// malloc/free on purpose; GCC cannot see that new and delete are replaced together.)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(std::size_t n) {
  if (g_counting.load(std::memory_order_relaxed)) ++g_news;
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

using namespace addrop;

namespace {

models::Batch make_batch(int64_t B, int64_t L, int salt) {
  models::Batch b;
  b.size = B;
  b.length = L;
  for (int64_t i = 0; i < B * L; ++i) {
    const int64_t j = i % L, e = i / L;
    const bool real = j < L - e % 3;
    b.input_ids.push_back(real ? static_cast<int32_t>(1 + (i * 7 + salt) % 40) : 0);
    b.attention_mask.push_back(real ? 1 : 0);
    b.token_type_ids.push_back(j >= L / 2 ? 1 : 0);
  }
  for (int64_t e = 0; e < B; ++e) b.labels.push_back(static_cast<int32_t>((e + salt) % 3));
  return b;
}

struct Counts {
  int64_t buffers;
  long news;
};

template <class Fn>
Counts count_allocations(Fn&& fn) {
  const int64_t buffers = backend::cpu_allocation_count().load();
  g_news = 0;
  g_counting = true;
  Eigen::internal::set_is_malloc_allowed(false);
  try {
    fn();
  } catch (...) {
    Eigen::internal::set_is_malloc_allowed(true);
    g_counting = false;
    throw;
  }
  Eigen::internal::set_is_malloc_allowed(true);
  g_counting = false;
  return {backend::cpu_allocation_count().load() - buffers, g_news.load()};
}

}  // namespace

BOOST_AUTO_TEST_CASE(training_step_allocates_nothing_after_the_first) {
  models::ModelConfig c;
  c.vocab_size = 50;
  c.hidden_size = 32;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.intermediate_size = 64;
  c.max_position_embeddings = 64;
  c.num_labels = 3;
  for (int threads : {1, 2}) {
    BOOST_TEST_CONTEXT("threads " << threads) {
      models::EncoderModel<float> model(c, {.threads = threads});
      models::init_weights(model, 3);
      train::AdamW<float, backend::Cpu> optimizer(model.parameters(), {.lr = 1e-3}, model.context());
      auto step = [&](const models::Batch& batch, uint64_t n) {
        model.forward(batch, {.train = true, .seed = 1, .step = n});
        model.loss(batch);
        model.zero_grad();
        model.backward();
        optimizer.step();
      };
      const auto big = make_batch(8, 48, 0);
      const auto big2 = make_batch(8, 48, 5);
      const auto small = make_batch(4, 20, 1);
      const Counts first = count_allocations([&] { step(big, 0); });
      BOOST_TEST(first.buffers > 0, "the first step sizes the workspace");
      const Counts again = count_allocations([&] { step(big2, 1); });
      BOOST_TEST(again.buffers == 0);
      BOOST_TEST(again.news == 0);
      const Counts smaller = count_allocations([&] { step(small, 2); });
      BOOST_TEST(smaller.buffers == 0);
      BOOST_TEST(smaller.news == 0);
      // Attribution-style pass: input gradients only, stopping at a layer.
      const Counts partial = count_allocations([&] {
        model.forward(big, {.train = true, .seed = 1, .step = 3});
        model.loss(big);
        model.backward({.stop_at_layer = 0, .weight_grads = false});
      });
      BOOST_TEST(partial.buffers == 0);
      BOOST_TEST(partial.news == 0);
    }
  }
}

BOOST_AUTO_TEST_CASE(the_counters_can_fail) {
  // The hooks really see allocations: a growing tensor and a vector are counted.
  const Counts c = count_allocations([] {
    Tensor<float, backend::Cpu> t({1000});
    std::vector<int> v(10);
    BOOST_TEST(v.size() == 10u);
  });
  BOOST_TEST(c.buffers == 1);
  BOOST_TEST(c.news >= 1);
  BOOST_CHECK_THROW(count_allocations([] {
                      Eigen::MatrixXf m(100, 100);
                      m.setZero();
                    }),
                    std::runtime_error);
}

BOOST_AUTO_TEST_CASE(addrop_steps_allocate_nothing_after_the_first) {
  models::ModelConfig c;
  c.vocab_size = 50;
  c.hidden_size = 32;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 4;
  c.intermediate_size = 64;
  c.max_position_embeddings = 64;
  c.num_labels = 3;
  models::EncoderModel<float> model(c, {.threads = 2});
  models::init_weights(model, 3);
  const auto big = make_batch(6, 40, 0), big2 = make_batch(6, 40, 3), small = make_batch(3, 17, 1);
  auto check = [&](auto& reg, const char* name) {
    BOOST_TEST_CONTEXT(name) {
      auto step = [&](const models::Batch& b) {
        model.zero_grad();
        reg.step(model, b, 1);
      };
      count_allocations([&] { step(big); });
      const Counts again = count_allocations([&] { step(big2); });
      BOOST_TEST(again.buffers == 0);
      BOOST_TEST(again.news == 0);
      const Counts smaller = count_allocations([&] { step(small); });
      BOOST_TEST(smaller.buffers == 0);
      BOOST_TEST(smaller.news == 0);
    }
  };
  using Always = schedule::Always;
  AdDrop<attribution::Gradient, selection::TopP, Always> ga({.layers = {0, 2}});
  check(ga, "GA");
  AdDrop<attribution::Gradient, selection::TopP, Always> ga_masks({.layers = {1}, .record_masks = true});
  check(ga_masks, "GA recording the masks");
  AdDrop<attribution::IntegratedGradients, selection::TopP, Always> iga(
      {.layers = {1}}, attribution::IntegratedGradients({.steps = 5, .memory_cap_bytes = 3000000}));  // chunks of 2, 2, 1 alpha steps
  BOOST_TEST(iga.attribution_policy().chunk_steps(model, make_batch(6, 40, 0), 1) == 2);
  check(iga, "IGA");
  AdDrop<attribution::Attention, selection::TopP, Always> aa({.layers = {0}}, {}, selection::TopP(Side::Low));
  check(aa, "AA");
  AdDrop<attribution::None, selection::Random, Always> rd({.layers = {2}});
  check(rd, "RD");
}
