#pragma once
// Definitions for safetensors.hpp; include that header, not this one.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <ostream>
#include <set>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <utility>

#include <nlohmann/json.hpp>

#include "addrop/io/safetensors.hpp"

#if defined(_WIN32)
#include <process.h>
#else
#include <fcntl.h>
#include <unistd.h>
#endif

namespace addrop::io {

static_assert(std::numeric_limits<float>::is_iec559 && std::numeric_limits<double>::is_iec559,
              "addrop::io::safetensors assumes IEEE 754 float and double");

// ---------------------------------------------------------------------------------------
// dtypes

inline std::string_view dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F64: return "F64";
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::I64: return "I64";
    case DType::I32: return "I32";
  }
  throw Error("addrop::io: invalid DType value " + std::to_string(static_cast<int>(dtype)));
}

inline std::size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::F64: return 8;
    case DType::F32: return 4;
    case DType::F16: return 2;
    case DType::BF16: return 2;
    case DType::I64: return 8;
    case DType::I32: return 4;
  }
  throw Error("addrop::io: invalid DType value " + std::to_string(static_cast<int>(dtype)));
}

inline std::optional<DType> dtype_from_name(std::string_view name) {
  for (DType d : {DType::F64, DType::F32, DType::F16, DType::BF16, DType::I64, DType::I32})
    if (dtype_name(d) == name) return d;
  return std::nullopt;
}

inline bool is_floating(DType dtype) {
  return dtype == DType::F64 || dtype == DType::F32 || dtype == DType::F16 || dtype == DType::BF16;
}

inline std::ostream& operator<<(std::ostream& os, DType dtype) { return os << dtype_name(dtype); }

// ---------------------------------------------------------------------------------------
// helpers

namespace detail {

/// Element count of `shape`, or nullopt for a negative dimension or a count above
/// INT64_MAX. Any zero dimension makes the count 0 whatever the others are.
inline std::optional<std::uint64_t> checked_numel(const std::vector<int64_t>& shape) {
  for (int64_t d : shape)
    if (d < 0) return std::nullopt;
  for (int64_t d : shape)
    if (d == 0) return 0;
  constexpr auto limit = static_cast<std::uint64_t>(std::numeric_limits<int64_t>::max());
  std::uint64_t n = 1;
  for (int64_t d : shape) {
    const auto u = static_cast<std::uint64_t>(d);
    if (n > limit / u) return std::nullopt;
    n *= u;
  }
  return n;
}

/// "safetensors file "<path>"", the prefix of every message.
inline std::string where(const std::filesystem::path& path) {
  if (path.empty()) return "safetensors (built in memory)";
  return "safetensors file \"" + path.string() + "\"";
}

/// Throws io::Error "<where>: tensor "<tensor>": field "<field>": <what>", leaving out the
/// parts that are empty.
[[noreturn]] inline void fail(const std::string& where, std::string_view tensor,
                              std::string_view field, const std::string& what) {
  std::string msg = where;
  if (!tensor.empty()) (msg += ": tensor \"").append(tensor) += '"';
  if (!field.empty()) (msg += ": field \"").append(field) += '"';
  msg += ": ";
  msg += what;
  throw Error(msg);
}

inline std::string json_type(const nlohmann::json& j) {
  if (j.is_number_integer()) return "integer";
  if (j.is_number_float()) return "number";
  return j.type_name();
}

/// A non-negative JSON integer as uint64 ("-0" counts as 0); nullopt otherwise.
inline std::optional<std::uint64_t> json_unsigned(const nlohmann::json& j) {
  if (j.is_number_unsigned()) return j.get<std::uint64_t>();
  if (j.is_number_integer() && j.get<int64_t>() == 0) return 0;
  return std::nullopt;
}

/// double -> float, rounding to nearest even as IEEE does, without the undefined
/// behaviour C++ gives an out-of-range floating conversion.
inline float narrow_to_float(double d) {
  constexpr double max = std::numeric_limits<float>::max();
  if (d >= -max && d <= max) return static_cast<float>(d);
  if (std::isnan(d)) return std::copysign(std::numeric_limits<float>::quiet_NaN(), static_cast<float>(std::signbit(d) ? -1 : 1));
  // Beyond FLT_MAX: below the midpoint to 2^128 rounds down to FLT_MAX; at or above it
  // (a tie goes to the even neighbour, which is infinity) to infinity.
  constexpr double midpoint = 0x1.ffffffp+127;
  const float r = std::fabs(d) < midpoint ? std::numeric_limits<float>::max()
                                          : std::numeric_limits<float>::infinity();
  return std::signbit(d) ? -r : r;
}

template <class T>
inline constexpr bool is_plain_integer_v =
    std::is_integral_v<T> && !std::is_same_v<T, bool> && !std::is_same_v<T, char> &&
    !std::is_same_v<T, wchar_t> && !std::is_same_v<T, char8_t> && !std::is_same_v<T, char16_t> &&
    !std::is_same_v<T, char32_t>;

template <class T>
inline constexpr bool is_value_type_v =
    std::is_same_v<T, float> || std::is_same_v<T, double> || is_plain_integer_v<T>;

/// "float", "double", "int64", "uint8", ...: the requested type in messages.
template <class T>
std::string type_label() {
  if constexpr (std::is_same_v<T, float>) return "float";
  else if constexpr (std::is_same_v<T, double>) return "double";
  else return (std::is_signed_v<T> ? "int" : "uint") + std::to_string(8 * sizeof(T));
}

template <class S>
S load_element(const std::byte* base, std::size_t i) {
  S s;
  std::memcpy(&s, base + i * sizeof(S), sizeof(S));
  return s;
}

template <class S>
void store_element(std::byte* base, std::size_t i, S s) {
  std::memcpy(base + i * sizeof(S), &s, sizeof(S));
}

inline void put_u64_le(std::byte* out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<std::byte>((v >> (8 * i)) & 0xFF);
}

inline std::uint64_t get_u64_le(const std::byte* in) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<std::uint64_t>(in[i]) << (8 * i);
  return v;
}

