#pragma once
// Tensor comparison for tests: the error measure and a message that says where and by how much.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

namespace addrop::testing {

struct Comparison {
  double max_abs_error = 0;  ///< max_i |got_i - want_i|
  double max_abs_want = 0;   ///< max_i |want_i|
  int64_t worst = -1;        ///< index of the largest error
  std::string report;        ///< the first mismatches, for the failure message
  /// Norm-wise relative error: max |got - want| / max |want| (0/0 counts as 0).
  double relative() const { return max_abs_want > 0 ? max_abs_error / max_abs_want : max_abs_error; }
};

template <class V>
double detail_to_double(const V& v) {
  if constexpr (std::is_arithmetic_v<V>) return static_cast<double>(v);
  else return 0.0;
}

template <class A, class B>
Comparison compare(const std::string& name, const A* got, const B* want, int64_t n, double tolerance) {
  Comparison c;
  for (int64_t i = 0; i < n; ++i) c.max_abs_want = std::max(c.max_abs_want, std::abs(static_cast<double>(want[i])));
  std::ostringstream os;
  os << name << ": ";
  int shown = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double e = std::abs(static_cast<double>(got[i]) - static_cast<double>(want[i]));
    if (!(e <= c.max_abs_error)) {  // also catches NaN
      c.max_abs_error = std::isnan(e) ? INFINITY : e;
      c.worst = i;
    }
    const double scale = c.max_abs_want > 0 ? c.max_abs_want : 1.0;
    if ((!(e / scale <= tolerance)) && shown < 5) {
      os << "[" << i << "] got " << static_cast<double>(got[i]) << " want " << static_cast<double>(want[i]) << "; ";
      ++shown;
    }
  }
  os << "max abs error " << c.max_abs_error << " (at " << c.worst << "), max |want| " << c.max_abs_want
     << ", relative " << c.relative() << " vs tolerance " << tolerance;
  c.report = os.str();
  return c;
}

template <class A, class B>
Comparison compare(const std::string& name, const std::vector<A>& got, const std::vector<B>& want, double tolerance) {
  if (got.size() != want.size()) {
    Comparison c;
    c.max_abs_error = INFINITY;
    c.report = name + ": sizes differ, got " + std::to_string(got.size()) + " want " + std::to_string(want.size());
    return c;
  }
  return compare(name, got.data(), want.data(), static_cast<int64_t>(got.size()), tolerance);
}

template <class... Args>
double last_arg(const Args&... args) {
  double last = 0;
  ((last = detail_to_double(args)), ...);
  return last;
}

}  // namespace addrop::testing

/// BOOST_CHECK that `got` matches `want` within `tol` (norm-wise relative), with a useful message.
/// ADDROP_CHECK_CLOSE_TENSOR(name, got_ptr, want_ptr, n, tol) or (name, got_vec, want_vec, tol).
#define ADDROP_CHECK_CLOSE_TENSOR(name, ...)                                               \
  do {                                                                                    \
    const auto addrop_cmp_ = ::addrop::testing::compare((name), __VA_ARGS__);              \
    BOOST_CHECK_MESSAGE(addrop_cmp_.relative() <= ::addrop::testing::last_arg(__VA_ARGS__), \
                        addrop_cmp_.report);                                              \
  } while (0)
