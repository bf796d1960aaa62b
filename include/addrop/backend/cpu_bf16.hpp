#pragma once
// The CPU backend's mixed-precision matrix products (Precision::Bf16Mixed; included by
// cpu_impl.hpp). Both inputs are rounded to bfloat16 (round to nearest even, as
// torch's float->bfloat16 cast) while they are packed into dense scratch, then multiplied
// with float32 accumulation into the float32 output:
//
//  - with oneDNN (the optional addrop::onednn component defines ADDROP_WITH_ONEDNN): its
//    matmul primitive on bf16 inputs, which runs AVX512-BF16's vdpbf16ps where the CPU
//    has it (oneDNN emulates bf16 on older AVX-512 CPUs; see bf16_matmul_engine());
//  - without it: the rounded inputs are multiplied by Eigen in float32, exactly the same
//    products (a product of two bf16 values is exact in float32) at float32 speed.
//
// A program links addrop::onednn on all of its targets or on none (the macro changes
// these inline functions). nvcc (13.0) cannot parse oneDNN's C++ header, so in a CUDA
// translation unit the CPU backend's bf16 products are the emulation (same results).
#include <bit>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>
#include <string>
#include <unordered_map>

#include "precision.hpp"

#if defined(ADDROP_WITH_ONEDNN) && !defined(__CUDACC__)
#define ADDROP_CPU_BF16_ONEDNN 1
#include <oneapi/dnnl/dnnl.hpp>

#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#include "cpu_peak.hpp"
#endif

namespace addrop::backend {

namespace cpu_detail {

/// float -> bfloat16 bits, round to nearest even; NaN stays a (quiet) NaN.
inline uint16_t bf16_bits(float f) {
  uint32_t u = std::bit_cast<uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
inline float bf16_to_float(uint16_t bits) { return std::bit_cast<float>(uint32_t{bits} << 16); }
/// The float nearest to x that bfloat16 can hold (what a bf16 matmul input sees).
inline float round_to_bf16(float x) { return bf16_to_float(bf16_bits(x)); }

// One matrix of a batched product as stored: `rows` x `cols` with row stride `ld`;
// slice p = (o, i) starts at o * outer + i * inner.
struct StoredOperand {
  const float* data;
  int64_t rows, cols, ld, outer, inner;
};

// Packs every slice of `src` densely (slice after slice, row after row) into `out`,
// rounded to bf16 (Out = uint16_t: the bits; Out = float: the rounded value).
template <class Out>
inline void pack_rounded(int threads, const StoredOperand& src, int64_t n_outer, int64_t n_inner, Out* out) {
  const int64_t slices = n_outer * n_inner, rows = slices * src.rows, cols = src.cols;
  parallel_chunks(threads, rows * cols, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin / cols; r * cols < end; ++r) {
      const int64_t p = r / src.rows, row = r % src.rows;
      const float* x = src.data + (p / n_inner) * src.outer + (p % n_inner) * src.inner + row * src.ld;
      const int64_t c0 = std::max<int64_t>(begin - r * cols, 0), c1 = std::min<int64_t>(end - r * cols, cols);
      Out* y = out + r * cols;
      for (int64_t c = c0; c < c1; ++c) {
        if constexpr (std::is_same_v<Out, uint16_t>) y[c] = bf16_bits(x[c]);
        else y[c] = round_to_bf16(x[c]);
      }
    }
  });
}

// Grow-only scratch for the packed operands, one pair per calling thread.
template <class E>
inline E* bf16_scratch(int which, int64_t n) {
  thread_local Cpu::Buffer<E> held[2];
  held[which].reserve(n);
  return held[which].data();
}

#if defined(ADDROP_CPU_BF16_ONEDNN)
// oneDNN matmul primitives, made once per shape and reused (creating one costs far more
// than a small product).
class OnednnMatmuls {
 public:
  struct Shape {
    int64_t outer, inner, M, N, K;
    bool ta, tb;
    int64_t ldc, c_outer, c_inner;
    uint32_t alpha, beta;  // bit patterns
    bool blocked_b = false;  // B (a kept weight copy) given in the primitive's own blocked layout
    bool operator==(const Shape&) const = default;
  };
  struct Entry {
    std::unique_ptr<dnnl::matmul> prim;  // null: oneDNN offers only reference kernels here
    dnnl::memory::desc b_plain, b_blocked;
  };

  static dnnl::engine& engine() {
    static dnnl::engine e(dnnl::engine::kind::cpu, 0);
    return e;
  }