/// One validated header entry.
struct HeaderEntry {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::uint64_t begin;
  std::uint64_t end;
};

struct ParsedHeader {
  std::vector<HeaderEntry> entries;  // sorted by (begin, end)
  std::map<std::string, std::string> metadata;
};

/// Parses and validates the JSON header against a data buffer of `buffer_size` bytes.
inline ParsedHeader parse_header(std::string_view text, std::uint64_t buffer_size,
                                 const std::string& where) {
  using json = nlohmann::json;
  // A safetensors header nests at most three levels (object -> entry -> shape array); the
  // callback refuses anything deeper and spots duplicate top-level keys, which the JSON
  // object would otherwise silently merge.
  std::set<std::string, std::less<>> seen;
  std::optional<std::string> duplicate;
  bool too_deep = false;
  auto callback = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth > 3) {
      too_deep = true;
      return false;
    }
    if (event == json::parse_event_t::key && depth == 1 && !duplicate) {
      const auto& key = parsed.get_ref<const std::string&>();
      if (!seen.insert(key).second) duplicate = key;
    }
    return true;
  };
  json root;
  try {
    root = json::parse(text.begin(), text.end(), callback);
  } catch (const json::exception& e) {
    fail(where, {}, "header", std::string("not valid JSON: ") + e.what());
  }
  if (!root.is_object()) fail(where, {}, "header", "must be a JSON object, found " + json_type(root));
  if (too_deep) fail(where, {}, "header", "JSON nested deeper than a safetensors header can be");
  if (duplicate) fail(where, *duplicate, {}, "appears twice in the header");

  ParsedHeader out;
  for (auto item = root.begin(); item != root.end(); ++item) {
    // (not a structured binding: lambdas below capture these, which clang < 16 rejects)
    const std::string& name = item.key();
    const json& value = item.value();
    if (name == "__metadata__") {
      if (!value.is_object())
        fail(where, {}, "__metadata__", "must be a JSON object of strings, found " + json_type(value));
      for (const auto& [key, v] : value.items()) {
        if (!v.is_string())
          fail(where, {}, "__metadata__",
               "value of key \"" + key + "\" must be a string, found " + json_type(v));
        out.metadata.emplace(key, v.get<std::string>());
      }
      continue;
    }
    if (!value.is_object()) fail(where, name, {}, "entry must be a JSON object, found " + json_type(value));
    auto field = [&](const char* key) -> const json& {
      auto it = value.find(key);
      if (it == value.end()) fail(where, name, key, "missing");
      return *it;
    };

    HeaderEntry e{name, DType::F32, {}, 0, 0};
    const json& jd = field("dtype");
    if (!jd.is_string()) fail(where, name, "dtype", "must be a string, found " + json_type(jd));
    const auto& dname = jd.get_ref<const std::string&>();
    auto dtype = dtype_from_name(dname);
    if (!dtype)
      fail(where, name, "dtype",
           "unknown or unsupported dtype \"" + dname + "\" (supported: F64, F32, F16, BF16, I64, I32)");
    e.dtype = *dtype;

    const json& js = field("shape");
    if (!js.is_array()) fail(where, name, "shape", "must be an array of integers, found " + json_type(js));
    if (js.size() > SafeTensors::max_rank)
      fail(where, name, "shape",
           "rank " + std::to_string(js.size()) + " exceeds the maximum of " +
               std::to_string(SafeTensors::max_rank));
    for (std::size_t i = 0; i < js.size(); ++i) {
      const json& d = js[i];
      if (d.is_number_integer() && !d.is_number_unsigned() && d.get<int64_t>() < 0)
        fail(where, name, "shape",
             "negative dimension " + std::to_string(d.get<int64_t>()) + " at index " + std::to_string(i));
      auto u = json_unsigned(d);
      if (!u) fail(where, name, "shape", "dimension " + std::to_string(i) + " must be an integer, found " + json_type(d));
      if (*u > static_cast<std::uint64_t>(std::numeric_limits<int64_t>::max()))
        fail(where, name, "shape", "dimension " + std::to_string(i) + " = " + std::to_string(*u) + " is too large");
      e.shape.push_back(static_cast<int64_t>(*u));
    }
    const auto numel = checked_numel(e.shape);
    const std::uint64_t elem = dtype_size(e.dtype);
    if (!numel || *numel > static_cast<std::uint64_t>(std::numeric_limits<int64_t>::max()) / elem)
      fail(where, name, "shape", "element count of " + shape_string(e.shape) + " overflows");
    const std::uint64_t nbytes = *numel * elem;

    const json& jo = field("data_offsets");
    if (!jo.is_array() || jo.size() != 2)
      fail(where, name, "data_offsets", "must be [begin, end], found " + jo.dump());
    auto b = json_unsigned(jo[0]);
    auto en = json_unsigned(jo[1]);
    if (!b || !en) fail(where, name, "data_offsets", "must be two non-negative integers, found " + jo.dump());
    if (*b > *en)
      fail(where, name, "data_offsets",
           "begin " + std::to_string(*b) + " is after end " + std::to_string(*en));
    if (*en > buffer_size)
      fail(where, name, "data_offsets",
           "end " + std::to_string(*en) + " is beyond the data buffer of " + std::to_string(buffer_size) +
               " bytes (truncated file?)");
    if (*en - *b != nbytes)
      fail(where, name, "data_offsets",
           "[" + std::to_string(*b) + ", " + std::to_string(*en) + ") spans " + std::to_string(*en - *b) +
               " bytes but dtype " + std::string(dtype_name(e.dtype)) + " with shape " +
               shape_string(e.shape) + " needs " + std::to_string(nbytes));
    e.begin = *b;
    e.end = *en;
    out.entries.push_back(std::move(e));
  }

  // The buffer must be covered exactly: no overlaps, no holes, nothing after the last tensor.
  std::sort(out.entries.begin(), out.entries.end(), [](const HeaderEntry& x, const HeaderEntry& y) {
    return std::tie(x.begin, x.end, x.name) < std::tie(y.begin, y.end, y.name);
  });
  std::uint64_t pos = 0;
  const std::string* previous = nullptr;
  for (const HeaderEntry& e : out.entries) {
    if (e.begin < pos)
      fail(where, e.name, "data_offsets",
           "[" + std::to_string(e.begin) + ", " + std::to_string(e.end) + ") overlaps tensor \"" +
               *previous + "\", which ends at " + std::to_string(pos));
    if (e.begin > pos)
      fail(where, e.name, "data_offsets",
           "bytes [" + std::to_string(pos) + ", " + std::to_string(e.begin) +
               ") before this tensor belong to no tensor (a hole in the buffer)");
    pos = e.end;
    previous = &e.name;
  }
  if (pos != buffer_size)
    fail(where, {}, "data_offsets",
         "bytes [" + std::to_string(pos) + ", " + std::to_string(buffer_size) +
             ") at the end of the buffer belong to no tensor");
  return out;
}

