#pragma once
// What a model holds per attention site for AD-DROP and integrated gradients, and how a
// forward applies it to the site's activations: the additive mask (set_attention_mask),
// the scale of A in the product with V (set_attention_scale) and the per-example scales of
// stacked IG copies (set_attention_example_scales). Shared by every model of models/.
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>

#include "../nn/attention.hpp"
#include "../tensor.hpp"

namespace addrop::models {

template <class T, class Backend>
struct SiteSettings {
  const Tensor<T, Backend>* mask = nullptr;  ///< additive [B, H, Lq, Lk], or none
  T alpha = T(1);
  std::span<const T> example_alpha;  ///< one per example of the batch, or empty

  /// Sets the activations' scales for a pass over a [B, H, Lq, Lk] site and returns the
  /// additive mask's data (null without one). Throws, naming `what` ("layer 3", "site 5"),
  /// when the mask or the per-example scales do not fit the batch.
  const T* apply(const std::string& what, int64_t B, int64_t H, int64_t Lq, int64_t Lk,
                 nn::AttentionActivations<T, Backend>& a) const {
    a.alpha = alpha;
    if (!example_alpha.empty() && static_cast<int64_t>(example_alpha.size()) != B)
      throw std::invalid_argument("per-example attention scales of " + what + ": " + std::to_string(example_alpha.size()) +
                                  " values for a batch of " + std::to_string(B));
    a.example_alpha = example_alpha.empty() ? nullptr : example_alpha.data();
    a.has_probs_grad = false;
    if (mask && !(mask->shape() == Shape{B, H, Lq, Lk}))
      throw std::invalid_argument("attention mask of " + what + " has shape " + mask->shape().str() + ", expected " +
                                  Shape{B, H, Lq, Lk}.str());
    return mask ? mask->data() : nullptr;
  }
};

}  // namespace addrop::models
