#pragma once
// Reading and writing Hugging Face safetensors files.
//
// Layout of a file:
//   [8 bytes]  N, little-endian uint64: the length of the JSON header
//   [N bytes]  UTF-8 JSON object: name -> {"dtype", "shape", "data_offsets": [begin, end]},
//              plus an optional "__metadata__": {string: string}; padded with spaces
//   [rest]     the byte buffer; data_offsets are relative to its start; every byte of it
//              belongs to exactly one tensor; data little-endian, row-major.
//
// load() validates everything before trusting any number in the file (lengths, offsets,
// element counts), so a damaged or hostile file gives an io::Error naming the file, the
// tensor and the field at fault, never a crash, an out-of-bounds read or a huge allocation.
// save() writes to "<file>.tmp.<pid>" and renames, so the target is either the old file or
// the complete new one.
#include <bit>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <map>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace addrop::io {

// Tensor bytes are copied between the file and memory without byte swapping: the file is
// little-endian, so this code is correct only on little-endian hosts (x86-64, ARM64 Linux).
static_assert(std::endian::native == std::endian::little,
              "addrop::io::safetensors assumes a little-endian host (the file format is little-endian)");

/// Every failure of the io module: the message names the file, and where relevant the
/// tensor and the field.
struct Error : std::runtime_error {
  using runtime_error::runtime_error;
};

/// The element types this reader supports (a subset of the safetensors dtypes).
enum class DType { F64, F32, F16, BF16, I64, I32 };

/// The dtype's spelling in the file: "F64", "F32", "F16", "BF16", "I64", "I32".
std::string_view dtype_name(DType dtype);
/// Bytes per element: 8, 4, 2, 2, 8, 4.
std::size_t dtype_size(DType dtype);
/// Parses a dtype spelling; std::nullopt for anything not in DType (including valid
/// safetensors dtypes this library does not support, such as "U8" or "BOOL").
std::optional<DType> dtype_from_name(std::string_view name);
/// True for F64, F32, F16 and BF16.
bool is_floating(DType dtype);
/// Writes dtype_name(dtype).
std::ostream& operator<<(std::ostream& os, DType dtype);

/// One tensor as stored: its dtype, its shape (empty for a scalar) and its raw
/// little-endian, row-major bytes.
struct TensorRecord {
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::vector<std::byte> bytes;

  /// Product of the dimensions (1 for a scalar, 0 if any dimension is 0). Throws io::Error
  /// on a negative dimension or an overflowing product (impossible for a loaded record).
  int64_t numel() const;
};

/// Formats a shape as "[2, 3]" ("[]" for a scalar), the form every error message uses.
std::string shape_string(const std::vector<int64_t>& shape);

/// IEEE binary32 <-> binary16 and bfloat16. Widening is exact; narrowing rounds to nearest,
/// ties to even; overflow gives +-inf, subnormals are produced and read, NaN stays NaN
/// (quiet, payload top bits kept), the sign of zero is kept.
float half_to_float(uint16_t bits);
uint16_t float_to_half(float value);
float bf16_to_float(uint16_t bits);
uint16_t float_to_bf16(float value);

/// A safetensors file in memory: tensors by name plus the "__metadata__" strings.
///
/// Reading:
/// @code
///   auto st = addrop::io::SafeTensors::load(dir / "model.safetensors");
///   std::vector<float> w = st.values<float>("bert.embeddings.word_embeddings.weight", {30522, 768});
/// @endcode
/// Writing:
/// @code
///   addrop::io::SafeTensors st;
///   st.insert<float>("classifier.weight", {2, 768}, std::span<const float>(w));
///   st.set_metadata("format", "pt");
///   st.save(dir / "model.safetensors");
/// @endcode
class SafeTensors {
 public:
  /// Largest accepted JSON header (the limit of the reference implementation).
  static constexpr std::uint64_t max_header_size = 100'000'000;
  /// Largest accepted tensor rank.
  static constexpr std::size_t max_rank = 8;