inline int process_id() {
#if defined(_WIN32)
  return _getpid();
#else
  return static_cast<int>(::getpid());
#endif
}

/// Flushes a written file to the disk (POSIX); elsewhere a no-op. Returns false on failure.
inline bool sync_file(const std::filesystem::path& file) {
#if defined(_WIN32)
  (void)file;
  return true;
#else
  const int fd = ::open(file.c_str(), O_RDONLY);
  if (fd < 0) return false;
  const bool ok = ::fsync(fd) == 0;
  return ::close(fd) == 0 && ok;
#endif
}

}  // namespace detail

// ---------------------------------------------------------------------------------------
// TensorRecord, shapes

inline std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

inline int64_t TensorRecord::numel() const {
  auto n = detail::checked_numel(shape);
  if (!n) throw Error("addrop::io::TensorRecord: shape " + shape_string(shape) + " is negative or overflows");
  return static_cast<int64_t>(*n);
}

// ---------------------------------------------------------------------------------------
// half and bfloat16

inline float half_to_float(uint16_t bits) {
  const std::uint32_t sign = static_cast<std::uint32_t>(bits & 0x8000u) << 16;
  const std::uint32_t exponent = (bits >> 10) & 0x1Fu;
  const std::uint32_t mantissa = bits & 0x3FFu;
  if (exponent == 0x1F)  // infinity (mantissa 0) or NaN (payload kept)
    return std::bit_cast<float>(sign | 0x7F800000u | (mantissa << 13));
  if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24, exact in float
    const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
    return std::bit_cast<float>(sign | std::bit_cast<std::uint32_t>(magnitude));
  }
  // normal: rebias the exponent from 15 to 127
  return std::bit_cast<float>(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

inline uint16_t float_to_half(float value) {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(value);
  const auto sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const std::uint32_t a = x & 0x7FFFFFFFu;
  if (a > 0x7F800000u)  // NaN: quiet it, keep the top payload bits
    return static_cast<uint16_t>(sign | 0x7E00u | ((a >> 13) & 0x3FFu));
  if (a >= 0x477FF000u)  // >= 65520 (and infinity): rounds to infinity
    return static_cast<uint16_t>(sign | 0x7C00u);
  if (a < 0x38800000u) {  // below 2^-14: a half subnormal (or zero)
    const std::uint32_t e = a >> 23;
    if (e < 102) return sign;  // below 2^-25: rounds to zero (2^-25 itself ties to even 0 too)
    const std::uint32_t m = (a & 0x7FFFFFu) | 0x800000u;  // value = m * 2^(e-150)
    const std::uint32_t shift = 126 - e;                  // units of 2^-24: m >> shift
    std::uint32_t q = m >> shift;
    const std::uint32_t rest = m & ((1u << shift) - 1);
    const std::uint32_t halfway = 1u << (shift - 1);
    if (rest > halfway || (rest == halfway && (q & 1u))) ++q;  // may carry into 0x400: fine
    return static_cast<uint16_t>(sign | q);
  }
  // normal: rebias exponent (127 -> 15), keep 10 mantissa bits, round to nearest even;
  // a carry out of the mantissa correctly bumps the exponent.
  std::uint32_t h = (a - 0x38000000u) >> 13;
  const std::uint32_t rest = a & 0x1FFFu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
  return static_cast<uint16_t>(sign | h);
}

inline float bf16_to_float(uint16_t bits) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16);
}

