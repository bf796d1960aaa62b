// Shape and Tensor: element counts, printing, equality, the rank and sign limits, the
// grow-only storage the "no allocation after the first step" rule rests on (counted by
// backend::cpu_allocation_count()), reshape, and the 64-byte alignment of the CPU buffers.
#define BOOST_TEST_MODULE tensor
#include <boost/test/unit_test.hpp>

#include "support/helpers.hpp"

#include <addrop/backend/cpu.hpp>
#include <addrop/tensor.hpp>

#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

using namespace addrop;
using backend::Cpu;

using addrop::testing::has;

namespace {

int64_t allocations() { return backend::cpu_allocation_count().load(); }

bool aligned64(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 64 == 0; }


}  // namespace

BOOST_AUTO_TEST_SUITE(shape)

BOOST_AUTO_TEST_CASE(numel_rank_and_dims) {
  const Shape s{2, 3, 4};
  BOOST_TEST(s.rank == 3);
  BOOST_TEST(s.numel() == 24);
  BOOST_TEST(s[0] == 2);
  BOOST_TEST(s[1] == 3);
  BOOST_TEST(s[2] == 4);
  BOOST_TEST((Shape{7}.numel()) == 7);
  BOOST_TEST((Shape{2, 3, 5, 7}.numel()) == 210);
  BOOST_TEST((Shape{2, 0, 5}.numel()) == 0);
  BOOST_TEST((Shape{0}.numel()) == 0);
  BOOST_TEST((Shape{}.rank) == 0);
  BOOST_TEST((Shape{}.numel()) == 1);  // a scalar, as for any empty product
  // 64-bit element counts: [B, H, L, L] of a large batch overflows 32 bits.
  BOOST_TEST((Shape{64, 16, 512, 512}.numel()) == int64_t{268435456});
  BOOST_TEST((Shape{1 << 20, 1 << 20}.numel()) == int64_t{1} << 40);
}

BOOST_AUTO_TEST_CASE(str) {
  BOOST_TEST((Shape{2, 3, 4}.str()) == "[2, 3, 4]");
  BOOST_TEST((Shape{16}.str()) == "[16]");
  BOOST_TEST((Shape{1, 0, 12, 512}.str()) == "[1, 0, 12, 512]");
  BOOST_TEST((Shape{}.str()) == "[]");
}

BOOST_AUTO_TEST_CASE(equality) {
  BOOST_TEST((Shape{2, 3} == Shape{2, 3}));
  BOOST_TEST(!(Shape{2, 3} == Shape{3, 2}));
  BOOST_TEST(!(Shape{2, 3} == Shape{2, 3, 1}));
  BOOST_TEST(!(Shape{6} == Shape{2, 3}));  // same numel, different shape
  BOOST_TEST(!(Shape{} == Shape{1}));
  BOOST_TEST((Shape{} == Shape{}));
  BOOST_TEST((Shape{1, 2, 3, 4} == Shape{1, 2, 3, 4}));
  BOOST_TEST(!(Shape{1, 2, 3, 4} == Shape{1, 2, 3, 5}));
}