  /// An empty collection (for writing); path() is empty.
  SafeTensors() = default;

  /// Reads the whole file and validates the header and the layout of the buffer.
  /// Throws io::Error naming the file (and the tensor and field) on any defect.
  static SafeTensors load(const std::filesystem::path& file);

  /// Same as load(), from bytes already in memory; `label` names the source in messages.
  static SafeTensors from_bytes(std::span<const std::byte> bytes,
                                const std::filesystem::path& label = "<memory>");

  bool contains(const std::string& name) const;
  /// The tensor called `name`; throws io::Error naming the file and the tensor if absent.
  const TensorRecord& at(const std::string& name) const;
  /// All tensor names, sorted.
  std::vector<std::string> names() const;
  /// Number of tensors.
  std::size_t size() const { return tensors_.size(); }
  /// The "__metadata__" object (string -> string); empty when the file has none.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  /// The file this was loaded from (empty for a collection built in memory).
  const std::filesystem::path& path() const { return path_; }

  /// The tensor's elements converted to T, row-major.
  ///
  /// T may be float or double (from any dtype: float dtypes convert exactly or round to
  /// nearest, integer dtypes as by static_cast), or a non-bool integral type (from I64/I32
  /// only; a value T cannot represent is an error). Asking an integral T of a float dtype
  /// throws io::Error naming the file, the tensor, the stored dtype and the requested type.
  template <class T>
  std::vector<T> values(const std::string& name) const;
  /// As values(name), after checking that the shape is `expected_shape`; a mismatch throws
  /// io::Error naming the tensor and both shapes ("[2, 3] vs expected [3, 2]").
  template <class T>
  std::vector<T> values(const std::string& name, const std::vector<int64_t>& expected_shape) const;

  /// Adds a tensor, replacing any tensor of the same name. Throws io::Error if the name is
  /// "__metadata__", the shape is invalid (negative, rank above 8, overflowing) or
  /// bytes.size() != numel * dtype_size.
  void insert(std::string name, TensorRecord record);
  /// Adds a tensor from typed data stored as-is: double -> F64, float -> F32, 64-bit signed
  /// integers -> I64, 32-bit signed integers -> I32. data.size() must equal the shape's numel.
  template <class T>
  void insert(std::string name, std::vector<int64_t> shape, std::span<const T> data);
  /// Adds a tensor from typed data converted to `dtype`: floating T to any float dtype
  /// (F16/BF16 round to nearest even; double goes through float for them), integral T to
  /// I64/I32 (a value out of range is an error) or to a float dtype.
  template <class T>
  void insert(std::string name, std::vector<int64_t> shape, std::span<const T> data, DType dtype);
  /// Removes a tensor; returns whether it was there.
  bool erase(const std::string& name);

  /// Sets one "__metadata__" entry.
  void set_metadata(std::string key, std::string value);

  /// Writes the collection. Tensors are laid out contiguously, largest dtype first then by
  /// name (so every tensor is aligned to its element size), after a header padded with
  /// spaces to a multiple of 8 bytes. Writes "<file>.tmp.<pid>" then renames it over
  /// `file`, so a crash never leaves half a file; throws io::Error on failure, leaving no
  /// temporary file behind.
  void save(const std::filesystem::path& file) const;

  /// The complete file contents save() would write.
  std::vector<std::byte> to_bytes() const;

 private:
  std::string header_json(const std::string& where) const;
  std::vector<const std::pair<const std::string, TensorRecord>*> layout_order() const;
  std::string where() const;

  std::filesystem::path path_;
  std::map<std::string, TensorRecord> tensors_;
  std::map<std::string, std::string> metadata_;

  // Shared by load() and from_bytes(): `read(offset, dest, count)` copies bytes of the
  // source (of `size` bytes) and returns false on a short read.
  template <class Reader>
  static SafeTensors read_impl(std::uint64_t size, Reader&& read, const std::filesystem::path& label);
};

}  // namespace addrop::io

#include "addrop/io/safetensors_impl.hpp"