inline uint16_t float_to_bf16(float value) {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(value);
  if ((x & 0x7FFFFFFFu) > 0x7F800000u)  // NaN: quiet it, keep the top payload bits
    return static_cast<uint16_t>((x >> 16) | 0x0040u);
  // Round to nearest even on the low 16 bits; overflow carries into infinity.
  const std::uint32_t rounded = x + 0x7FFFu + ((x >> 16) & 1u);
  return static_cast<uint16_t>(rounded >> 16);
}

// ---------------------------------------------------------------------------------------
// SafeTensors: reading

template <class Reader>
SafeTensors SafeTensors::read_impl(std::uint64_t size, Reader&& read, const std::filesystem::path& label) {
  const std::string where = detail::where(label);
  if (size < 8)
    detail::fail(where, {}, "header length",
                 "file is " + std::to_string(size) + " bytes, shorter than the 8-byte header length");
  std::array<std::byte, 8> prefix{};
  if (!read(0, prefix.data(), 8)) detail::fail(where, {}, "header length", "could not read the first 8 bytes");
  const std::uint64_t n = detail::get_u64_le(prefix.data());
  if (n > max_header_size)
    detail::fail(where, {}, "header length",
                 "huge header: " + std::to_string(n) + " bytes, above the limit of " +
                     std::to_string(max_header_size));
  if (n > size - 8)
    detail::fail(where, {}, "header length",
                 "header of " + std::to_string(n) + " bytes is larger than the " + std::to_string(size - 8) +
                     " bytes after the length (truncated file or corrupt length)");
  std::string text(static_cast<std::size_t>(n), '\0');
  if (n > 0 && !read(8, reinterpret_cast<std::byte*>(text.data()), n))
    detail::fail(where, {}, "header", "could not read the header");
  const std::uint64_t buffer_size = size - 8 - n;
  detail::ParsedHeader header = detail::parse_header(text, buffer_size, where);
  std::string().swap(text);

  SafeTensors st;
  st.path_ = label;
  st.metadata_ = std::move(header.metadata);
  // Each allocation is bounded by buffer_size, which is no more than the source's size.
  for (detail::HeaderEntry& e : header.entries) {
    TensorRecord record{e.dtype, std::move(e.shape), std::vector<std::byte>(static_cast<std::size_t>(e.end - e.begin))};
    if (!record.bytes.empty() && !read(8 + n + e.begin, record.bytes.data(), e.end - e.begin))
      detail::fail(where, e.name, {}, "could not read the data (file changed while reading?)");
    st.tensors_.emplace(std::move(e.name), std::move(record));
  }
  return st;
}