BOOST_AUTO_TEST_CASE(rank_above_four_and_negative_dimensions_throw) {
  BOOST_CHECK_NO_THROW((Shape{1, 2, 3, 4}));
  BOOST_CHECK_EXCEPTION((Shape{1, 2, 3, 4, 5}), std::invalid_argument, has({"rank"}));
  BOOST_CHECK_EXCEPTION((Shape{-1}), std::invalid_argument, has({"negative"}));
  BOOST_CHECK_EXCEPTION((Shape{4, 8, -3}), std::invalid_argument, has({"negative"}));
  BOOST_CHECK_NO_THROW((Shape{0, 0}));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(tensor)

BOOST_AUTO_TEST_CASE(construction_sets_shape_and_allocates_once) {
  const int64_t before = allocations();
  Tensor<float, Cpu> t({4, 8});
  BOOST_TEST(allocations() == before + 1);
  BOOST_TEST((t.shape() == Shape{4, 8}));
  BOOST_TEST(t.rank() == 2);
  BOOST_TEST(t.dim(0) == 4);
  BOOST_TEST(t.dim(1) == 8);
  BOOST_TEST(t.numel() == 32);
  BOOST_TEST(t.capacity() == 32);
  BOOST_TEST(!t.empty());
  BOOST_TEST(t.data() != nullptr);
  // Every element is writable and readable.
  for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = static_cast<float>(i);
  for (int64_t i = 0; i < t.numel(); ++i) BOOST_TEST(t.data()[i] == static_cast<float>(i));

  Tensor<float, Cpu> none({0, 5});
  BOOST_TEST(none.empty());
  BOOST_TEST(none.numel() == 0);
}

BOOST_AUTO_TEST_CASE(resize_is_grow_only) {
  Tensor<double, Cpu> t({4, 8});
  const double* storage = t.data();
  const int64_t after_first = allocations();

  // Shrinking: new shape, same storage, no allocation.
  t.resize({2, 8});
  BOOST_TEST((t.shape() == Shape{2, 8}));
  BOOST_TEST(t.numel() == 16);
  BOOST_TEST(t.capacity() == 32);
  BOOST_TEST(t.data() == storage);
  BOOST_TEST(allocations() == after_first);

  // Back to the capacity, in another shape: still no allocation.
  t.resize({32});
  BOOST_TEST((t.shape() == Shape{32}));
  BOOST_TEST(t.capacity() == 32);
  BOOST_TEST(t.data() == storage);
  BOOST_TEST(allocations() == after_first);

  // The same shape again.
  t.resize({32});
  BOOST_TEST(allocations() == after_first);

  // Down to nothing and back.
  t.resize({0});
  BOOST_TEST(t.empty());
  BOOST_TEST(t.capacity() == 32);
  t.resize({2, 2, 2, 4});
  BOOST_TEST(t.capacity() == 32);
  BOOST_TEST(allocations() == after_first);

  // Growing allocates exactly once and raises the capacity.
  t.resize({8, 8});
  BOOST_TEST(allocations() == after_first + 1);
  BOOST_TEST(t.capacity() == 64);
  BOOST_TEST(t.numel() == 64);
  for (int64_t i = 0; i < 64; ++i) t.data()[i] = 1.0 + static_cast<double>(i);  // the whole new buffer is usable
  BOOST_TEST(t.data()[63] == 64.0);

  // A resize that fits the new capacity keeps the contents' storage.
  const double* grown = t.data();
  t.resize({3, 7});
  BOOST_TEST(t.data() == grown);
  BOOST_TEST(t.data()[20] == 21.0);  // resize within capacity does not clear
  BOOST_TEST(allocations() == after_first + 1);
}

BOOST_AUTO_TEST_CASE(workspace_pattern_allocates_only_for_the_largest_shape) {
  // One step per batch shape: after the largest shape has been seen, no more allocations.
  Tensor<float, Cpu> act;
  const int64_t before = allocations();
  for (int64_t len : {16, 32, 8, 32, 24, 32, 1}) act.resize({4, 12, len, len});
  BOOST_TEST(allocations() == before + 2);  // 16 then 32
  BOOST_TEST(act.capacity() == 4 * 12 * 32 * 32);
  const int64_t settled = allocations();
  for (int step = 0; step < 50; ++step) act.resize({4, 12, 8 + step % 25, 8 + step % 25});
  BOOST_TEST(allocations() == settled);
}

BOOST_AUTO_TEST_CASE(moving_keeps_the_buffer) {
  Tensor<float, Cpu> a({3, 5});
  a.data()[14] = 2.5f;
  const float* storage = a.data();
  const int64_t before = allocations();
  Tensor<float, Cpu> b(std::move(a));
  BOOST_TEST(b.data() == storage);
  BOOST_TEST(b.data()[14] == 2.5f);
  BOOST_TEST((b.shape() == Shape{3, 5}));
  BOOST_TEST(b.capacity() == 15);
  BOOST_TEST(allocations() == before);
}

BOOST_AUTO_TEST_CASE(reshape_keeps_storage_and_checks_numel) {
  Tensor<float, Cpu> t({4, 6});
  const float* storage = t.data();
  const int64_t before = allocations();
  t.reshape({2, 3, 4});
  BOOST_TEST((t.shape() == Shape{2, 3, 4}));
  BOOST_TEST(t.data() == storage);
  t.reshape({24});
  BOOST_TEST(t.rank() == 1);
  t.reshape({1, 2, 3, 4});
  BOOST_TEST(t.rank() == 4);
  BOOST_TEST(allocations() == before);

  BOOST_CHECK_EXCEPTION(t.reshape({5, 5}), std::invalid_argument, has({"[1, 2, 3, 4]", "[5, 5]"}));
  BOOST_CHECK_EXCEPTION(t.reshape({25}), std::invalid_argument, has({"[25]"}));
  BOOST_CHECK_EXCEPTION(t.reshape({0}), std::invalid_argument, has({"[0]"}));
  // A failed reshape leaves the shape alone.
  BOOST_TEST((t.shape() == Shape{1, 2, 3, 4}));

  // After a shrinking resize, reshape goes by the shape, not by the capacity.
  t.resize({2, 5});
  BOOST_CHECK_NO_THROW(t.reshape({10}));
  BOOST_CHECK_THROW(t.reshape({24}), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(data_is_64_byte_aligned) {
  for (int64_t n : {1, 3, 15, 16, 17, 63, 64, 65, 1000, 4097}) {
    Tensor<float, Cpu> f({n});
    Tensor<double, Cpu> d({n, 3});
    Tensor<int32_t, Cpu> i({1, n});
    BOOST_TEST(aligned64(f.data()), "float [" << n << "]");
    BOOST_TEST(aligned64(d.data()), "double [" << n << ", 3]");
    BOOST_TEST(aligned64(i.data()), "int32 [1, " << n << "]");
    // Still aligned after growing.
    f.resize({n * 5 + 1});
    BOOST_TEST(aligned64(f.data()), "float grown from " << n);
  }
  // Many live small buffers, so that the allocator cannot hand out one lucky address.
  std::vector<Tensor<float, Cpu>> many;
  for (int k = 0; k < 64; ++k) many.emplace_back(Shape{k + 1});
  for (const auto& t : many) BOOST_TEST(aligned64(t.data()));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_CASE(default_tensor_is_empty) {
  Tensor<float, backend::Cpu> t;
  BOOST_TEST(t.numel() == 0);
  BOOST_TEST(t.empty());
  BOOST_TEST(t.rank() == 1);
}