  // The primitive for `s`, or nullptr where oneDNN offers only its reference kernels
  // (the caller then emulates: same result, no slow path).
  static const Entry& get(const Shape& s) {
    static std::mutex mutex;
    static std::unordered_map<Shape, Entry, Hash> made;
    std::lock_guard lock(mutex);
    auto it = made.find(s);
    if (it != made.end()) return it->second;
    using dt = dnnl::memory::data_type;
    const int64_t a_slice = s.M * s.K, b_slice = s.K * s.N;
    // One product (blocked_b: always) is described in 2-D: for 4-D weights oneDNN's `any`
    // layout stays plain, so the blocked copy would gain nothing.
    const bool two_d = s.blocked_b;
    auto desc = [two_d](dnnl::memory::dims dims, dt type, dnnl::memory::dims strides) {
      if (two_d) return dnnl::memory::desc({dims[2], dims[3]}, type, dnnl::memory::dims{strides[2], strides[3]});
      return dnnl::memory::desc(dims, type, strides);
    };
    const dnnl::memory::desc a = desc({s.outer, s.inner, s.M, s.K}, dt::bf16,
                                      s.ta ? dnnl::memory::dims{s.inner * a_slice, a_slice, 1, s.M}
                                           : dnnl::memory::dims{s.inner * a_slice, a_slice, s.K, 1});
    const dnnl::memory::desc b = desc({s.outer, s.inner, s.K, s.N}, dt::bf16,
                                      s.tb ? dnnl::memory::dims{s.inner * b_slice, b_slice, 1, s.K}
                                           : dnnl::memory::dims{s.inner * b_slice, b_slice, s.N, 1});
    const dnnl::memory::desc c = desc({s.outer, s.inner, s.M, s.N}, dt::f32, dnnl::memory::dims{s.c_outer, s.c_inner, s.ldc, 1});
    dnnl::primitive_attr attr;
    if (s.alpha != std::bit_cast<uint32_t>(1.0f)) attr.set_output_scales(0, {std::bit_cast<float>(s.alpha)});
    if (s.beta != 0) {
      dnnl::post_ops ops;
      ops.append_sum(std::bit_cast<float>(s.beta));
      attr.set_post_ops(ops);
    }
    Entry entry;
    entry.b_plain = b;
    const dnnl::memory::desc b_any({s.K, s.N}, dt::bf16, dnnl::memory::format_tag::any);
    const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, s.blocked_b ? b_any : b, c), attr, engine());
    if (std::string_view(pd.impl_info_str()).substr(0, 3) != "ref") entry.prim = std::make_unique<dnnl::matmul>(pd);
    entry.b_blocked = pd.weights_desc();
    return made.emplace(s, std::move(entry)).first->second;
  }

 public:
  struct Hash {
    std::size_t operator()(const Shape& s) const {
      std::size_t h = 0;
      for (int64_t v : {s.outer, s.inner, s.M, s.N, s.K, int64_t{s.ta}, int64_t{s.tb}, s.ldc, s.c_outer, s.c_inner,
                        int64_t{s.alpha}, int64_t{s.beta}})
        h = h * 1000003u ^ std::hash<int64_t>{}(v);
      return h * 2 + s.blocked_b;
    }
  };
};
#endif

