#pragma once
// The attention-site contract (docs/architecture.md): what a model must offer for AD-DROP to
// regularize it. The library's EncoderModel satisfies it; a trainer with its own
// transformer can implement these members and use the AD-DROP policies unchanged.
#include <concepts>

#include "batch.hpp"
#include "passes.hpp"

namespace addrop::models {

template <class M>
concept AttentionSiteModel = requires(M m, const M cm, int layer, const typename M::TensorT* mask,
                                      typename M::value_type alpha, const Batch& batch, BackwardOptions opt) {
  typename M::value_type;
  typename M::backend_type;
  { cm.num_layers() } -> std::convertible_to<int>;
  m.set_attention_mask(layer, mask);             // (a) additive mask per target layer
  m.set_attention_scale(layer, alpha);           // (b) scale A_l by alpha
  cm.attention_probs(layer);                     // (c) A_l after a forward
  cm.attention_probs_grad(layer);                //     d/dA_l after a backward
  m.forward(batch);
  m.logits_grad();                               //     the objective's gradient, set by the caller
  m.backward(opt);                               // (d) may stop at a layer and skip weight gradients
};

}  // namespace addrop::models
