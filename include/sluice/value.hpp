#pragma once
// The events of YAML-described pipelines: an int64, a double or a string. Each edge of a
// pipeline carries one of the three (its batches are vectors of it); Value holds any of them
// where one place meets them all, as in error messages.
#include <charconv>
#include <cstdint>
#include <string>
#include <variant>

namespace sluice {

using Value = std::variant<std::int64_t, double, std::string>;

// Integers in decimal, doubles in the shortest form that round-trips, strings as they are.
inline void append_value(std::string& out, std::int64_t value) {
  char digits[24];
  out.append(digits, std::to_chars(digits, digits + sizeof digits, value).ptr);
}
inline void append_value(std::string& out, double value) {
  char digits[32];
  out.append(digits, std::to_chars(digits, digits + sizeof digits, value).ptr);
}
inline void append_value(std::string& out, const std::string& value) { out += value; }
inline void append_value(std::string& out, const Value& value) {
  std::visit([&out](const auto& held) { append_value(out, held); }, value);
}

inline std::string to_string(const Value& value) {
  std::string text;
  append_value(text, value);
  return text;
}

}  // namespace sluice
