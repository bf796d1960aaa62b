#define BOOST_TEST_MODULE safetensors
#include <boost/test/unit_test.hpp>

#include "support/helpers.hpp"

#include <addrop/io/safetensors.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include <unistd.h>

namespace fs = std::filesystem;
namespace io = addrop::io;
using io::DType;

using addrop::testing::has;
using addrop::testing::HasWords;

namespace {

struct TempDir : addrop::testing::TempDir {
  TempDir() : addrop::testing::TempDir("safetensors") {}
};


std::vector<std::byte> read_all(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> bytes(chars.size());
  if (!chars.empty()) std::memcpy(bytes.data(), chars.data(), chars.size());
  return bytes;
}

void write_all(const fs::path& file, const std::vector<std::byte>& bytes) {
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  BOOST_REQUIRE(out.good());
}

// A hand-built file: 8-byte length (the header's own unless `declared` says otherwise),
// the header text, then `buffer_len` bytes of data.
std::vector<std::byte> build(const std::string& header, std::size_t buffer_len,
                             std::optional<std::uint64_t> declared = std::nullopt) {
  const std::uint64_t n = declared.value_or(header.size());
  std::vector<std::byte> out(8 + header.size() + buffer_len);
  for (int i = 0; i < 8; ++i) out[i] = static_cast<std::byte>((n >> (8 * i)) & 0xFF);
  std::memcpy(out.data() + 8, header.data(), header.size());
  for (std::size_t i = 0; i < buffer_len; ++i) out[8 + header.size() + i] = static_cast<std::byte>(i * 37 + 11);
  return out;
}

std::string entry(const std::string& dtype, const std::string& shape, const std::string& offsets) {
  return R"({"dtype":")" + dtype + R"(","shape":)" + shape + R"(,"data_offsets":)" + offsets + "}";
}

// Half-precision reference: the exact value of a non-NaN bit pattern, computed in double.
double half_reference(uint16_t h) {
  const int sign = (h & 0x8000) ? -1 : 1;
  const int e = (h >> 10) & 0x1F;
  const int m = h & 0x3FF;
  if (e == 31) return sign * std::numeric_limits<double>::infinity();
  if (e == 0) return sign * std::ldexp(m, -24);
  return sign * std::ldexp(1024 + m, e - 25);
}

bool is_half_nan(uint16_t h) { return (h & 0x7C00) == 0x7C00 && (h & 0x3FF) != 0; }
bool is_bf16_nan(uint16_t b) { return (b & 0x7F80) == 0x7F80 && (b & 0x7F) != 0; }

// Typed data for a round trip: values every dtype (F16/BF16 included) stores exactly.
std::vector<double> sample_values(DType dtype, std::size_t n) {
  std::vector<double> v(n);
  for (std::size_t i = 0; i < n; ++i) {
    const auto k = static_cast<int64_t>(i);
    switch (dtype) {
      case DType::I64: v[i] = static_cast<double>(k * 1'000'003 - 4'000'000'000LL); break;
      case DType::I32: v[i] = static_cast<double>(k * 7919 - 40'000); break;
      default: v[i] = static_cast<double>(k % 17 - 8) * 0.25; break;
    }
  }
  return v;
}

}  // namespace

// ---------------------------------------------------------------------------------------
BOOST_AUTO_TEST_SUITE(dtypes)

BOOST_AUTO_TEST_CASE(names_and_sizes) {
  const std::vector<std::tuple<DType, std::string, std::size_t>> table = {
      {DType::F64, "F64", 8}, {DType::F32, "F32", 4}, {DType::F16, "F16", 2},
      {DType::BF16, "BF16", 2}, {DType::I64, "I64", 8}, {DType::I32, "I32", 4}};
  for (const auto& [d, name, size] : table) {
    BOOST_TEST(io::dtype_name(d) == name);
    BOOST_TEST(io::dtype_size(d) == size);
    BOOST_TEST((io::dtype_from_name(name) == d));
  }
  BOOST_TEST(!io::dtype_from_name("U8").has_value());
  BOOST_TEST(!io::dtype_from_name("f32").has_value());
  BOOST_TEST(io::is_floating(DType::BF16));
  BOOST_TEST(!io::is_floating(DType::I32));
  BOOST_CHECK_THROW(io::dtype_size(static_cast<DType>(42)), io::Error);
}

BOOST_AUTO_TEST_CASE(shape_strings_and_numel) {
  BOOST_TEST(io::shape_string({}) == "[]");
  BOOST_TEST(io::shape_string({2, 3}) == "[2, 3]");
  BOOST_TEST((io::TensorRecord{DType::F32, {}, {}}.numel()) == 1);
  BOOST_TEST((io::TensorRecord{DType::F32, {2, 0, 5}, {}}.numel()) == 0);
  BOOST_TEST((io::TensorRecord{DType::F32, {2, 3, 4}, {}}.numel()) == 24);
  BOOST_CHECK_THROW((io::TensorRecord{DType::F32, {-1, 3}, {}}.numel()), io::Error);
  BOOST_CHECK_THROW((io::TensorRecord{DType::F32, {1LL << 32, 1LL << 32}, {}}.numel()), io::Error);
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------
BOOST_AUTO_TEST_SUITE(conversions)

BOOST_AUTO_TEST_CASE(half_known_bit_patterns) {
  BOOST_TEST(io::float_to_half(1.0f) == 0x3C00);
  BOOST_TEST(io::half_to_float(0x3C00) == 1.0f);
  BOOST_TEST(io::float_to_half(-2.0f) == 0xC000);
  BOOST_TEST(io::float_to_half(0.0f) == 0x0000);
  BOOST_TEST(io::float_to_half(-0.0f) == 0x8000);
  BOOST_TEST(std::signbit(io::half_to_float(0x8000)));
  BOOST_TEST(io::float_to_half(0.1f) == 0x2E66);
  // largest finite, and where rounding starts to overflow
  BOOST_TEST(io::float_to_half(65504.0f) == 0x7BFF);
  BOOST_TEST(io::half_to_float(0x7BFF) == 65504.0f);
  BOOST_TEST(io::float_to_half(65519.996f) == 0x7BFF);
  BOOST_TEST(io::float_to_half(65520.0f) == 0x7C00);  // the tie rounds to even: infinity
  BOOST_TEST(io::float_to_half(1.0e5f) == 0x7C00);
  BOOST_TEST(io::float_to_half(-1.0e5f) == 0xFC00);
  BOOST_TEST(io::float_to_half(std::numeric_limits<float>::infinity()) == 0x7C00);
  BOOST_TEST(io::float_to_half(-std::numeric_limits<float>::infinity()) == 0xFC00);
  BOOST_TEST(std::isinf(io::half_to_float(0x7C00)));
  // subnormals
  BOOST_TEST(io::half_to_float(0x0001) == 5.960464477539063e-08f);
  BOOST_TEST(static_cast<double>(io::half_to_float(0x0001)) == std::ldexp(1.0, -24));
  BOOST_TEST(io::half_to_float(0x03FF) == 6.097555160522461e-05f);
  BOOST_TEST(io::half_to_float(0x0400) == 6.103515625e-05f);
  BOOST_TEST(io::float_to_half(std::ldexp(1.0f, -24)) == 0x0001);
  BOOST_TEST(io::float_to_half(std::ldexp(1.0f, -25)) == 0x0000);                     // tie -> even 0
  BOOST_TEST(io::float_to_half(std::ldexp(1.0f + 0x1p-20f, -25)) == 0x0001);           // just above the tie
  BOOST_TEST(io::float_to_half(std::ldexp(1.5f, -24)) == 0x0002);                      // tie 1.5 -> 2
  BOOST_TEST(io::float_to_half(std::ldexp(2.5f, -24)) == 0x0002);                      // tie 2.5 -> 2
  BOOST_TEST(io::float_to_half(std::ldexp(1.0f - 0x1p-11f, -14)) == 0x0400);           // tie -> smallest normal
  BOOST_TEST(io::float_to_half(std::numeric_limits<float>::denorm_min()) == 0x0000);
  BOOST_TEST(io::float_to_half(-std::numeric_limits<float>::denorm_min()) == 0x8000);
  // round to nearest even among normals
  BOOST_TEST(io::float_to_half(1.0f + 0x1p-11f) == 0x3C00);
  BOOST_TEST(io::float_to_half(1.0f + 3 * 0x1p-11f) == 0x3C02);
  BOOST_TEST(io::float_to_half(1.0f + 0x1p-11f + 0x1p-20f) == 0x3C01);
  BOOST_TEST(io::float_to_half(2047.0f) == 0x67FF);
  BOOST_TEST(io::float_to_half(2049.0f) == 0x6800);  // tie between 2048 and 2050 -> 2048
  BOOST_TEST(io::float_to_half(2051.0f) == 0x6802);  // tie between 2050 and 2052 -> 2052
  // NaN stays NaN (quiet), sign kept
  BOOST_TEST(std::isnan(io::half_to_float(0x7E00)));
  BOOST_TEST(std::isnan(io::half_to_float(0x7C01)));
  const uint16_t hn = io::float_to_half(std::numeric_limits<float>::quiet_NaN());
  BOOST_TEST(is_half_nan(hn));
  BOOST_TEST(is_half_nan(io::float_to_half(std::bit_cast<float>(0x7F800001u))));  // signalling, low payload
  BOOST_TEST((io::float_to_half(-std::numeric_limits<float>::quiet_NaN()) & 0x8000) == 0x8000);
}

BOOST_AUTO_TEST_CASE(half_every_pattern_round_trips) {
  int mismatches = 0;
  for (std::uint32_t h = 0; h <= 0xFFFF; ++h) {
    const auto bits = static_cast<uint16_t>(h);
    const float f = io::half_to_float(bits);
    if (is_half_nan(bits)) {
      if (!std::isnan(f) || !is_half_nan(io::float_to_half(f)) ||
          std::signbit(f) != static_cast<bool>(bits & 0x8000))
        ++mismatches;
      continue;
    }
    if (static_cast<double>(f) != half_reference(bits)) ++mismatches;
    if (io::float_to_half(f) != bits) ++mismatches;
  }
  BOOST_TEST(mismatches == 0);
}

BOOST_AUTO_TEST_CASE(half_rounds_to_nearest_even_over_a_float_sweep) {
  // Every 251st float in [0, 65520): the chosen half is at least as near as both
  // neighbours, and an exact tie goes to the even one. Negative values mirror it.
  int failures = 0;
  for (std::uint32_t x = 0; x < 0x477FF000u; x += 251) {
    const float f = std::bit_cast<float>(x);
    const uint16_t h = io::float_to_half(f);
    if (io::float_to_half(-f) != (h | 0x8000)) ++failures;
    if (h >= 0x7C00) {
      ++failures;
      continue;
    }
    const double d = std::fabs(half_reference(h) - f);
    const double below = h > 0 ? std::fabs(half_reference(static_cast<uint16_t>(h - 1)) - f) : INFINITY;
    const double above = h < 0x7BFF ? std::fabs(half_reference(static_cast<uint16_t>(h + 1)) - f) : INFINITY;
    if (d > below || d > above) ++failures;
    if ((d == below || d == above) && (h & 1)) ++failures;
  }
  BOOST_TEST(failures == 0);
}

BOOST_AUTO_TEST_CASE(bf16_known_bit_patterns) {
  BOOST_TEST(io::float_to_bf16(1.0f) == 0x3F80);
  BOOST_TEST(io::bf16_to_float(0x3F80) == 1.0f);
  BOOST_TEST(io::float_to_bf16(-2.0f) == 0xC000);
  BOOST_TEST(io::float_to_bf16(-0.0f) == 0x8000);
  BOOST_TEST(io::float_to_bf16(1.0f + 0x1p-8f) == 0x3F80);               // tie -> even
  BOOST_TEST(io::float_to_bf16(1.0f + 3 * 0x1p-8f) == 0x3F82);           // tie -> even (up)
  BOOST_TEST(io::float_to_bf16(1.0f + 0x1p-8f + 0x1p-20f) == 0x3F81);    // above the tie
  BOOST_TEST(io::float_to_bf16(std::numeric_limits<float>::max()) == 0x7F80);  // overflow -> inf
  BOOST_TEST(io::float_to_bf16(0x1.fep127f) == 0x7F7F);                  // largest finite bf16
  BOOST_TEST(io::float_to_bf16(-std::numeric_limits<float>::infinity()) == 0xFF80);
  BOOST_TEST(io::float_to_bf16(std::bit_cast<float>(0x00008000u)) == 0x0000);  // subnormal tie -> even
  BOOST_TEST(io::float_to_bf16(std::bit_cast<float>(0x00018000u)) == 0x0002);
  BOOST_TEST(io::bf16_to_float(0x0001) == std::bit_cast<float>(0x00010000u));
  BOOST_TEST(is_bf16_nan(io::float_to_bf16(std::numeric_limits<float>::quiet_NaN())));
  BOOST_TEST(is_bf16_nan(io::float_to_bf16(std::bit_cast<float>(0x7F800001u))));  // payload only in low bits
  BOOST_TEST(std::isnan(io::bf16_to_float(0x7FC0)));
}

BOOST_AUTO_TEST_CASE(bf16_every_pattern_round_trips_and_sweep_rounds_correctly) {
  int failures = 0;
  for (std::uint32_t b = 0; b <= 0xFFFF; ++b) {
    const auto bits = static_cast<uint16_t>(b);
    const float f = io::bf16_to_float(bits);
    if (std::bit_cast<std::uint32_t>(f) != (b << 16)) ++failures;
    if (is_bf16_nan(bits) ? !is_bf16_nan(io::float_to_bf16(f)) : io::float_to_bf16(f) != bits) ++failures;
  }
  for (std::uint32_t x = 0; x < 0x7F800000u; x += 4099) {
    const float f = std::bit_cast<float>(x);
    const uint16_t b = io::float_to_bf16(f);
    if (b == 0x7F80) {
      if (static_cast<double>(f) < 0x1.ffp127) ++failures;
      continue;
    }
    const double d = std::fabs(static_cast<double>(io::bf16_to_float(b)) - f);
    const double below = b > 0 ? std::fabs(static_cast<double>(io::bf16_to_float(b - 1)) - f) : INFINITY;
    const double above = b < 0x7F7F ? std::fabs(static_cast<double>(io::bf16_to_float(b + 1)) - f) : INFINITY;
    if (d > below || d > above) ++failures;
    if ((d == below || d == above) && (b & 1)) ++failures;
  }
  BOOST_TEST(failures == 0);
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------
BOOST_AUTO_TEST_SUITE(round_trip)

BOOST_AUTO_TEST_CASE(every_dtype_and_rank_through_a_file) {
  TempDir tmp;
  const std::vector<std::vector<int64_t>> shapes = {{}, {5}, {2, 3}, {2, 0, 4}, {2, 1, 3, 2}, {0}};
  for (DType dtype : {DType::F64, DType::F32, DType::F16, DType::BF16, DType::I64, DType::I32}) {
    io::SafeTensors st;
    for (std::size_t s = 0; s < shapes.size(); ++s) {
      const auto n = static_cast<std::size_t>(io::TensorRecord{dtype, shapes[s], {}}.numel());
      const auto v = sample_values(dtype, n);
      const std::string name = "t" + std::to_string(s);
      switch (dtype) {
        case DType::F64: st.insert<double>(name, shapes[s], std::span<const double>(v)); break;
        case DType::F32: case DType::F16: case DType::BF16: {
          std::vector<float> f(v.begin(), v.end());
          st.insert<float>(name, shapes[s], std::span<const float>(f), dtype);
          break;
        }
        case DType::I64: {
          std::vector<int64_t> i(v.size());
          for (std::size_t k = 0; k < v.size(); ++k) i[k] = static_cast<int64_t>(v[k]);
          st.insert<int64_t>(name, shapes[s], std::span<const int64_t>(i));
          break;
        }
        case DType::I32: {
          std::vector<int32_t> i(v.size());
          for (std::size_t k = 0; k < v.size(); ++k) i[k] = static_cast<int32_t>(v[k]);
          st.insert<int32_t>(name, shapes[s], std::span<const int32_t>(i));
          break;
        }
      }
      BOOST_TEST(st.at(name).dtype == dtype);
    }
    const fs::path file = tmp.dir / (std::string(io::dtype_name(dtype)) + ".safetensors");
    st.save(file);
    const auto back = io::SafeTensors::load(file);
    BOOST_TEST(back.path() == file);
    BOOST_TEST(back.names() == st.names(), boost::test_tools::per_element());
    for (std::size_t s = 0; s < shapes.size(); ++s) {
      BOOST_TEST_CONTEXT("dtype " << io::dtype_name(dtype) << ", shape " << io::shape_string(shapes[s])) {
        const std::string name = "t" + std::to_string(s);
        const auto& r = back.at(name);
        BOOST_TEST(r.dtype == dtype);
        BOOST_TEST(r.shape == shapes[s], boost::test_tools::per_element());
        BOOST_TEST(r.bytes == st.at(name).bytes);
        BOOST_TEST(r.bytes.size() == static_cast<std::size_t>(r.numel()) * io::dtype_size(dtype));
        const auto expected = sample_values(dtype, static_cast<std::size_t>(r.numel()));
        BOOST_TEST(back.values<double>(name, shapes[s]) == expected, boost::test_tools::per_element());
      }
    }
    BOOST_TEST(read_all(file) == st.to_bytes());
  }
}

BOOST_AUTO_TEST_CASE(mixed_file_is_aligned_and_padded) {
  io::SafeTensors st;
  const std::vector<float> three{1, 2, 3};
  const std::vector<double> two{0.5, -0.25};
  const std::vector<int32_t> one{7};
  st.insert<float>("a.half", {3}, std::span<const float>(three), DType::F16);  // 6 bytes
  st.insert<int32_t>("b.int", {1}, std::span<const int32_t>(one));
  st.insert<double>("c.double", {2}, std::span<const double>(two));
  st.insert<float>("d.bf16", {3}, std::span<const float>(three), DType::BF16);
  const auto bytes = st.to_bytes();
  std::uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<std::uint64_t>(bytes[i]) << (8 * i);
  BOOST_TEST(n % 8 == 0u);
  const auto header = nlohmann::json::parse(std::string(reinterpret_cast<const char*>(bytes.data()) + 8, n));
  std::uint64_t covered = 0;
  for (const auto& [name, e] : header.items()) {
    const auto dtype = io::dtype_from_name(e["dtype"].get<std::string>());
    BOOST_REQUIRE(dtype.has_value());
    const auto begin = e["data_offsets"][0].get<std::uint64_t>();
    BOOST_TEST_CONTEXT(name) { BOOST_TEST(begin % io::dtype_size(*dtype) == 0u); }
    covered += e["data_offsets"][1].get<std::uint64_t>() - begin;
  }
  BOOST_TEST(covered == bytes.size() - 8 - n);
  const auto back = io::SafeTensors::from_bytes(bytes);
  BOOST_TEST(back.values<float>("a.half") == three, boost::test_tools::per_element());
  BOOST_TEST(back.values<float>("d.bf16") == three, boost::test_tools::per_element());
  BOOST_TEST(back.values<double>("c.double") == two, boost::test_tools::per_element());
  BOOST_TEST(back.values<int32_t>("b.int") == one, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(metadata_round_trip) {
  TempDir tmp;
  io::SafeTensors st;
  st.set_metadata("format", "pt");
  st.set_metadata("note", "unicode \xC3\xA9t\xC3\xA9 and \"quotes\"\n");
  st.set_metadata("format", "pt2");  // replaces
  const std::vector<float> v{1.5f};
  st.insert<float>("x", {1}, std::span<const float>(v));
  st.save(tmp.dir / "m.safetensors");
  const auto back = io::SafeTensors::load(tmp.dir / "m.safetensors");
  BOOST_TEST(back.metadata().size() == 2u);
  BOOST_TEST(back.metadata().at("format") == "pt2");
  BOOST_TEST(back.metadata().at("note") == "unicode \xC3\xA9t\xC3\xA9 and \"quotes\"\n");

  io::SafeTensors empty;
  BOOST_TEST(io::SafeTensors::from_bytes(empty.to_bytes()).size() == 0u);
  empty.set_metadata("only", "metadata");
  const auto only = io::SafeTensors::from_bytes(empty.to_bytes());
  BOOST_TEST(only.size() == 0u);
  BOOST_TEST(only.metadata().at("only") == "metadata");
}

BOOST_AUTO_TEST_CASE(hand_built_file_with_space_padded_header_loads) {
  TempDir tmp;
  // Exactly what the Python writer produces: metadata first, then padding spaces.
  std::string header = R"({"__metadata__":{"format":"pt"},"w":)" + entry("I32", "[2,2]", "[0,16]") + "}";
  header.append(8 - header.size() % 8 + 16, ' ');  // padded well past the next multiple of 8
  auto bytes = build(header, 16);
  const int32_t values[4] = {1, -2, 300000, -2147483647 - 1};
  std::memcpy(bytes.data() + 8 + header.size(), values, sizeof values);
  write_all(tmp.dir / "padded.safetensors", bytes);
  const auto st = io::SafeTensors::load(tmp.dir / "padded.safetensors");
  BOOST_TEST(st.metadata().at("format") == "pt");
  BOOST_TEST(st.values<int64_t>("w", {2, 2}) == (std::vector<int64_t>{1, -2, 300000, -2147483648LL}),
             boost::test_tools::per_element());
  // Whitespace before the object and a header with tabs/newlines are JSON too.
  const std::string loose = "\n {\t\"w\" : " + entry("F32", "[ 1 ]", "[ 0 , 4 ]") + " }\n  ";
  BOOST_TEST(io::SafeTensors::from_bytes(build(loose, 4)).at("w").shape == (std::vector<int64_t>{1}),
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------
BOOST_AUTO_TEST_SUITE(typed_access)

BOOST_AUTO_TEST_CASE(conversions_between_dtypes_and_requested_types) {
  io::SafeTensors st;
  const std::vector<int32_t> small{-3, 0, 300};
  const std::vector<int64_t> big{int64_t{1} << 40, -(int64_t{1} << 53) - 1};
  // 0x1.fffffe8p+127 lies between FLT_MAX and the midpoint to 2^128; 0x1.ffffffp+127 is the midpoint.
  const std::vector<double> wide{1e300, -1e300, 0.1, 0x1.fffffe8p+127, -0x1.ffffffp+127};
  const std::vector<float> narrow{0.1f, -65504.0f};
  st.insert<int32_t>("small", {3}, std::span<const int32_t>(small));
  st.insert<int64_t>("big", {2}, std::span<const int64_t>(big));
  st.insert<double>("wide", {5}, std::span<const double>(wide));
  st.insert<float>("half", {2}, std::span<const float>(narrow), DType::F16);

  BOOST_TEST(st.values<double>("small") == (std::vector<double>{-3, 0, 300}), boost::test_tools::per_element());
  BOOST_TEST(st.values<int16_t>("small") == (std::vector<int16_t>{-3, 0, 300}), boost::test_tools::per_element());
  BOOST_TEST(st.values<int64_t>("big") == big, boost::test_tools::per_element());
  BOOST_TEST(st.values<double>("big")[0] == 1099511627776.0);
  BOOST_TEST(st.values<double>("wide") == wide, boost::test_tools::per_element());
  const auto wf = st.values<float>("wide");
  BOOST_TEST(std::isinf(wf[0]));
  BOOST_TEST(wf[0] > 0);
  BOOST_TEST(std::isinf(wf[1]));
  BOOST_TEST(wf[1] < 0);
  BOOST_TEST(wf[2] == 0.1f);
  BOOST_TEST(wf[3] == std::numeric_limits<float>::max());
  BOOST_TEST(wf[4] == -std::numeric_limits<float>::infinity());  // the tie rounds to even: infinity
  const auto hd = st.values<double>("half");
  BOOST_TEST(hd[0] == static_cast<double>(io::half_to_float(0x2E66)));
  BOOST_TEST(hd[1] == -65504.0);

  BOOST_CHECK_EXCEPTION(st.values<int8_t>("small"), io::Error, has({"\"small\"", "300", "int8", "I32"}));
  BOOST_CHECK_EXCEPTION(st.values<uint32_t>("small"), io::Error, has({"\"small\"", "-3", "uint32"}));
  BOOST_CHECK_EXCEPTION(st.values<int32_t>("big"), io::Error, has({"\"big\"", "int32", "I64"}));
  BOOST_CHECK_EXCEPTION(st.values<int64_t>("wide"), io::Error, has({"\"wide\"", "F64", "int64"}));
  BOOST_CHECK_EXCEPTION(st.values<int32_t>("half"), io::Error, has({"\"half\"", "F16", "int32"}));
}

BOOST_AUTO_TEST_CASE(file_errors_name_the_file_and_tensor) {
  TempDir tmp;
  io::SafeTensors st;
  const std::vector<float> v{1, 2, 3, 4, 5, 6};
  st.insert<float>("encoder.weight", {2, 3}, std::span<const float>(v));
  const fs::path file = tmp.dir / "weights.safetensors";
  st.save(file);
  const auto back = io::SafeTensors::load(file);
  BOOST_TEST(back.contains("encoder.weight"));
  BOOST_TEST(!back.contains("decoder.weight"));
  BOOST_CHECK_EXCEPTION(back.at("decoder.weight"), io::Error,
                        has({"weights.safetensors", "\"decoder.weight\"", "no such tensor"}));
  BOOST_CHECK_EXCEPTION(back.values<float>("bert.encoder.weight"), io::Error,
                        has({"weights.safetensors", "\"bert.encoder.weight\"", "did you mean \"encoder.weight\""}));
  BOOST_CHECK_EXCEPTION(back.values<int64_t>("encoder.weight"), io::Error,
                        has({"weights.safetensors", "\"encoder.weight\"", "F32", "int64"}));
  BOOST_CHECK_EXCEPTION(back.values<float>("encoder.weight", {3, 2}), io::Error,
                        has({"weights.safetensors", "\"encoder.weight\"", "[2, 3]", "[3, 2]"}));
  BOOST_CHECK_EXCEPTION(back.values<float>("encoder.weight", {6}), io::Error, has({"[2, 3]", "[6]"}));
  BOOST_TEST(back.values<float>("encoder.weight", {2, 3}) == v, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(insert_validates) {
  io::SafeTensors st;
  BOOST_CHECK_EXCEPTION(st.insert("x", io::TensorRecord{DType::F32, {2, 3}, std::vector<std::byte>(20)}), io::Error,
                        has({"\"x\"", "20 bytes", "needs 24"}));
  BOOST_CHECK_EXCEPTION(st.insert("__metadata__", io::TensorRecord{DType::F32, {}, std::vector<std::byte>(4)}),
                        io::Error, has({"reserved"}));
  BOOST_CHECK_EXCEPTION(st.insert("neg", io::TensorRecord{DType::F32, {-1}, {}}), io::Error, has({"\"neg\"", "[-1]"}));
  BOOST_CHECK_EXCEPTION(
      st.insert("deep", io::TensorRecord{DType::F32, std::vector<int64_t>(9, 1), std::vector<std::byte>(4)}),
      io::Error, has({"\"deep\"", "rank 9"}));
  const std::vector<double> d{1.5, 2.5};
  BOOST_CHECK_EXCEPTION(st.insert<double>("short", {3}, std::span<const double>(d)), io::Error,
                        has({"\"short\"", "2 elements", "[3]"}));
  BOOST_CHECK_EXCEPTION(st.insert<double>("asint", {2}, std::span<const double>(d), DType::I64), io::Error,
                        has({"\"asint\"", "double", "I64"}));
  const std::vector<int64_t> huge{int64_t{1} << 40};
  BOOST_CHECK_EXCEPTION(st.insert<int64_t>("narrow", {1}, std::span<const int64_t>(huge), DType::I32), io::Error,
                        has({"\"narrow\"", "I32"}));
  BOOST_TEST(st.size() == 0u);

  // Integer data may be stored as a float dtype; inserting again replaces; erase removes.
  st.insert<int64_t>("n", {1}, std::span<const int64_t>(huge), DType::F64);
  BOOST_TEST(st.values<double>("n")[0] == 1099511627776.0);
  st.insert<double>("n", {2}, std::span<const double>(d));
  BOOST_TEST(st.at("n").shape == (std::vector<int64_t>{2}), boost::test_tools::per_element());
  BOOST_TEST(st.erase("n"));
  BOOST_TEST(!st.erase("n"));
  BOOST_CHECK_EXCEPTION(st.at("n"), io::Error, has({"\"n\"", "built in memory"}));
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------
BOOST_AUTO_TEST_SUITE(saving)

BOOST_AUTO_TEST_CASE(save_replaces_and_leaves_no_temporary) {
  TempDir tmp;
  const fs::path file = tmp.dir / "model.safetensors";
  write_all(file, std::vector<std::byte>(1000, std::byte{0x5A}));  // an old, unrelated file
  io::SafeTensors st;
  const std::vector<float> v{3, 1, 4, 1, 5};
  st.insert<float>("v", {5}, std::span<const float>(v));
  st.save(file);
  BOOST_TEST(tmp.listing() == std::vector<std::string>{"model.safetensors"}, boost::test_tools::per_element());
  BOOST_TEST(fs::file_size(file) == st.to_bytes().size());
  BOOST_TEST(io::SafeTensors::load(file).values<float>("v") == v, boost::test_tools::per_element());

  // Saving again over the file we just wrote (and over a loaded copy) works too.
  auto loaded = io::SafeTensors::load(file);
  const std::vector<int32_t> ids{1, 2};
  loaded.insert<int32_t>("ids", {2}, std::span<const int32_t>(ids));
  loaded.save(file);
  BOOST_TEST(tmp.listing() == std::vector<std::string>{"model.safetensors"}, boost::test_tools::per_element());
  BOOST_TEST(io::SafeTensors::load(file).names() == (std::vector<std::string>{"ids", "v"}),
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(failed_save_leaves_nothing_behind) {
  TempDir tmp;
  io::SafeTensors st;
  const std::vector<float> v{1};
  st.insert<float>("v", {1}, std::span<const float>(v));
  // The target is a directory: the rename fails and the temporary file is removed.
  fs::create_directory(tmp.dir / "taken.safetensors");
  BOOST_CHECK_EXCEPTION(st.save(tmp.dir / "taken.safetensors"), io::Error, has({"taken.safetensors", "rename"}));
  BOOST_TEST(tmp.listing() == std::vector<std::string>{"taken.safetensors"}, boost::test_tools::per_element());
  // The folder does not exist.
  BOOST_CHECK_EXCEPTION(st.save(tmp.dir / "missing" / "x.safetensors"), io::Error, has({"x.safetensors"}));
  BOOST_TEST(tmp.listing() == std::vector<std::string>{"taken.safetensors"}, boost::test_tools::per_element());
  // Names that are not UTF-8 cannot be written as JSON.
  io::SafeTensors bad;
  bad.insert<float>("bad\xFF", {1}, std::span<const float>(v));
  BOOST_CHECK_EXCEPTION(bad.save(tmp.dir / "bad.safetensors"), io::Error, has({"bad.safetensors", "UTF-8"}));
  BOOST_TEST(!fs::exists(tmp.dir / "bad.safetensors"));
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------
// Damaged and hostile files: each gives an io::Error naming the file (and tensor, field).
struct BadFiles {
  TempDir tmp;
  // Writes `bytes` as <stem>.safetensors and checks that load() fails with all `words`
  // plus the file name in the message.
  void expect(const std::string& stem, const std::vector<std::byte>& bytes, std::initializer_list<std::string> words) {
    const fs::path file = tmp.dir / (stem + ".safetensors");
    write_all(file, bytes);
    HasWords pred{words};
    pred.words.push_back(stem + ".safetensors");
    BOOST_TEST_CONTEXT("file " << stem) { BOOST_CHECK_EXCEPTION(io::SafeTensors::load(file), io::Error, pred); }
  }
};

BOOST_FIXTURE_TEST_SUITE(bad_files, BadFiles)

BOOST_AUTO_TEST_CASE(missing_and_short_files) {
  BOOST_CHECK_EXCEPTION(io::SafeTensors::load(tmp.dir / "nope.safetensors"), io::Error,
                        has({"nope.safetensors", "cannot open"}));
  BOOST_CHECK_EXCEPTION(io::SafeTensors::load(tmp.dir), io::Error, has({"not a regular file"}));
  expect("empty", {}, {"0 bytes", "shorter than the 8-byte"});
  expect("five", std::vector<std::byte>(5), {"5 bytes", "shorter than the 8-byte"});
}

BOOST_AUTO_TEST_CASE(header_lengths_that_lie) {
  const std::string header = "{\"w\":" + entry("F32", "[2]", "[0,8]") + "}";
  expect("huge", build(header, 8, std::uint64_t{1} << 62), {"huge header", "header length"});
  expect("just_over_limit", build(header, 8, 100'000'001), {"huge header"});
  expect("longer_than_file", build(header, 8, header.size() + 1000), {"larger than", "truncated"});
  expect("max_u64", build(header, 8, std::numeric_limits<std::uint64_t>::max()), {"huge header"});
  // Too short a length cuts the JSON; zero length is no JSON at all.
  expect("shorter_than_header", build(header, 8, header.size() - 3), {"not valid JSON"});
  expect("zero_length", build("", 0), {"not valid JSON"});
}

BOOST_AUTO_TEST_CASE(header_not_json_or_not_an_object) {
  expect("garbage", build("{\"w\": nonsense", 0), {"header", "not valid JSON"});
  expect("array", build("[1, 2, 3]", 0), {"must be a JSON object", "array"});
  expect("not_utf8", build("{\"w\xFF\":" + entry("F32", "[1]", "[0,4]") + "}", 4), {"not valid JSON"});
  expect("duplicate", build("{\"w\":" + entry("F32", "[1]", "[0,4]") + ",\"w\":" + entry("F32", "[1]", "[4,8]") + "}", 8),
         {"\"w\"", "twice"});
  expect("too_deep", build("{\"w\":" + entry("F32", "[[[[[1]]]]]", "[0,4]") + "}", 4), {"deeper"});
  expect("entry_not_object", build("{\"w\": 5}", 0), {"\"w\"", "must be a JSON object"});
  expect("metadata_not_object", build("{\"__metadata__\": [1]}", 0), {"__metadata__", "array"});
  expect("metadata_not_string", build("{\"__metadata__\": {\"epochs\": 3}}", 0),
         {"__metadata__", "\"epochs\"", "must be a string"});
}

BOOST_AUTO_TEST_CASE(entry_fields_missing_or_mistyped) {
  expect("no_dtype", build(R"({"w":{"shape":[1],"data_offsets":[0,4]}})", 4), {"\"w\"", "\"dtype\"", "missing"});
  expect("no_shape", build(R"({"w":{"dtype":"F32","data_offsets":[0,4]}})", 4), {"\"w\"", "\"shape\"", "missing"});
  expect("no_offsets", build(R"({"w":{"dtype":"F32","shape":[1]}})", 4), {"\"w\"", "\"data_offsets\"", "missing"});
  expect("dtype_number", build("{\"w\":" + entry("F32", "[1]", "[0,4]").replace(9, 5, "32") + "}", 4),
         {"\"w\"", "\"dtype\"", "must be a string"});
  expect("shape_string", build("{\"w\":" + entry("F32", "\"2x3\"", "[0,24]") + "}", 24),
         {"\"w\"", "\"shape\"", "must be an array"});
  expect("shape_float", build("{\"w\":" + entry("F32", "[2.5]", "[0,8]") + "}", 8),
         {"\"w\"", "\"shape\"", "must be an integer"});
  expect("offsets_one", build("{\"w\":" + entry("F32", "[1]", "[4]") + "}", 4), {"\"w\"", "\"data_offsets\"", "[begin, end]"});
  expect("offsets_object", build("{\"w\":" + entry("F32", "[1]", "{}") + "}", 4), {"\"w\"", "\"data_offsets\""});
  expect("offsets_negative", build("{\"w\":" + entry("F32", "[1]", "[-4,0]") + "}", 4),
         {"\"w\"", "\"data_offsets\"", "non-negative"});
  expect("offsets_float", build("{\"w\":" + entry("F32", "[1]", "[0,4.0]") + "}", 4),
         {"\"w\"", "\"data_offsets\"", "non-negative integers"});
}

BOOST_AUTO_TEST_CASE(dtypes_and_shapes_rejected) {
  expect("unknown_dtype", build("{\"w\":" + entry("F8_E4M3", "[1]", "[0,1]") + "}", 1),
         {"\"w\"", "\"dtype\"", "\"F8_E4M3\"", "unsupported"});
  expect("lowercase_dtype", build("{\"w\":" + entry("f32", "[1]", "[0,4]") + "}", 4), {"\"w\"", "\"f32\""});
  expect("negative_dim", build("{\"w\":" + entry("F32", "[2,-3]", "[0,0]") + "}", 0),
         {"\"w\"", "\"shape\"", "negative dimension -3"});
  expect("numel_overflow", build("{\"w\":" + entry("F32", "[4294967296,4294967296]", "[0,4]") + "}", 4),
         {"\"w\"", "\"shape\"", "overflows"});
  expect("bytes_overflow", build("{\"w\":" + entry("F64", "[2305843009213693952]", "[0,8]") + "}", 8),
         {"\"w\"", "overflows"});
  expect("dim_too_large", build("{\"w\":" + entry("F32", "[18446744073709551615]", "[0,4]") + "}", 4),
         {"\"w\"", "too large"});
  expect("rank_9", build("{\"w\":" + entry("F32", "[1,1,1,1,1,1,1,1,1]", "[0,4]") + "}", 4),
         {"\"w\"", "\"shape\"", "rank 9"});
  // Rank 8 is fine.
  BOOST_TEST(io::SafeTensors::from_bytes(build("{\"w\":" + entry("F32", "[1,1,1,1,1,1,1,1]", "[0,4]") + "}", 4))
                 .at("w").shape.size() == 8u);
}

BOOST_AUTO_TEST_CASE(offsets_that_do_not_fit_the_buffer) {
  expect("truncated", build("{\"w\":" + entry("F32", "[2,3]", "[0,24]") + "}", 12),
         {"\"w\"", "\"data_offsets\"", "beyond the data buffer of 12 bytes", "truncated"});
  expect("past_end", build("{\"w\":" + entry("F32", "[1]", "[1000000000000,1000000000004]") + "}", 4),
         {"\"w\"", "beyond"});
  expect("begin_after_end", build("{\"w\":" + entry("F32", "[0]", "[8,0]") + "}", 8),
         {"\"w\"", "begin 8 is after end 0"});
  expect("size_lies", build("{\"w\":" + entry("F32", "[2,3]", "[0,20]") + "}", 20),
         {"\"w\"", "spans 20 bytes", "[2, 3]", "needs 24"});
  expect("overlap",
         build("{\"a\":" + entry("F32", "[4]", "[0,16]") + ",\"b\":" + entry("F32", "[4]", "[8,24]") + "}", 24),
         {"\"b\"", "overlaps tensor \"a\""});
  expect("empty_inside_other",
         build("{\"a\":" + entry("F32", "[4]", "[0,16]") + ",\"z\":" + entry("F32", "[0]", "[8,8]") + "}", 16),
         {"\"z\"", "overlaps tensor \"a\""});
  expect("hole",
         build("{\"a\":" + entry("F32", "[2]", "[0,8]") + ",\"b\":" + entry("F32", "[2]", "[16,24]") + "}", 24),
         {"\"b\"", "hole"});
  expect("hole_at_start", build("{\"a\":" + entry("F32", "[2]", "[8,16]") + "}", 16), {"\"a\"", "[0, 8)", "hole"});
  expect("trailing_bytes", build("{\"a\":" + entry("F32", "[2]", "[0,8]") + "}", 12),
         {"[8, 12)", "belong to no tensor"});
  expect("buffer_without_tensors", build("{}", 4), {"[0, 4)", "belong to no tensor"});
  // Tensors listed out of order, and empty tensors at the boundaries, are fine.
  const auto ok = io::SafeTensors::from_bytes(
      build("{\"b\":" + entry("F32", "[2]", "[8,16]") + ",\"a\":" + entry("F32", "[2]", "[0,8]") +
                ",\"e\":" + entry("F32", "[0]", "[8,8]") + ",\"z\":" + entry("F32", "[3,0]", "[16,16]") + "}",
            16),
      "inline");
  BOOST_TEST(ok.names() == (std::vector<std::string>{"a", "b", "e", "z"}), boost::test_tools::per_element());
  BOOST_TEST(ok.path() == fs::path("inline"));
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------
// Mechanical damage to a valid file: never anything but success or io::Error.
BOOST_AUTO_TEST_SUITE(robustness)

io::SafeTensors sample() {
  io::SafeTensors st;
  const std::vector<float> f{1, 2, 3, 4, 5, 6};
  const std::vector<int64_t> i{7, 8};
  st.insert<float>("layer.0.weight", {2, 3}, std::span<const float>(f));
  st.insert<float>("layer.0.bias", {3}, std::span<const float>(f).first(3), DType::BF16);
  st.insert<int64_t>("position_ids", {1, 2}, std::span<const int64_t>(i));
  st.set_metadata("format", "pt");
  return st;
}

BOOST_AUTO_TEST_CASE(every_truncation_is_an_error) {
  const auto bytes = sample().to_bytes();
  int unexpected = 0;
  for (std::size_t len = 0; len < bytes.size(); ++len) {
    try {
      io::SafeTensors::from_bytes(std::span<const std::byte>(bytes).first(len), "cut");
      ++unexpected;  // a prefix must never load
    } catch (const io::Error& e) {
      if (std::string(e.what()).find("cut") == std::string::npos) ++unexpected;
    }
  }
  BOOST_TEST(unexpected == 0);
  BOOST_TEST(io::SafeTensors::from_bytes(bytes).size() == 3u);
}

BOOST_AUTO_TEST_CASE(byte_flips_never_crash) {
  const auto good = sample().to_bytes();
  std::mt19937 rng(12345);
  int loaded = 0;
  int rejected = 0;
  const std::byte replacements[] = {std::byte{0x00}, std::byte{0xFF}, std::byte{'"'}, std::byte{'9'},
                                    std::byte{'-'},  std::byte{'['},  std::byte{'}'}, std::byte{0x80}};
  std::size_t header_end = 0;
  for (int i = 0; i < 8; ++i) header_end |= static_cast<std::size_t>(good[i]) << (8 * i);
  header_end += 8;
  for (std::size_t pos = 0; pos < header_end; ++pos) {
    for (std::byte r : replacements) {
      auto bytes = good;
      bytes[pos] = r;
      try {
        (void)io::SafeTensors::from_bytes(bytes);
        ++loaded;
      } catch (const io::Error&) {
        ++rejected;
      }
    }
  }
  // Random garbage after a plausible length.
  for (int trial = 0; trial < 2000; ++trial) {
    std::vector<std::byte> bytes(8 + rng() % 64);
    for (auto& b : bytes) b = static_cast<std::byte>(rng());
    const std::uint64_t n = rng() % (bytes.size() - 7);
    for (int i = 0; i < 8; ++i) bytes[i] = static_cast<std::byte>((n >> (8 * i)) & 0xFF);
    try {
      (void)io::SafeTensors::from_bytes(bytes);
      ++loaded;
    } catch (const io::Error&) {
      ++rejected;
    }
  }
  BOOST_TEST(rejected > 0);
  BOOST_TEST(loaded > 0);  // e.g. flipping a padding space to another space-like byte, or tail data
}

BOOST_AUTO_TEST_SUITE_END()
