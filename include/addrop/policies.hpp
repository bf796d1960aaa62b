#pragma once
// Policies chosen by name at run time (command lines, configuration files): builds the
// AdDrop<Attribution, Selection, Schedule> the names describe and hands it to a callable.
//
//   addrop::PolicyNames names{.attribution = "iga", .side = "high", .schedule = "cross"};
//   auto result = addrop::with_regulariser(names, options, [&](auto& regulariser) {
//     return train(model, regulariser);   // one instantiation per policy combination
//   });
//
// "none" is plain fine-tuning (AdDrop never runs); "rd" is attribution::None with
// selection::Random. Every other name pairs its attribution with selection::TopP.
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "ad_drop.hpp"

namespace addrop {

struct PolicyNames {
  std::string attribution = "ga";  ///< one of attribution_names()
  std::string side = "high";       ///< one of side_names(): TopP's side
  std::string schedule = "cross";  ///< one of schedule_names()
  attribution::IntegratedGradientsOptions integrated_gradients{};  ///< for "iga"
};

inline const std::vector<std::string>& attribution_names() {
  static const std::vector<std::string> names{"none", "ga", "iga", "aa", "rd"};
  return names;
}
inline const std::vector<std::string>& side_names() {
  static const std::vector<std::string> names{"high", "low"};
  return names;
}
inline const std::vector<std::string>& schedule_names() {
  static const std::vector<std::string> names{"cross", "always", "never"};
  return names;
}

/// Throws std::invalid_argument naming the PolicyNames field whose value is not known.
inline void validate(const PolicyNames& names) {
  auto check = [](const char* field, const std::string& value, const std::vector<std::string>& known) {
    for (const auto& k : known)
      if (k == value) return;
    std::string list;
    for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
    throw std::invalid_argument(std::string("PolicyNames::") + field + ": \"" + value + "\" is not one of " + list);
  };
  check("attribution", names.attribution, attribution_names());
  check("side", names.side, side_names());
  check("schedule", names.schedule, schedule_names());
}

/// Calls f(regulariser) with the AdDrop that `names` describe, built with `options`, and
/// returns what f returns (f must return the same type for every policy combination).
template <class F>
std::invoke_result_t<F, AdDrop<>&> with_regulariser(const PolicyNames& names, const AdDropOptions& options, F&& f) {
  validate(names);
  const selection::TopP top_p(names.side == "low" ? Side::Low : Side::High);
  auto with_schedule = [&]<class Attribution, class Selection>(Attribution attribution, Selection selection) {
    if (names.schedule == "always") {
      AdDrop<Attribution, Selection, schedule::Always> regulariser(options, attribution, selection);
      return f(regulariser);
    }
    if (names.schedule == "never") {
      AdDrop<Attribution, Selection, schedule::Never> regulariser(options, attribution, selection);
      return f(regulariser);
    }
    AdDrop<Attribution, Selection, schedule::CrossTuning> regulariser(options, attribution, selection);
    return f(regulariser);
  };
  if (names.attribution == "none") {
    AdDrop<attribution::Gradient, selection::TopP, schedule::Never> regulariser(options);
    return f(regulariser);
  }
  if (names.attribution == "iga")
    return with_schedule(attribution::IntegratedGradients(names.integrated_gradients), top_p);
  if (names.attribution == "aa") return with_schedule(attribution::Attention{}, top_p);
  if (names.attribution == "rd") return with_schedule(attribution::None{}, selection::Random{});
  return with_schedule(attribution::Gradient{}, top_p);
}

}  // namespace addrop