// Float ranges whose bf16 copies may be kept (Bf16FrozenOperands): while a range is
// registered, a product operand lying wholly inside it is rounded once and its packed copy
// reused, instead of being re-rounded at every product.
class FrozenOperandRegistry {
 public:
  static FrozenOperandRegistry& get() {
    static FrozenOperandRegistry registry;
    return registry;
  }
  void add(std::span<const std::pair<const float*, int64_t>> ranges) {
    std::lock_guard lock(mutex_);
    for (const auto& [data, n] : ranges)
      if (data && n > 0) ++ranges_[data].count, ranges_[data].end = data + n;
  }
  void remove(std::span<const std::pair<const float*, int64_t>> ranges) {
    std::lock_guard lock(mutex_);
    for (const auto& [data, n] : ranges) {
      auto it = ranges_.find(data);
      if (it == ranges_.end() || --it->second.count > 0) continue;
      ranges_.erase(it);
      auto inside = [&](const auto& kv) { return kv.first.data >= data && kv.first.data < data + n; };
      std::erase_if(bits_, inside);
      std::erase_if(floats_, inside);
      std::erase_if(blocked_, [&](const auto& kv) { return kv.first.first.data >= data && kv.first.first.data < data + n; });
    }
  }
  // The packed bf16 copy of `op` (one slice) when it lies in a registered range, made by
  // `pack` on first use; nullptr otherwise. Out = uint16_t: the bits (oneDNN's input);
  // float: the rounded values (the float32 engine's).
  template <class Out, class Pack>
  const Out* copy_of(const StoredOperand& op, Pack&& pack) {
    std::lock_guard lock(mutex_);
    if (!range_holding(op)) return nullptr;
    const Key key{op.data, op.rows, op.cols, op.ld};
    auto& copies = [this]() -> std::map<Key, std::vector<Out>>& {
      if constexpr (std::is_same_v<Out, uint16_t>) return bits_;
      else return floats_;
    }();
    auto found = copies.find(key);
    if (found == copies.end()) {
      std::vector<Out> packed(static_cast<std::size_t>(op.rows * op.cols));
      pack(packed.data());
      found = copies.emplace(key, std::move(packed)).first;
    }
    return found->second.data();
  }
  // Whether `op` (one slice) lies in a registered range.
  bool frozen(const StoredOperand& op) {
    std::lock_guard lock(mutex_);
    return range_holding(op) != nullptr;
  }
  // A kept copy of `op` in some other form (oneDNN's blocked weight layout for one kernel
  // shape, told apart by `form`), made by `make` on first use; erased with op's range.
  template <class Make>
  std::shared_ptr<void> kept_form(const StoredOperand& op, std::size_t form, Make&& make) {
    std::lock_guard lock(mutex_);
    const std::pair<Key, std::size_t> key{{op.data, op.rows, op.cols, op.ld}, form};
    auto found = blocked_.find(key);
    if (found == blocked_.end()) found = blocked_.emplace(key, make()).first;
    return found->second;
  }

 private:
  const void* range_holding(const StoredOperand& op) const {
    if (ranges_.empty()) return nullptr;
    const float* last = op.data + (op.rows - 1) * op.ld + op.cols;
    auto it = ranges_.upper_bound(op.data);
    if (it == ranges_.begin()) return nullptr;
    --it;
    return last > it->second.end ? nullptr : it->first;
  }
  struct Range {
    int count = 0;
    const float* end = nullptr;
  };
  struct Key {
    const float* data;
    int64_t rows, cols, ld;
    bool operator<(const Key& o) const {
      return std::tie(data, rows, cols, ld) < std::tie(o.data, o.rows, o.cols, o.ld);
    }
  };
  std::mutex mutex_;
  std::map<const float*, Range> ranges_;
  std::map<Key, std::vector<uint16_t>> bits_;
  std::map<Key, std::vector<float>> floats_;
  std::map<std::pair<Key, std::size_t>, std::shared_ptr<void>> blocked_;
};

#if defined(ADDROP_CPU_BF16_ONEDNN)
// Which kernels multiply the rounded inputs: oneDNN's bf16 matmul (vdpbf16ps, or AMX where
// the CPU exposes it), or Eigen's float32 GEMM on the rounded values (the same products,
// float32 accumulation either way). Having AVX512-BF16 does not make vdpbf16ps fast: AMD
// Zen 4 runs it at about twice its float32 FMA rate, Intel Xeons without AMX (Sapphire and
// Emerald Rapids in a VM that hides AMX) at half, where oneDNN's bf16 products are slower
// than float32 ones. So the two rates are measured once per process (register-only loops,
// about 4 ms: cpu_peak.hpp) and oneDNN is used where bf16 is at least 1.25x faster; the
// two rates differ by 2x or more on the CPUs seen, so the choice does not flip with noise.
// ADDROP_BF16_ENGINE=onednn|float32 forces one.
struct Bf16EngineChoice {
  bool onednn = false;
  std::string reason;
};

inline Bf16EngineChoice choose_bf16_engine() {
  if (const char* forced = std::getenv("ADDROP_BF16_ENGINE"); forced && *forced) {
    const std::string v = forced;
    if (v == "onednn") return {true, "forced by ADDROP_BF16_ENGINE=onednn"};
    if (v == "float32") return {false, "forced by ADDROP_BF16_ENGINE=float32"};
    throw std::invalid_argument("ADDROP_BF16_ENGINE: '" + v + "' is neither onednn nor float32");
  }
  __builtin_cpu_init();
  if (__builtin_cpu_supports("amx-bf16")) return {true, "AMX-BF16"};
  if (!__builtin_cpu_supports("avx512bf16") || !__builtin_cpu_supports("avx512f"))
    return {false, "this CPU has no AVX512-BF16"};
  const cpu_peak::MultiplyAddRates r = cpu_peak::measure_multiply_add_rates();
  char rates[160];
  std::snprintf(rates, sizeof rates, "vdpbf16ps %.0f GFLOP/s against float32 FMA %.0f GFLOP/s per core, %.2fx",
                r.bf16_gflops, r.f32_gflops, r.bf16_gflops / r.f32_gflops);
  return {r.bf16_gflops >= 1.25 * r.f32_gflops, rates};
}

