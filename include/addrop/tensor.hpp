#pragma once
// Tensor<T, Backend>: an owning, shaped, row-major buffer on one backend.
//
// A tensor has no math of its own: nn/ and models/ hand its storage to backend ops.
// resize() keeps the allocation when the new shape fits the capacity, which is what
// makes "one workspace per batch shape, no allocation after the first step" work:
// every activation buffer is resized at the start of a step and only grows.
#include <array>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <utility>

namespace addrop {

/// Up to four dimensions, row-major ([B, H, L, L] is the largest the library needs).
struct Shape {
  static constexpr int max_rank = 4;
  std::array<int64_t, max_rank> dims{};
  int rank = 0;

  Shape() = default;
  Shape(std::initializer_list<int64_t> d) {
    if (d.size() > max_rank) throw std::invalid_argument("addrop::Shape: rank above 4");
    for (int64_t v : d) {
      if (v < 0) throw std::invalid_argument("addrop::Shape: negative dimension");
      dims[rank++] = v;
    }
  }
  int64_t operator[](int i) const { return dims[i]; }
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < rank; ++i) n *= dims[i];
    return n;
  }
  friend bool operator==(const Shape& a, const Shape& b) {
    if (a.rank != b.rank) return false;
    for (int i = 0; i < a.rank; ++i)
      if (a.dims[i] != b.dims[i]) return false;
    return true;
  }
  std::string str() const {
    std::string s = "[";
    for (int i = 0; i < rank; ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
    return s + "]";
  }
};

template <class T, class Backend>
class Tensor {
 public:
  using value_type = T;
  using backend_type = Backend;
  using Buffer = typename Backend::template Buffer<T>;

  Tensor() = default;
  explicit Tensor(const Shape& shape) { resize(shape); }

  /// Sets the shape; reallocates only when the element count exceeds the capacity.
  /// Contents are unspecified after a resize that grows.
  void resize(const Shape& shape) {
    buffer_.reserve(shape.numel());
    shape_ = shape;
  }
  /// Same storage seen with another shape of the same element count.
  void reshape(const Shape& shape) {
    if (shape.numel() != shape_.numel())
      throw std::invalid_argument("addrop::Tensor::reshape: " + shape_.str() + " to " + shape.str());
    shape_ = shape;
  }

  T* data() { return buffer_.data(); }
  const T* data() const { return buffer_.data(); }
  const Shape& shape() const { return shape_; }
  int64_t dim(int i) const { return shape_.dims[i]; }
  int rank() const { return shape_.rank; }
  int64_t numel() const { return shape_.numel(); }
  bool empty() const { return numel() == 0; }
  int64_t capacity() const { return buffer_.capacity(); }

 private:
  Buffer buffer_;
  Shape shape_{0};  // a default tensor is empty, not a scalar with no storage
};

}  // namespace addrop
