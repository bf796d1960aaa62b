// backend::Cpu op by op against the plain host loops of tests/support/backend_conformance.hpp
// (every op of the Backend concept, float and double, tolerances in that header), with the
// default thread count and with one thread; the check itself catches a wrong backend; and
// the library needs nothing beyond the concept: a backend with only the concept's members
// trains the model with AD-DROP exactly as backend::Cpu does.
#define BOOST_TEST_MODULE backend_cpu
#include <boost/mpl/list.hpp>
#include <boost/test/unit_test.hpp>

#include <cstdlib>

#include <addrop/addrop.hpp>
#include <addrop/train/grad_clip.hpp>
#include <addrop/train/optimizer_state.hpp>

#include <cmath>
#include <filesystem>
#include <string>
#include <unistd.h>
#include <vector>

#include "support/backend_conformance.hpp"
#include "support/helpers.hpp"

using namespace addrop;
using backend::Cpu;
namespace conformance = testing::conformance;

namespace {

using Real = boost::mpl::list<float, double>;

// Runs one category and turns its failures into test errors (each line names the op, the
// element type and the shape).
template <class B>
void run(const std::string& name, conformance::CheckFn<B> check, const typename B::Context& ctx) {
  conformance::Report report;
  check(ctx, report);
  BOOST_TEST_CONTEXT(name) {
    BOOST_TEST(report.checks > 0, "the category checked nothing");
    for (const auto& line : report.failures) BOOST_ERROR(line);
  }
}

// A backend with two plausible bugs, to show that the conformance checks catch them: GELU
// with the tanh approximation instead of the exact erf, and RD's rule ignoring pad keys.
struct WrongCpu : Cpu {
  template <class T>
  static void gelu_forward(const Context&, int64_t n, const T* x, T* y) {
    for (int64_t i = 0; i < n; ++i) {
      const T v = x[i];
      y[i] = T(0.5) * v * (T(1) + std::tanh(T(0.7978845608028654) * (v + T(0.044715) * v * v * v)));
    }
  }
  template <class T>
  static void select_random(const Context& ctx, int64_t B, int64_t H, int64_t Lq, int64_t Lk, const int32_t*,
                            const float* u1, uint64_t seed, uint64_t stream1, float keep_p, const float* u2,
                            uint64_t stream2, float keep_q, T dropped_value, T* additive, T* candidates, T* keep,
                            int64_t first_draw = 0) {
    const std::vector<int32_t> no_pads(static_cast<std::size_t>(B * Lk), 1);
    Cpu::select_random(ctx, B, H, Lq, Lk, no_pads.data(), u1, seed, stream1, keep_p, u2, stream2, keep_q,
                       dropped_value, additive, candidates, keep, first_draw);
  }
};
static_assert(backend::Backend<WrongCpu>);

// Exactly the members of the Backend concept (backend/backend.hpp), each forwarding to
// backend::Cpu: if the library used anything else (another op, Context's fields, a
// backend's name), the model, AD-DROP, the optimizer and checkpoints would not compile
// with it.
struct ConceptOnly {
  using Context = Cpu::Context;
  template <class E>
  using Buffer = Cpu::Buffer<E>;
  using BatchStrides = Cpu::BatchStrides;
  // clang-format off
  template <class T> static void fill(const Context& c, int64_t n, T v, T* x) { Cpu::fill(c, n, v, x); }
  template <class T> static void copy(const Context& c, int64_t n, const T* x, T* y) { Cpu::copy(c, n, x, y); }
  template <class T> static void axpby(const Context& c, int64_t n, T a, const T* x, T b, T* y) { Cpu::axpby(c, n, a, x, b, y); }
  template <class T> static void add(const Context& c, int64_t n, const T* a, const T* b, T* o) { Cpu::add(c, n, a, b, o); }
  template <class E> static void to_device(const Context& c, int64_t n, const E* h, E* d) { Cpu::to_device(c, n, h, d); }
  template <class T> static void to_host(const Context& c, int64_t n, const T* d, T* h) { Cpu::to_host(c, n, d, h); }
  template <class T>
  static void gemm(const Context& c, bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                   int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
    Cpu::gemm(c, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }
  template <class T>
  static void gemm_batched(const Context& c, bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                           int64_t lda, BatchStrides sa, const T* B, int64_t ldb, BatchStrides sb, T beta, T* C,
                           int64_t ldc, BatchStrides sc, int64_t outer, int64_t inner) {
    Cpu::gemm_batched(c, ta, tb, M, N, K, alpha, A, lda, sa, B, ldb, sb, beta, C, ldc, sc, outer, inner);
  }
  template <class T> static void add_bias(const Context& c, int64_t r, int64_t k, const T* b, T* y) { Cpu::add_bias(c, r, k, b, y); }
  template <class T> static void bias_backward(const Context& c, int64_t r, int64_t k, const T* dy, T* db) { Cpu::bias_backward(c, r, k, dy, db); }
  template <class T> static void gelu_forward(const Context& c, int64_t n, const T* x, T* y) { Cpu::gelu_forward(c, n, x, y); }
  template <class T> static void gelu_backward(const Context& c, int64_t n, const T* x, const T* dy, T* dx) { Cpu::gelu_backward(c, n, x, dy, dx); }
  template <class T> static void silu_forward(const Context& c, int64_t n, const T* x, T* y) { Cpu::silu_forward(c, n, x, y); }
  template <class T> static void silu_backward(const Context& c, int64_t n, const T* x, const T* dy, T* dx) { Cpu::silu_backward(c, n, x, dy, dx); }
  template <class T> static void relu_forward(const Context& c, int64_t n, const T* x, T* y) { Cpu::relu_forward(c, n, x, y); }
  template <class T> static void relu_backward(const Context& c, int64_t n, const T* x, const T* dy, T* dx) { Cpu::relu_backward(c, n, x, dy, dx); }
  template <class T> static void tanh_forward(const Context& c, int64_t n, const T* x, T* y) { Cpu::tanh_forward(c, n, x, y); }
  template <class T> static void tanh_backward(const Context& c, int64_t n, const T* y, const T* dy, T* dx) { Cpu::tanh_backward(c, n, y, dy, dx); }
  // clang-format on
  template <class T>
  static void layer_norm_forward(const Context& c, int64_t rows, int64_t cols, T eps, const T* x, const T* g,
                                 const T* b, T* y, T* mean, T* rstd) {
    Cpu::layer_norm_forward(c, rows, cols, eps, x, g, b, y, mean, rstd);
  }
  template <class T>
  static void layer_norm_backward(const Context& c, int64_t rows, int64_t cols, const T* dy, const T* x,
                                  const T* mean, const T* rstd, const T* g, T* dx, bool acc, T* dg, T* db) {
    Cpu::layer_norm_backward(c, rows, cols, dy, x, mean, rstd, g, dx, acc, dg, db);
  }
  template <class T>
  static void attention_softmax_forward(const Context& c, int64_t B, int64_t H, int64_t Lq, int64_t Lk, T scale,
                                        const T* s, const T* kb, const T* ex, bool causal, T* p) {
    Cpu::attention_softmax_forward(c, B, H, Lq, Lk, scale, s, kb, ex, causal, p);
  }
  template <class T>
  static void softmax_backward(const Context& c, int64_t rows, int64_t L, T scale, const T* p, const T* dp, T* ds) {
    Cpu::softmax_backward(c, rows, L, scale, p, dp, ds);
  }
  template <class T>
  static void dropout_forward(const Context& c, int64_t n, float p, uint64_t seed, uint64_t stream, const T* x, T* y,
                              int64_t first = 0) {
    Cpu::dropout_forward(c, n, p, seed, stream, x, y, first);
  }
  template <class T>
  static void dropout_backward(const Context& c, int64_t n, float p, uint64_t seed, uint64_t stream, const T* dy,
                               T* dx, bool acc = false, int64_t first = 0) {
    Cpu::dropout_backward(c, n, p, seed, stream, dy, dx, acc, first);
  }
  static void uniform(const Context& c, int64_t n, uint64_t seed, uint64_t stream, float* out, int64_t first = 0) {
    Cpu::uniform(c, n, seed, stream, out, first);
  }
  template <class T>
  static void embedding_forward(const Context& c, int64_t tokens, int64_t dim, const int32_t* ids, const T* table,
                                T* out, bool acc) {
    Cpu::embedding_forward(c, tokens, dim, ids, table, out, acc);
  }
  template <class T>
  static void embedding_backward(const Context& c, int64_t tokens, int64_t dim, const int32_t* ids, const T* dout,
                                 T* dtable, int64_t padding_idx) {
    Cpu::embedding_backward(c, tokens, dim, ids, dout, dtable, padding_idx);
  }
  template <class T>
  static double cross_entropy(const Context& c, int64_t rows, int64_t classes, const T* logits, const int32_t* labels,
                              int32_t ignore_index, T eps, T* dlogits, int64_t denominator = 0) {
    return Cpu::cross_entropy(c, rows, classes, logits, labels, ignore_index, eps, dlogits, denominator);
  }
  template <class T>
  static double mse(const Context& c, int64_t n, const T* pred, const T* target, T* dpred, int64_t denominator = 0) {
    return Cpu::mse(c, n, pred, target, dpred, denominator);
  }
  template <class T> static double sum_squares(const Context& c, int64_t n, const T* x) { return Cpu::sum_squares(c, n, x); }
  template <class T> static void scale(const Context& c, int64_t n, T a, T* x) { Cpu::scale(c, n, a, x); }
  template <class T> static void mul(const Context& c, int64_t n, const T* a, const T* b, T* o) { Cpu::mul(c, n, a, b, o); }
  template <class T>
  static void select_top_p(const Context& c, int64_t B, int64_t H, int64_t Lq, int64_t Lk, const T* scores,
                           const int32_t* key_mask, const int64_t* k, bool high, const float* u, uint64_t seed,
                           uint64_t stream, float keep_below, T dropped, T* additive, T* candidates, T* keep,
                           int64_t first_draw = 0) {
    Cpu::select_top_p(c, B, H, Lq, Lk, scores, key_mask, k, high, u, seed, stream, keep_below, dropped, additive,
                      candidates, keep, first_draw);
  }
  template <class T>
  static void select_random(const Context& c, int64_t B, int64_t H, int64_t Lq, int64_t Lk, const int32_t* key_mask,
                            const float* u1, uint64_t seed, uint64_t stream1, float keep_p, const float* u2,
                            uint64_t stream2, float keep_q, T dropped, T* additive, T* candidates, T* keep,
                            int64_t first_draw = 0) {
    Cpu::select_random(c, B, H, Lq, Lk, key_mask, u1, seed, stream1, keep_p, u2, stream2, keep_q, dropped, additive,
                       candidates, keep, first_draw);
  }
  template <class T>
  static void adamw_update(const Context& c, int64_t n, T* param, const T* grad, T* m, T* v, double lr, double b1,
                           double b2, double eps, double wd, int64_t t, bool hf) {
    Cpu::adamw_update(c, n, param, grad, m, v, lr, b1, b2, eps, wd, t, hf);
  }
};
static_assert(backend::BackendFor<ConceptOnly, float> && backend::BackendFor<ConceptOnly, double>);

// A few training steps (GA, IGA, AA, RD, each with clipping and AdamW), a checkpoint round
// trip and the optimizer state round trip; returns every loss and the final parameters.
template <class B>
std::vector<double> train_a_little(const std::filesystem::path& dir) {
  const typename B::Context ctx{.threads = 1};
  models::EncoderModel<float, B> model(testing::small_config(2), ctx);
  models::init_weights(model, 3);
  const auto batch = testing::small_batch();
  train::AdamW<float, B> opt(model.parameters(), {.lr = 1e-2}, ctx);
  std::vector<double> out;
  auto step = [&](auto reg) {
    model.zero_grad();
    const auto r = reg.step_addrop(model, batch);
    out.push_back(r.loss);
    for (const auto* k : r.keep)
      for (int64_t i = 0; i < k->numel(); ++i) out.push_back(k->data()[i]);
    out.push_back(train::clip_grad_norm(model.parameters(), 1.0, ctx).total_norm);
    opt.step();
  };
  const AdDropOptions options{.p = 0.3, .q = 0.3, .layers = {0, 1}};
  step(AdDrop<attribution::Gradient, selection::TopP, schedule::Always>(options));
  step(AdDrop<attribution::IntegratedGradients, selection::TopP, schedule::Always>(
      options, attribution::IntegratedGradients({.steps = 2})));
  step(AdDrop<attribution::Attention, selection::TopP, schedule::Always>(options));
  step(AdDrop<attribution::None, selection::Random, schedule::Always>(options));
  io::save_pretrained(model, dir);
  models::EncoderModel<float, B> loaded(testing::small_config(2), ctx);
  io::load_pretrained(loaded, dir);
  train::AdamW<float, B> opt2(loaded.parameters(), {.lr = 1e-2}, ctx);
  train::optimizer_state_from_safetensors(opt2, train::optimizer_state_to_safetensors(opt));
  for (const auto* p : loaded.parameters())
    for (int64_t i = 0; i < p->value.numel(); ++i) out.push_back(p->value.data()[i]);
  return out;
}

bool mentions(const conformance::Report& r, const std::string& what) {
  for (const auto& line : r.failures)
    if (line.find(what) != std::string::npos) return true;
  return false;
}

}  // namespace

BOOST_AUTO_TEST_CASE_TEMPLATE(every_op_matches_the_host_reference, T, Real) {
  const Cpu::Context ctx{};  // OpenMP's default thread count
  for (const auto& [name, check] : conformance::op_checks<Cpu, T>()) run<Cpu>(name, check, ctx);
}

// Precision::Bf16Mixed: the products against the reference with bf16-rounded inputs
// (float32 accumulation order is then the only difference: the float tolerance holds),
// on the engine this build and CPU use (oneDNN's bf16 kernels or the float32 GEMM on
// rounded inputs when addrop::onednn is linked: ctest forces each; else the emulation);
// and they really differ from the float32 products.
BOOST_AUTO_TEST_CASE(bf16_products_match_the_reference_with_rounded_inputs) {
  BOOST_TEST_MESSAGE("bf16 products on: " << addrop::backend::bf16_matmul_engine());
#if defined(ADDROP_WITH_ONEDNN)
  const std::string engine = addrop::backend::bf16_matmul_engine();
  BOOST_TEST(engine.find("oneDNN") != std::string::npos);
  if (const char* forced = std::getenv("ADDROP_BF16_ENGINE"))  // ctest runs this case on both engines
    BOOST_TEST(engine.find(std::string("forced by ADDROP_BF16_ENGINE=") + forced) != std::string::npos, engine);
#endif
  for (int threads : {1, 2}) {
    const Cpu::Context ctx{.threads = threads, .precision = addrop::Precision::Bf16Mixed};
    for (const auto& [name, check] : conformance::op_checks<Cpu, float>())
      if (std::string(name).rfind("gemm", 0) == 0) run<Cpu>(name, check, ctx);
  }
  // 1 + 2^-10 is not a bf16 value: its products round the input to 1.
  const float a[2] = {1.0f + 1.0f / 1024, 3.0f}, b[2] = {1.0f, 1.0f};
  float c_f32 = 0, c_bf16 = 0;
  Cpu::gemm(Cpu::Context{}, false, false, 1, 1, 2, 1.0f, a, 2, b, 1, 0.0f, &c_f32, 1);
  Cpu::gemm(Cpu::Context{.precision = addrop::Precision::Bf16Mixed}, false, false, 1, 1, 2, 1.0f, a, 2, b, 1, 0.0f,
            &c_bf16, 1);
  BOOST_TEST(c_f32 == 4.0f + 1.0f / 1024);
  BOOST_TEST(c_bf16 == 4.0f);
  // float64 products ignore the precision (they are never mixed).
  const double ad[2] = {1.0 + 1.0 / 1024, 3.0}, bd[2] = {1.0, 1.0};
  double cd = 0;
  Cpu::gemm(Cpu::Context{.precision = addrop::Precision::Bf16Mixed}, false, false, 1, 1, 2, 1.0, ad, 2, bd, 1, 0.0,
            &cd, 1);
  BOOST_TEST(cd == 4.0 + 1.0 / 1024);
}

// Bf16FrozenOperands: inside the scope an operand in a frozen range is rounded once and
// reused (same result as rounding it per product); after the scope a changed weight is
// seen again (no stale copy), and operands outside the ranges are never cached.
BOOST_AUTO_TEST_CASE(frozen_bf16_operands_give_the_same_products_and_never_go_stale) {
  const Cpu::Context ctx{.threads = 2, .precision = addrop::Precision::Bf16Mixed};
  const int64_t M = 8, N = 300, K = 64;
  std::vector<float> x(M * K), w(N * K), fresh(M * N), frozen(M * N);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37f * static_cast<float>(i));
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = std::cos(0.11f * static_cast<float>(i));
  auto product = [&](std::vector<float>& out) {
    Cpu::gemm(ctx, false, true, M, N, K, 1.0f, x.data(), K, w.data(), K, 0.0f, out.data(), N);
  };
  product(fresh);
  {
    const addrop::backend::Bf16FrozenOperands scope({{w.data(), static_cast<int64_t>(w.size())}});
    product(frozen);
    BOOST_TEST(frozen == fresh, boost::test_tools::per_element());
    product(frozen);  // the kept copy
    BOOST_TEST(frozen == fresh, boost::test_tools::per_element());
    // Shows that the copy is reused (on either engine): a weight changed inside the scope,
    // which the contract forbids, is not seen.
    const float saved = w[0];
    w[0] += 1.0f;
    product(frozen);
    BOOST_TEST(frozen == fresh, boost::test_tools::per_element());
    w[0] = saved;
    x[0] += 1.0f;  // x is not frozen: read afresh
    product(frozen);
    BOOST_TEST(frozen[0] != fresh[0]);
    x[0] -= 1.0f;
  }
  for (auto& v : w) v *= 2.0f;  // after the scope: the new weights count
  product(frozen);
  for (std::size_t i = 0; i < fresh.size(); ++i) BOOST_TEST(frozen[i] == 2.0f * fresh[i]);
}