inline const Bf16EngineChoice& bf16_engine_choice() {
  static const Bf16EngineChoice choice = choose_bf16_engine();
  return choice;
}
#endif

// Operand `which` (0: A, 1: B) packed and rounded: the kept copy where it lies in a frozen
// range (weights while decoding: rounded once, not at every product), else into scratch.
template <class Out>
inline const Out* packed_operand(int threads, int which, const StoredOperand& op, int64_t n_outer, int64_t n_inner,
                                 int64_t size) {
  if (n_outer * n_inner == 1)
    if (const Out* kept = FrozenOperandRegistry::get().copy_of<Out>(
            op, [&](Out* out) { pack_rounded(threads, op, 1, 1, out); }))
      return kept;
  Out* out = bf16_scratch<Out>(which, size);
  pack_rounded(threads, op, n_outer, n_inner, out);
  return out;
}

// C[o, i] = alpha op(A[o, i]) op(B[o, i]) + beta C[o, i] with bf16-rounded inputs, for
// every o < n_outer, i < n_inner (n_outer = n_inner = 1: one GEMM).
inline void gemm_bf16(const Cpu::Context& ctx, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                      const StoredOperand& a, const StoredOperand& b, float beta, float* C, int64_t ldc,
                      Cpu::BatchStrides sc, int64_t n_outer, int64_t n_inner) {
  if (M == 0 || N == 0 || n_outer == 0 || n_inner == 0) return;
  const int threads = ctx.num_threads();
  const int64_t slices = n_outer * n_inner;
  Cpu::Context exact = ctx;
  exact.precision = Precision::F32;
  if (K == 0) {  // nothing to round: C = beta C
    Cpu::gemm_batched(exact, ta, tb, M, N, K, alpha, a.data, a.ld, {a.outer, a.inner}, b.data, b.ld,
                      {b.outer, b.inner}, beta, C, ldc, sc, n_outer, n_inner);
    return;
  }
  if (M <= kFewRows && slices > 1) {
    // A decoding step's attention: rounding on the fly beats packing the whole key and
    // value cache at every step, on either engine (the same rounded products).
    const auto sa = Cpu::BatchStrides{a.outer, a.inner}, sb = Cpu::BatchStrides{b.outer, b.inner};
    parallel_for(threads, slices, M * N * K, [&](int64_t p) {
      const int64_t o = p / n_inner, i = p % n_inner;
      gemm_few_rows(ta, tb, M, N, K, alpha, a.data + o * sa.outer + i * sa.inner, a.ld,
                    b.data + o * sb.outer + i * sb.inner, b.ld, beta, C + o * sc.outer + i * sc.inner, ldc,
                    [](float x) { return round_to_bf16(x); });
    });
    return;
  }
#if defined(ADDROP_CPU_BF16_ONEDNN)
  // A weight in a frozen range (decoding, evaluation) is also kept in the kernel's own
  // blocked layout: oneDNN otherwise re-blocks a plain B at every call, which doubled the
  // time of a decoding step's products (measured: [32, 512] x [59543, 512]^T 6.1 -> 3.1 ms).
  const bool blocked_b = slices == 1 && FrozenOperandRegistry::get().frozen(b);
  OnednnMatmuls::Shape shape{n_outer, n_inner, M, N, K, ta, tb, ldc, sc.outer, sc.inner,
                             std::bit_cast<uint32_t>(alpha), std::bit_cast<uint32_t>(beta), blocked_b};
  const OnednnMatmuls::Entry* entry = bf16_engine_choice().onednn ? &OnednnMatmuls::get(shape) : nullptr;
  if (entry && entry->prim) {
    // Operands in frozen ranges (weights while decoding) come packed once.
    const uint16_t* pa = packed_operand<uint16_t>(threads, 0, a, n_outer, n_inner, slices * M * K);
    using dt = dnnl::memory::data_type;
    auto& eng = OnednnMatmuls::engine();
    thread_local dnnl::stream stream(eng);
    // Plain descriptors for the handles: the primitive already knows the layouts.
    dnnl::memory ma({{slices * M * K}, dt::bf16, dnnl::memory::format_tag::a}, eng, const_cast<uint16_t*>(pa));
    dnnl::memory mb;
    if (blocked_b) {
      const auto kept = FrozenOperandRegistry::get().kept_form(b, OnednnMatmuls::Hash{}(shape), [&] {
        std::vector<uint16_t> plain(static_cast<std::size_t>(K * N));  // (the registry is locked here)
        pack_rounded(threads, b, 1, 1, plain.data());
        dnnl::memory from(entry->b_plain, eng, plain.data());
        auto to = std::make_shared<dnnl::memory>(entry->b_blocked, eng);
        dnnl::reorder(from, *to).execute(stream, from, *to);
        stream.wait();
        return std::static_pointer_cast<void>(to);
      });
      mb = *static_cast<const dnnl::memory*>(kept.get());
    } else {
      const uint16_t* pb = packed_operand<uint16_t>(threads, 1, b, n_outer, n_inner, slices * K * N);
      mb = dnnl::memory({{slices * K * N}, dt::bf16, dnnl::memory::format_tag::a}, eng, const_cast<uint16_t*>(pb));
    }
    const dnnl::matmul* prim = entry->prim.get();
    const int64_t c_extent = (n_outer - 1) * sc.outer + (n_inner - 1) * sc.inner + (M - 1) * ldc + N;
    dnnl::memory mc({{c_extent}, dt::f32, dnnl::memory::format_tag::a}, eng, C);
    // oneDNN (OpenMP build) uses as many threads as this thread's OpenMP default.
    const int saved = omp_get_max_threads();
    if (!omp_in_parallel()) omp_set_num_threads(threads);
    prim->execute(stream, {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}});
    stream.wait();
    if (!omp_in_parallel()) omp_set_num_threads(saved);
    return;
  }