inline SafeTensors SafeTensors::load(const std::filesystem::path& file) {
  const std::string where = detail::where(file);
  std::error_code ec;
  const auto status = std::filesystem::status(file, ec);
  if (ec || !std::filesystem::exists(status))
    detail::fail(where, {}, {}, "cannot open: " + (ec ? ec.message() : std::string("no such file")));
  if (!std::filesystem::is_regular_file(status)) detail::fail(where, {}, {}, "cannot open: not a regular file");
  const std::uintmax_t size = std::filesystem::file_size(file, ec);
  if (ec) detail::fail(where, {}, {}, "cannot read the size: " + ec.message());
  std::ifstream in(file, std::ios::binary);
  if (!in) detail::fail(where, {}, {}, "cannot open for reading");
  auto read = [&in](std::uint64_t offset, std::byte* dest, std::uint64_t count) {
    in.seekg(static_cast<std::streamoff>(offset));
    in.read(reinterpret_cast<char*>(dest), static_cast<std::streamsize>(count));
    return in.good() && static_cast<std::uint64_t>(in.gcount()) == count;
  };
  return read_impl(static_cast<std::uint64_t>(size), read, file);
}

inline SafeTensors SafeTensors::from_bytes(std::span<const std::byte> bytes, const std::filesystem::path& label) {
  auto read = [bytes](std::uint64_t offset, std::byte* dest, std::uint64_t count) {
    if (offset > bytes.size() || count > bytes.size() - offset) return false;
    std::memcpy(dest, bytes.data() + offset, static_cast<std::size_t>(count));
    return true;
  };
  return read_impl(bytes.size(), read, label);
}

