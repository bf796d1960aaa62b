#pragma once
// Arithmetic precision of a backend context's matrix products.
//
// Bf16Mixed is torch.autocast(dtype=torch.bfloat16)'s split: every matrix product (linear
// layers, both attention products, the output layer, forward and backward) reads its two
// inputs rounded to bfloat16 and accumulates in float32; weights, gradients, optimizer
// state, softmax, layer norm, activations, losses and reductions stay float32. bf16 keeps
// float32's exponent range, so no loss scaling is needed (unlike float16). Only float
// products change: float64 (gradchecks) always computes exactly in float64.
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>

namespace addrop {

enum class Precision : std::uint8_t {
  F32,        ///< float32 (or the element type's own) products
  Bf16Mixed,  ///< bfloat16 inputs, float32 accumulation and output
};

/// "f32" / "bf16": the names used by --precision and in benchmark case names.
inline constexpr std::string_view precision_name(Precision p) { return p == Precision::F32 ? "f32" : "bf16"; }

/// Parses "f32" or "bf16"; `what` names the flag or field in the error.
inline Precision parse_precision(std::string_view text, std::string_view what = "precision") {
  if (text == "f32" || text == "fp32" || text == "float32") return Precision::F32;
  if (text == "bf16" || text == "bfloat16") return Precision::Bf16Mixed;
  throw std::invalid_argument(std::string(what) + ": '" + std::string(text) + "' is not a precision (f32 or bf16)");
}

/// Throws unless a model of element type T can run in ctx's precision: Bf16Mixed mixes
/// bf16 into float32 products, so it needs T = float (float64 models compute exactly).
/// Contexts without a `precision` member (other backends) always pass.
template <class T, class Context>
void check_precision_for(const Context& ctx, std::string_view who) {
  if constexpr (requires { ctx.precision; })
    if (!std::is_same_v<T, float> && ctx.precision != Precision::F32)
      throw std::invalid_argument(std::string(who) + ": precision " + std::string(precision_name(ctx.precision)) +
                                  " mixes bf16 into float32 products; a float64 model computes in float64 only");
}

}  // namespace addrop