#endif
  const float* pa = packed_operand<float>(threads, 0, a, n_outer, n_inner, slices * M * K);
  const float* pb = packed_operand<float>(threads, 1, b, n_outer, n_inner, slices * K * N);
  const int64_t lda = ta ? M : K, ldb = tb ? K : N;
  if (slices == 1)
    Cpu::gemm(exact, ta, tb, M, N, K, alpha, pa, lda, pb, ldb, beta, C, ldc);
  else
    Cpu::gemm_batched(exact, ta, tb, M, N, K, alpha, pa, lda, {n_inner * M * K, M * K}, pb, ldb,
                      {n_inner * K * N, K * N}, beta, C, ldc, sc, n_outer, n_inner);
}

}  // namespace cpu_detail

/// What computes Precision::Bf16Mixed's products in this build on this CPU; runs print it
/// so that an emulated (float32-speed) bf16 run says so.
inline std::string bf16_matmul_engine() {
#if defined(ADDROP_CPU_BF16_ONEDNN)
  const dnnl_version_t* v = dnnl_version();
  const std::string name = "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
                           std::to_string(v->patch);
  const cpu_detail::Bf16EngineChoice& choice = cpu_detail::bf16_engine_choice();
  if (choice.onednn) return name + " bf16 matmul (" + choice.reason + ")";
  return "inputs rounded to bf16, float32 Eigen GEMM, at float32 speed: faster here than " + name +
         "'s bf16 matmul (" + choice.reason + ")";
#else
  return "emulated: inputs rounded to bf16, float32 Eigen GEMM (built without addrop::onednn)";
#endif
}

/// While alive, the CPU backend's bf16 products round every operand that lies in one of
/// `ranges` (float arrays: a model's weights) to bf16 once and reuse that copy, instead of
/// re-rounding it at each product. For stretches where the weights stay fixed — decoding,
/// evaluation — in which the rounding would cost more than a product of a few rows (a
/// 59.5k x 512 output table). The ranges must not be written while the scope lives; scopes
/// may nest and overlap. Does nothing for float32 products.
class Bf16FrozenOperands {
 public:
  Bf16FrozenOperands() = default;
  explicit Bf16FrozenOperands(std::vector<std::pair<const float*, int64_t>> ranges) : ranges_(std::move(ranges)) {
    cpu_detail::FrozenOperandRegistry::get().add(ranges_);
  }
  ~Bf16FrozenOperands() {
    if (!ranges_.empty()) cpu_detail::FrozenOperandRegistry::get().remove(ranges_);
  }
  Bf16FrozenOperands(Bf16FrozenOperands&& o) noexcept : ranges_(std::move(o.ranges_)) { o.ranges_.clear(); }
  Bf16FrozenOperands& operator=(Bf16FrozenOperands&&) = delete;
  Bf16FrozenOperands(const Bf16FrozenOperands&) = delete;
  Bf16FrozenOperands& operator=(const Bf16FrozenOperands&) = delete;

 private:
  std::vector<std::pair<const float*, int64_t>> ranges_;
};

}  // namespace addrop::backend