// ---------------------------------------------------------------------------------------
// SafeTensors: access

inline std::string SafeTensors::where() const { return detail::where(path_); }

inline bool SafeTensors::contains(const std::string& name) const { return tensors_.count(name) != 0; }

inline const TensorRecord& SafeTensors::at(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it != tensors_.end()) return it->second;
  std::string what = "no such tensor (" + std::to_string(tensors_.size()) + " tensors present)";
  // The usual mismatch is a prefix ("bert.", "roberta.") on one side: suggest such a name.
  for (const auto& [other, record] : tensors_) {
    const bool suffix_of_other = other.size() > name.size() && other.ends_with(name);
    const bool other_suffix = name.size() > other.size() && name.ends_with(other);
    if (!name.empty() && !other.empty() && (suffix_of_other || other_suffix)) {
      what += "; did you mean \"" + other + "\"?";
      break;
    }
  }
  detail::fail(where(), name, {}, what);
}

inline std::vector<std::string> SafeTensors::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& kv : tensors_) out.push_back(kv.first);
  return out;
}

template <class T>
std::vector<T> SafeTensors::values(const std::string& name) const {
  static_assert(detail::is_value_type_v<T>,
                "SafeTensors::values<T>: T must be float, double or a (non-bool, non-character) integer type");
  const TensorRecord& r = at(name);
  const std::size_t n = r.bytes.size() / dtype_size(r.dtype);
  const std::byte* p = r.bytes.data();
  std::vector<T> out(n);
  if constexpr (std::is_floating_point_v<T>) {
    auto from_double = [](double d) -> T {
      if constexpr (std::is_same_v<T, float>) return detail::narrow_to_float(d);
      else return d;
    };
    for (std::size_t i = 0; i < n; ++i) {
      switch (r.dtype) {
        case DType::F64: out[i] = from_double(detail::load_element<double>(p, i)); break;
        case DType::F32: out[i] = static_cast<T>(detail::load_element<float>(p, i)); break;
        case DType::F16: out[i] = static_cast<T>(half_to_float(detail::load_element<uint16_t>(p, i))); break;
        case DType::BF16: out[i] = static_cast<T>(bf16_to_float(detail::load_element<uint16_t>(p, i))); break;
        case DType::I64: out[i] = static_cast<T>(detail::load_element<int64_t>(p, i)); break;
        case DType::I32: out[i] = static_cast<T>(detail::load_element<int32_t>(p, i)); break;
      }
    }
  } else {
    if (is_floating(r.dtype))
      detail::fail(where(), name, {},
                   "cannot convert stored dtype " + std::string(dtype_name(r.dtype)) + " to requested type " +
                       detail::type_label<T>() + " (floating data reads only as float or double)");
    auto put = [&](std::size_t i, auto v) {
      if (!std::in_range<T>(v))
        detail::fail(where(), name, {},
                     "element " + std::to_string(i) + " = " + std::to_string(v) + " of stored dtype " +
                         std::string(dtype_name(r.dtype)) + " does not fit the requested type " +
                         detail::type_label<T>());
      out[i] = static_cast<T>(v);
    };
    for (std::size_t i = 0; i < n; ++i) {
      if (r.dtype == DType::I64) put(i, detail::load_element<int64_t>(p, i));
      else put(i, detail::load_element<int32_t>(p, i));
    }
  }
  return out;
}

template <class T>
std::vector<T> SafeTensors::values(const std::string& name, const std::vector<int64_t>& expected_shape) const {
  const TensorRecord& r = at(name);
  if (r.shape != expected_shape)
    detail::fail(where(), name, "shape",
                 "stored shape " + shape_string(r.shape) + " vs expected " + shape_string(expected_shape));
  return values<T>(name);
}

