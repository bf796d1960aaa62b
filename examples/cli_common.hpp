#pragma once
// What every example program's command line (CLI11) shares: a bad value is named with its
// flag, "FLAG VALUE: RULE" (require), and a value that is not a number of the option's kind
// is refused in the same words everywhere ("--steps: \"1.5\" is not a whole number").
#include <CLI/CLI.hpp>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <stdexcept>
#include <string>
#include <system_error>
#include <type_traits>

namespace addrop_examples {

inline std::string number_name(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

/// Throws "FLAG VALUE: RULE" unless `ok`: each flag is checked on its own, so that the
/// message names the one at fault and what the user gave it.
template <class T>
void require(bool ok, const std::string& flag, T value, const std::string& rule) {
  if (ok) return;
  std::string text;
  if constexpr (std::is_floating_point_v<T>) text = number_name(value);
  else text = std::to_string(value);
  throw std::invalid_argument(flag + " " + text + ": " + rule);
}

namespace cli_detail {

/// True when all of `text` is one number (strtod's forms: 0.5, 1e-3, inf, ...).
inline bool parse_double(const std::string& text, double& value) {
  if (text.empty()) return false;
  char* end = nullptr;
  value = std::strtod(text.c_str(), &end);
  return end == text.c_str() + text.size();
}

}  // namespace cli_detail

/// For an option of integer type T (add it with ->transform): refuses "abc" ("is not a
/// number"), "1.5" ("is not a whole number"), "-1" for an unsigned T and what T cannot
/// hold; the value goes on in decimal digits (so 010 is ten, and 1e3 a thousand).
template <class T>
CLI::Validator whole_number() {
  static_assert(std::is_integral_v<T>);
  return CLI::Validator(
      [](std::string& text) -> std::string {
        const std::string quoted = "\"" + text + "\"";
        T value{};
        const char* end = text.data() + text.size();
        const auto [ptr, ec] = std::from_chars(text.data(), end, value);
        if (ec == std::errc::result_out_of_range) return quoted + " is out of range";
        if (ec != std::errc() || ptr != end) {  // not plain digits: 1e3, 100.0, 1.5, -1 (unsigned), abc
          double x = 0;
          if (!cli_detail::parse_double(text, x)) return quoted + " is not a number";
          if (!std::isfinite(x) || x != std::floor(x)) return quoted + " is not a whole number";
          if (std::is_unsigned_v<T> && x < 0) return quoted + " is not a whole number, 0 or more";
          const double limit = std::ldexp(1.0, std::numeric_limits<T>::digits);  // T holds [-limit or 0, limit)
          if (x >= limit || (std::is_signed_v<T> && x < -limit)) return quoted + " is out of range";
          value = static_cast<T>(x);
        }
        text = std::to_string(value);
        return {};
      },
      std::string());
}

/// For a floating-point option: refuses a value that is not one number ("is not a number").
/// --precision: the matrix products' precision (addrop/backend/precision.hpp).
inline void add_precision_flag(CLI::App& app, std::string& precision) {
  app.add_option("--precision", precision,
                 "f32, or bf16: mixed precision as torch.autocast (bf16 matrix-product inputs, float32 "
                 "accumulation, weights and everything else)")
      ->check(CLI::IsMember({"f32", "bf16"}));
}

inline CLI::Validator number() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        double x = 0;
        return cli_detail::parse_double(text, x) ? std::string() : "\"" + text + "\" is not a number";
      },
      std::string());
}

}  // namespace addrop_examples
