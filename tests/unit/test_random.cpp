// The counter-based generator behind dropout and AD-DROP's sampling: Philox4x32-10
// against the known-answer vectors of the Random123 distribution (kat_vectors), the
// packing of key and counter words, the [0, 1) floats made from it, their moments, the
// independence of streams and seeds, and the CPU backend's bulk uniform() against the
// scalar random::uniform() for every thread count and length.
#define BOOST_TEST_MODULE random
#include <boost/test/unit_test.hpp>

#include <addrop/backend/cpu.hpp>
#include <addrop/backend/philox.hpp>

#include <array>
#include <cmath>
#include <cstdint>
#include <iomanip>
#include <sstream>
#include <string>
#include <vector>

using namespace addrop;

namespace {

using Words = std::array<uint32_t, 4>;

std::string hex(const Words& w) {
  std::ostringstream os;
  os << std::hex << std::setfill('0');
  for (int i = 0; i < 4; ++i) os << (i ? " " : "") << std::setw(8) << w[i];
  return os.str();
}

// generate() with the four counter words and two key words of the Random123 tables.
Words run_philox(const Words& ctr, uint32_t k0, uint32_t k1) {
  const uint64_t key = uint64_t{k0} | (uint64_t{k1} << 32);
  const uint64_t lo = uint64_t{ctr[0]} | (uint64_t{ctr[1]} << 32);
  const uint64_t hi = uint64_t{ctr[2]} | (uint64_t{ctr[3]} << 32);
  uint32_t out[4];
  random::Philox4x32::generate(key, lo, hi, out);
  return {out[0], out[1], out[2], out[3]};
}

void check_kat(const Words& ctr, uint32_t k0, uint32_t k1, const Words& want) {
  const Words got = run_philox(ctr, k0, k1);
  BOOST_CHECK_MESSAGE(got == want, "philox4x32-10(ctr " << hex(ctr) << ", key " << std::hex << k0 << " " << k1
                                                        << ") = " << hex(got) << ", want " << hex(want));
}

}  // namespace

BOOST_AUTO_TEST_SUITE(philox)