// ---------------------------------------------------------------------------------------
// SafeTensors: building

inline void SafeTensors::insert(std::string name, TensorRecord record) {
  if (name == "__metadata__") detail::fail(where(), name, {}, "the name \"__metadata__\" is reserved");
  if (record.shape.size() > max_rank)
    detail::fail(where(), name, "shape",
                 "rank " + std::to_string(record.shape.size()) + " exceeds the maximum of " + std::to_string(max_rank));
  const std::uint64_t elem = dtype_size(record.dtype);
  const auto numel = detail::checked_numel(record.shape);
  if (!numel || *numel > static_cast<std::uint64_t>(std::numeric_limits<int64_t>::max()) / elem)
    detail::fail(where(), name, "shape", shape_string(record.shape) + " has a negative dimension or overflows");
  if (record.bytes.size() != *numel * elem)
    detail::fail(where(), name, "bytes",
                 "has " + std::to_string(record.bytes.size()) + " bytes but dtype " +
                     std::string(dtype_name(record.dtype)) + " with shape " + shape_string(record.shape) +
                     " needs " + std::to_string(*numel * elem));
  tensors_.insert_or_assign(std::move(name), std::move(record));
}

template <class T>
void SafeTensors::insert(std::string name, std::vector<int64_t> shape, std::span<const T> data) {
  static_assert(std::is_same_v<T, double> || std::is_same_v<T, float> ||
                    (detail::is_plain_integer_v<T> && std::is_signed_v<T> && (sizeof(T) == 8 || sizeof(T) == 4)),
                "SafeTensors::insert<T>: T must be double (F64), float (F32), int64_t (I64) or int32_t (I32); "
                "pass a DType to convert");
  constexpr DType dtype = std::is_same_v<T, double> ? DType::F64
                          : std::is_same_v<T, float> ? DType::F32
                          : sizeof(T) == 8           ? DType::I64
                                                     : DType::I32;
  insert<T>(std::move(name), std::move(shape), data, dtype);
}

template <class T>
void SafeTensors::insert(std::string name, std::vector<int64_t> shape, std::span<const T> data, DType dtype) {
  static_assert(detail::is_value_type_v<T>,
                "SafeTensors::insert<T>: T must be float, double or a (non-bool, non-character) integer type");
  const auto numel = detail::checked_numel(shape);
  if (shape.size() > max_rank || !numel)
    detail::fail(where(), name, "shape", shape_string(shape) + " is invalid (negative, rank above 8 or overflowing)");
  if (*numel != data.size())
    detail::fail(where(), name, "shape",
                 "data has " + std::to_string(data.size()) + " elements but shape " + shape_string(shape) + " has " +
                     std::to_string(*numel));
  const std::size_t n = data.size();
  TensorRecord record{dtype, std::move(shape), std::vector<std::byte>(n * dtype_size(dtype))};
  std::byte* out = record.bytes.data();
  auto as_float = [](T v) -> float {
    if constexpr (std::is_same_v<T, double>) return detail::narrow_to_float(v);
    else return static_cast<float>(v);
  };
  auto put_integer = [&]<class S>(std::size_t i, S) {
    if constexpr (std::is_floating_point_v<T>) {
      detail::fail(where(), name, "dtype",
                   "cannot store " + detail::type_label<T>() + " data as " + std::string(dtype_name(dtype)));
    } else {
      if (!std::in_range<S>(data[i]))
        detail::fail(where(), name, {},
                     "element " + std::to_string(i) + " = " + std::to_string(data[i]) + " does not fit " +
                         std::string(dtype_name(dtype)));
      detail::store_element(out, i, static_cast<S>(data[i]));
    }
  };
  for (std::size_t i = 0; i < n; ++i) {
    switch (dtype) {
      case DType::F64: detail::store_element(out, i, static_cast<double>(data[i])); break;
      case DType::F32: detail::store_element(out, i, as_float(data[i])); break;
      case DType::F16: detail::store_element(out, i, float_to_half(as_float(data[i]))); break;
      case DType::BF16: detail::store_element(out, i, float_to_bf16(as_float(data[i]))); break;
      case DType::I64: put_integer(i, int64_t{}); break;
      case DType::I32: put_integer(i, int32_t{}); break;
    }
  }
  insert(std::move(name), std::move(record));
}

