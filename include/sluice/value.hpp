#pragma once
// The event type of YAML-described pipelines: an int64, a double or a string.
#include <charconv>
#include <cstdint>
#include <string>
#include <variant>

namespace sluice {

using Value = std::variant<std::int64_t, double, std::string>;

// Integers in decimal, doubles in the shortest form that round-trips, strings as they are.
inline void append_value(std::string& out, const Value& value) {
  char digits[32];
  if (const auto* i = std::get_if<std::int64_t>(&value)) {
    out.append(digits, std::to_chars(digits, digits + sizeof digits, *i).ptr);
  } else if (const auto* d = std::get_if<double>(&value)) {
    out.append(digits, std::to_chars(digits, digits + sizeof digits, *d).ptr);
  } else {
    out += std::get<std::string>(value);
  }
}

inline std::string to_string(const Value& value) {
  std::string text;
  append_value(text, value);
  return text;
}

}  // namespace sluice
