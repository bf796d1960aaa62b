#pragma once
// AdamW with decoupled weight decay, in the two variants docs/algorithm.md names:
//   HuggingFace (default, the reference's): transformers' AdamW, eps inside the bias-corrected step;
//   Torch: torch.optim.AdamW.
// No weight decay on biases and LayerNorm weights (Parameter::decays()).
// The moments and the step count are reachable (exp_avg, exp_avg_sq, steps) so that
// train/optimizer_state.hpp can save and restore them for resuming a run.
#include <cstdint>
#include <vector>

#include "../nn/parameter.hpp"

namespace addrop::train {

enum class AdamWVariant { HuggingFace, Torch };

struct AdamWOptions {
  double lr = 2e-5;
  double beta1 = 0.9, beta2 = 0.999;
  double eps = 1e-6;  ///< transformers' default; torch.optim uses 1e-8
  double weight_decay = 0.01;
  AdamWVariant variant = AdamWVariant::HuggingFace;
};

template <class T, class Backend>
class AdamW {
 public:
  using Context = typename Backend::Context;

  AdamW(const nn::ParameterList<T, Backend>& params, AdamWOptions options, Context ctx = {})
      : params_(params), options_(options), ctx_(ctx), m_(params.size()), v_(params.size()) {
    for (std::size_t i = 0; i < params_.size(); ++i) {
      m_[i].resize(params_[i]->value.shape());
      v_[i].resize(params_[i]->value.shape());
      Backend::fill(ctx_, m_[i].numel(), T(0), m_[i].data());
      Backend::fill(ctx_, v_[i].numel(), T(0), v_[i].data());
    }
  }

  /// Applies one update from the gradients held in the parameters.
  void step() {
    ++t_;
    for (std::size_t i = 0; i < params_.size(); ++i) {
      auto& p = *params_[i];
      const double wd = p.decays() ? options_.weight_decay : 0.0;
      Backend::adamw_update(ctx_, p.value.numel(), p.value.data(), p.grad.data(), m_[i].data(), v_[i].data(),
                            options_.lr, options_.beta1, options_.beta2, options_.eps, wd, t_,
                            options_.variant == AdamWVariant::HuggingFace);
    }
  }

  void set_lr(double lr) { options_.lr = lr; }
  const AdamWOptions& options() const { return options_; }
  void set_options(const AdamWOptions& options) { options_ = options; }
  /// Updates taken so far (t of the bias corrections; the next step uses t + 1).
  int64_t steps() const { return t_; }

  // ---- state, for saving and resuming (train/optimizer_state.hpp)
  /// The parameters, in the order the moments are kept.
  const nn::ParameterList<T, Backend>& parameters() const { return params_; }
  std::size_t size() const { return params_.size(); }
  /// First moment (torch's exp_avg) of parameter i, same shape as it; backend memory.
  Tensor<T, Backend>& exp_avg(std::size_t i) { return m_.at(i); }
  const Tensor<T, Backend>& exp_avg(std::size_t i) const { return m_.at(i); }
  /// Second moment (torch's exp_avg_sq) of parameter i.
  Tensor<T, Backend>& exp_avg_sq(std::size_t i) { return v_.at(i); }
  const Tensor<T, Backend>& exp_avg_sq(std::size_t i) const { return v_.at(i); }
  /// Sets the step count (after restoring the moments).
  void set_steps(int64_t t) { t_ = t; }
  const Context& context() const { return ctx_; }

 private:
  nn::ParameterList<T, Backend> params_;
  AdamWOptions options_;
  Context ctx_;
  std::vector<Tensor<T, Backend>> m_, v_;
  int64_t t_ = 0;
};

}  // namespace addrop::train
