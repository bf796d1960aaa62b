#pragma once
// The AD-DROP policies a golden fixture's metadata describes: integrated gradients' m and
// target (fixed pseudo label or the reference's per-step argmax), TopP's side.
#include <map>
#include <string>
#include <type_traits>

#include <addrop/ad_drop.hpp>

namespace addrop::testing {

template <class Attr>
Attr attribution_for(const std::map<std::string, std::string>& meta) {
  if constexpr (std::is_same_v<Attr, attribution::IntegratedGradients>)
    return Attr({.steps = std::stoi(meta.at("steps")),
                 .per_step_argmax = meta.count("iga_target") && meta.at("iga_target") == "per-step"});
  else
    return Attr{};
}

template <class Sel>
Sel selection_for(const std::map<std::string, std::string>& meta) {
  if constexpr (std::is_same_v<Sel, selection::TopP>)
    return selection::TopP(meta.at("side") == "low" ? Side::Low : Side::High);
  else
    return Sel{};
}

}  // namespace addrop::testing