BOOST_AUTO_TEST_CASE(every_op_matches_the_host_reference_on_one_thread) {
  const Cpu::Context ctx{.threads = 1};
  conformance::Report report;
  conformance::check_backend_ops<Cpu>(ctx, report);
  BOOST_TEST(report.checks > 1000);
  for (const auto& line : report.failures) BOOST_ERROR(line);
}

BOOST_AUTO_TEST_CASE(a_wrong_backend_fails_the_checks) {
  const WrongCpu::Context ctx{.threads = 2};
  conformance::Report activations, selection, gemm;
  conformance::check_activations<WrongCpu, float>(ctx, activations);
  conformance::check_selection<WrongCpu, float>(ctx, selection);
  conformance::check_gemm<WrongCpu, float>(ctx, gemm);
  BOOST_TEST(mentions(activations, "gelu_forward"));
  BOOST_TEST(!mentions(activations, "tanh_forward"));
  BOOST_TEST(mentions(selection, "select_random candidates"));
  BOOST_TEST(!mentions(selection, "select_top_p"));
  BOOST_TEST(gemm.failures.empty());  // the ops it inherits unchanged still pass
}

BOOST_AUTO_TEST_CASE(the_library_needs_nothing_beyond_the_concept) {
  const auto dir = std::filesystem::temp_directory_path() / ("addrop_test_backend_cpu_" + std::to_string(::getpid()));
  const auto with_cpu = train_a_little<Cpu>(dir / "cpu");
  const auto with_concept_only = train_a_little<ConceptOnly>(dir / "concept_only");
  std::filesystem::remove_all(dir);
  BOOST_TEST_REQUIRE(with_cpu.size() > 1000u);  // losses, keep masks, norms, parameters
  BOOST_TEST_REQUIRE(with_cpu.size() == with_concept_only.size());
  int64_t differ = 0;
  for (std::size_t i = 0; i < with_cpu.size(); ++i) differ += with_cpu[i] != with_concept_only[i];
  BOOST_TEST(differ == 0);
}
