#pragma once
// Gradient-norm clipping over a ParameterList, as torch.nn.utils.clip_grad_norm_ does it:
//   total = || concat(all grads) ||_2,  coef = max_norm / (total + 1e-6),
//   grads *= coef only when coef < 1 (torch multiplies by min(coef, 1), the same thing).
// Works on every backend: it uses only Backend::sum_squares (a double on the host) and
// Backend::scale. Sums of squares are accumulated in double whatever T is.
//
// Non-finite norms (an inf or NaN gradient somewhere) are reported, not propagated: the
// gradients are left untouched, ClipResult::finite is false and names the first parameter
// whose gradient is not finite, so the trainer can skip the step (torch, by default,
// would multiply every gradient by NaN). With `error_if_nonfinite` it throws instead.
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

#include "../nn/parameter.hpp"

namespace addrop::train {

struct ClipResult {
  double total_norm = 0;       ///< the 2-norm of all gradients before clipping
  double coefficient = 1;      ///< max_norm / (total_norm + 1e-6), or 1 when not clipped
  bool clipped = false;        ///< whether the gradients were scaled
  bool finite = true;          ///< false: total_norm is inf or NaN, nothing was scaled
  std::string first_nonfinite; ///< name of the first parameter with a non-finite gradient
};

/// The 2-norm of all gradients of `params` together (no change to them).
template <class T, class Backend>
double grad_norm(const nn::ParameterList<T, Backend>& params, const typename Backend::Context& ctx = {}) {
  double sum = 0;
  for (const auto* p : params) sum += Backend::sum_squares(ctx, p->grad.numel(), p->grad.data());
  return std::sqrt(sum);
}

/// Clips the gradients of `params` to a total 2-norm of `max_norm` (torch's
/// clip_grad_norm_) and returns the norm before clipping with what was done.
/// max_norm = +inf only measures. Throws std::invalid_argument for a negative or NaN
/// max_norm, and std::runtime_error naming the parameter when `error_if_nonfinite` and a
/// gradient is not finite.
template <class T, class Backend>
ClipResult clip_grad_norm(const nn::ParameterList<T, Backend>& params, double max_norm,
                          const typename Backend::Context& ctx = {}, bool error_if_nonfinite = false) {
  if (!(max_norm >= 0.0))
    throw std::invalid_argument("addrop::train::clip_grad_norm: max_norm " + std::to_string(max_norm) +
                                " is not a non-negative number");
  ClipResult r;
  double sum = 0;
  for (const auto* p : params) {
    const double s = Backend::sum_squares(ctx, p->grad.numel(), p->grad.data());
    if (!std::isfinite(s) && r.first_nonfinite.empty()) r.first_nonfinite = p->name;
    sum += s;
  }
  r.total_norm = std::sqrt(sum);
  if (!std::isfinite(r.total_norm)) {
    r.finite = false;
    r.coefficient = 1;
    if (error_if_nonfinite)
      throw std::runtime_error("addrop::train::clip_grad_norm: the gradient norm is " + std::to_string(r.total_norm) +
                               (r.first_nonfinite.empty() ? std::string()
                                                          : "; first non-finite gradient: \"" + r.first_nonfinite + "\""));
    return r;
  }
  const double coef = max_norm / (r.total_norm + 1e-6);
  if (coef < 1.0) {
    r.coefficient = coef;
    r.clipped = true;
    for (auto* p : params) Backend::scale(ctx, p->grad.numel(), static_cast<T>(coef), p->grad.data());
  }
  return r;
}

/// The same with the backend context first (the order of the backend ops).
template <class T, class Backend>
ClipResult clip_grad_norm(const nn::ParameterList<T, Backend>& params, const typename Backend::Context& ctx,
                          double max_norm, bool error_if_nonfinite = false) {
  return clip_grad_norm(params, max_norm, ctx, error_if_nonfinite);
}

}  // namespace addrop::train