BOOST_AUTO_TEST_CASE(random123_known_answers) {
  check_kat({0, 0, 0, 0}, 0, 0, {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u});
  check_kat({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, 0xffffffffu, 0xffffffffu,
            {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu});
  check_kat({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, 0xa4093822u, 0x299f31d0u,
            {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u});
}

BOOST_AUTO_TEST_CASE(every_counter_and_key_word_matters) {
  // Flipping one bit of any of the six input words changes the output (a packing that
  // dropped the high half of a 64-bit argument would not).
  const Words base = run_philox({1, 2, 3, 4}, 5, 6);
  for (int w = 0; w < 6; ++w) {
    Words ctr{1, 2, 3, 4};
    uint32_t k0 = 5, k1 = 6;
    if (w < 4) ctr[w] ^= 0x80000000u;
    else if (w == 4) k0 ^= 0x80000000u;
    else k1 ^= 0x80000000u;
    BOOST_CHECK_MESSAGE(run_philox(ctr, k0, k1) != base, "input word " << w << " has no effect");
  }
}

BOOST_AUTO_TEST_CASE(generate_is_a_pure_function) {
  uint32_t a[4], b[4];
  random::Philox4x32::generate(0x0123456789abcdefull, 77, 99, a);
  random::Philox4x32::generate(0x1111111111111111ull, 1, 2, b);  // unrelated call in between
  random::Philox4x32::generate(0x0123456789abcdefull, 77, 99, b);
  for (int i = 0; i < 4; ++i) BOOST_TEST(a[i] == b[i]);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(uniform_floats)

BOOST_AUTO_TEST_CASE(unit_float_endpoints) {
  BOOST_TEST(random::to_unit_float(0u) == 0.0f);
  BOOST_TEST(random::to_unit_float(0xffu) == 0.0f);  // the low 8 bits are dropped
  BOOST_TEST(random::to_unit_float(0x100u) == std::ldexp(1.0f, -24));
  BOOST_TEST(random::to_unit_float(0x80000000u) == 0.5f);
  const float top = random::to_unit_float(0xffffffffu);
  BOOST_TEST(top < 1.0f);
  BOOST_TEST(top == 1.0f - std::ldexp(1.0f, -24));
}

BOOST_AUTO_TEST_CASE(uniform_is_the_word_of_its_counter) {
  // Draw i of stream (seed, stream) is word i % 4 of the block at counter (i / 4, stream).
  const uint64_t seed = 0xfeedfacecafebeefull, stream = 12345;
  for (uint64_t i : {0ull, 1ull, 2ull, 3ull, 4ull, 7ull, 1001ull, (1ull << 34) + 2}) {
    uint32_t w[4];
    random::Philox4x32::generate(seed, i / 4, stream, w);
    BOOST_TEST(random::uniform(seed, stream, i) == random::to_unit_float(w[i % 4]), "index " << i);
  }
}

BOOST_AUTO_TEST_CASE(range_mean_and_variance_of_a_million_draws) {
  constexpr int64_t n = 1'000'000;
  double sum = 0, sum_sq = 0;
  float lo = 1, hi = 0;
  int64_t outside = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float u = random::uniform(2024, 7, static_cast<uint64_t>(i));
    if (!(u >= 0.0f && u < 1.0f)) ++outside;
    lo = std::min(lo, u);
    hi = std::max(hi, u);
    sum += u;
    sum_sq += static_cast<double>(u) * u;
  }
  BOOST_TEST(outside == 0);
  BOOST_TEST(lo >= 0.0f);
  BOOST_TEST(hi < 1.0f);
  BOOST_TEST(lo < 1e-4f);  // a million draws reach both ends
  BOOST_TEST(hi > 0.9999f);
  const double mean = sum / n, var = sum_sq / n - mean * mean;
  // Standard errors: sqrt(1/12 / n) = 2.9e-4 for the mean, sqrt((1/80 - 1/144) / n) = 7.5e-5
  // for the variance; the bounds are about five of them.
  BOOST_TEST(std::abs(mean - 0.5) < 1.5e-3, "mean " << mean);
  BOOST_TEST(std::abs(var - 1.0 / 12.0) < 4e-4, "variance " << var);
  // Each decile holds a tenth of the draws (binomial sd 300; bound about 6 sd).
  std::array<int64_t, 10> bins{};
  for (int64_t i = 0; i < n; ++i) ++bins[static_cast<int>(random::uniform(2024, 7, static_cast<uint64_t>(i)) * 10)];
  for (int b = 0; b < 10; ++b) BOOST_TEST(std::abs(bins[b] - n / 10) < 1800, "decile " << b << ": " << bins[b]);
}

BOOST_AUTO_TEST_CASE(streams_and_seeds_are_independent) {
  constexpr int64_t n = 200'000;
  auto correlation = [&](uint64_t seed_a, uint64_t stream_a, uint64_t seed_b, uint64_t stream_b, int64_t& equal) {
    double sa = 0, sb = 0, sab = 0, saa = 0, sbb = 0;
    equal = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double a = random::uniform(seed_a, stream_a, static_cast<uint64_t>(i));
      const double b = random::uniform(seed_b, stream_b, static_cast<uint64_t>(i));
      equal += a == b;
      sa += a; sb += b; sab += a * b; saa += a * a; sbb += b * b;
    }
    const double cov = sab / n - (sa / n) * (sb / n);
    return cov / std::sqrt((saa / n - (sa / n) * (sa / n)) * (sbb / n - (sb / n) * (sb / n)));
  };
  struct Pair { uint64_t seed_a, stream_a, seed_b, stream_b; };
  for (const Pair& p : {Pair{1, 0, 1, 1}, Pair{1, 5, 1, 6}, Pair{1, 0, 2, 0}, Pair{0, 1, 1, 0},
                        Pair{9, 1ull << 32, 9, 0}}) {
    int64_t equal = 0;
    const double r = correlation(p.seed_a, p.stream_a, p.seed_b, p.stream_b, equal);
    BOOST_TEST_CONTEXT("(seed " << p.seed_a << ", stream " << p.stream_a << ") vs (seed " << p.seed_b << ", stream "
                                << p.stream_b << ")") {
      // 24-bit floats coincide by chance about n / 2^24 = 0.01 times.
      BOOST_TEST(equal < 5, equal << " identical draws");
      // sd of the sample correlation of independent sequences: 1/sqrt(n) = 2.2e-3.
      BOOST_TEST(std::abs(r) < 0.012, "correlation " << r);
    }
  }
  // A stream is also not a shifted copy of another.
  int64_t shifted_equal = 0;
  for (int64_t i = 0; i < 10'000; ++i)
    shifted_equal += random::uniform(3, 0, static_cast<uint64_t>(i + 4)) == random::uniform(3, 1, static_cast<uint64_t>(i));
  BOOST_TEST(shifted_equal < 5);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(cpu_backend)

template <class T>
void check_bulk(int threads, int64_t n, uint64_t seed, uint64_t stream) {
  constexpr int guard = 8;
  const T sentinel = T(-7);
  std::vector<T> out(static_cast<std::size_t>(n + guard), sentinel);
  backend::Cpu::uniform(backend::Cpu::Context{threads}, n, seed, stream, out.data());
  int64_t wrong = 0, first_wrong = -1;
  for (int64_t i = 0; i < n; ++i) {
    const T want = static_cast<T>(random::uniform(seed, stream, static_cast<uint64_t>(i)));
    if (out[i] != want) {
      if (first_wrong < 0) first_wrong = i;
      ++wrong;
    }
  }
  BOOST_TEST_CONTEXT("threads " << threads << ", n " << n << ", " << (sizeof(T) == 8 ? "double" : "float")) {
    BOOST_TEST(wrong == 0, wrong << " draws differ from random::uniform, first at " << first_wrong);
    for (int g = 0; g < guard; ++g) BOOST_TEST(out[n + g] == sentinel, "wrote past the end at n + " << g);
  }
}

BOOST_AUTO_TEST_CASE(bulk_uniform_equals_scalar_draws) {
  // Lengths around the 4-word blocks and above the threading grain (2^14 blocks), so that
  // two threads really split the work and the last block is partial.
  const int64_t big = 4 * (int64_t{1} << 14) * 3 + 3;
  for (int threads : {1, 2}) {
    for (int64_t n : {int64_t{1}, int64_t{2}, int64_t{3}, int64_t{4}, int64_t{5}, int64_t{7}, int64_t{1001}, big,
                      big + 1, big + 2}) {
      check_bulk<float>(threads, n, 0x5eed, 42);
      check_bulk<double>(threads, n, 0x5eed, 42);
    }
  }
  check_bulk<float>(2, big, 0, 0);
  check_bulk<float>(2, big, ~0ull, ~0ull);
}

BOOST_AUTO_TEST_CASE(bulk_uniform_depends_on_seed_and_stream) {
  const int64_t n = 4096;
  std::vector<float> a(n), b(n), c(n);
  const backend::Cpu::Context ctx{1};
  backend::Cpu::uniform(ctx, n, 11, 0, a.data());
  backend::Cpu::uniform(ctx, n, 11, 1, b.data());
  backend::Cpu::uniform(ctx, n, 12, 0, c.data());
  int64_t same_ab = 0, same_ac = 0;
  for (int64_t i = 0; i < n; ++i) {
    same_ab += a[i] == b[i];
    same_ac += a[i] == c[i];
  }
  BOOST_TEST(same_ab < 3);
  BOOST_TEST(same_ac < 3);
}

BOOST_AUTO_TEST_SUITE_END()