inline bool SafeTensors::erase(const std::string& name) { return tensors_.erase(name) != 0; }

inline void SafeTensors::set_metadata(std::string key, std::string value) {
  metadata_.insert_or_assign(std::move(key), std::move(value));
}

// ---------------------------------------------------------------------------------------
// SafeTensors: writing

inline std::vector<const std::pair<const std::string, TensorRecord>*> SafeTensors::layout_order() const {
  std::vector<const std::pair<const std::string, TensorRecord>*> order;
  order.reserve(tensors_.size());
  for (const auto& kv : tensors_) order.push_back(&kv);
  // Largest element first, then by name (the map order): every tensor starts at a multiple
  // of its element size, since the header is padded to 8 bytes.
  std::stable_sort(order.begin(), order.end(), [](const auto* a, const auto* b) {
    return dtype_size(a->second.dtype) > dtype_size(b->second.dtype);
  });
  return order;
}

inline std::string SafeTensors::header_json(const std::string& where) const {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata_.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata_) m[k] = v;
    h["__metadata__"] = std::move(m);
  }
  std::uint64_t offset = 0;
  for (const auto* kv : layout_order()) {
    const TensorRecord& r = kv->second;
    nlohmann::ordered_json e = nlohmann::ordered_json::object();
    e["dtype"] = std::string(dtype_name(r.dtype));
    e["shape"] = r.shape;
    e["data_offsets"] = {offset, offset + r.bytes.size()};
    offset += r.bytes.size();
    h[kv->first] = std::move(e);
  }
  std::string text;
  try {
    text = h.dump();
  } catch (const nlohmann::json::exception& e) {
    detail::fail(where, {}, "header",
                 std::string("cannot encode (tensor names and metadata must be valid UTF-8): ") + e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

inline std::vector<std::byte> SafeTensors::to_bytes() const {
  const std::string header = header_json(where());
  std::size_t total = 8 + header.size();
  for (const auto& kv : tensors_) total += kv.second.bytes.size();
  std::vector<std::byte> out(total);
  detail::put_u64_le(out.data(), header.size());
  std::memcpy(out.data() + 8, header.data(), header.size());
  std::size_t pos = 8 + header.size();
  for (const auto* kv : layout_order()) {
    const auto& bytes = kv->second.bytes;
    if (!bytes.empty()) std::memcpy(out.data() + pos, bytes.data(), bytes.size());
    pos += bytes.size();
  }
  return out;
}

inline void SafeTensors::save(const std::filesystem::path& file) const {
  const std::string where = detail::where(file);
  const std::string header = header_json(where);
  std::filesystem::path tmp = file;
  tmp += ".tmp." + std::to_string(detail::process_id());
  auto discard = [&tmp] {
    std::error_code ignored;
    std::filesystem::remove(tmp, ignored);
  };
  try {
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      if (!out) detail::fail(where, {}, {}, "cannot open the temporary file \"" + tmp.string() + "\" for writing");
      std::array<std::byte, 8> prefix{};
      detail::put_u64_le(prefix.data(), header.size());
      out.write(reinterpret_cast<const char*>(prefix.data()), 8);
      out.write(header.data(), static_cast<std::streamsize>(header.size()));
      for (const auto* kv : layout_order()) {
        const auto& bytes = kv->second.bytes;
        out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
      }
      out.close();
      if (!out) detail::fail(where, {}, {}, "writing the temporary file \"" + tmp.string() + "\" failed");
    }
    if (!detail::sync_file(tmp))
      detail::fail(where, {}, {}, "flushing the temporary file \"" + tmp.string() + "\" to disk failed");
    std::error_code ec;
    std::filesystem::rename(tmp, file, ec);
    if (ec) detail::fail(where, {}, {}, "cannot rename \"" + tmp.string() + "\" over it: " + ec.message());
  } catch (...) {
    discard();
    throw;
  }
}

}  // namespace addrop::io
