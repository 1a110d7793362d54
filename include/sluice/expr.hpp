#pragma once
// The expression language of YAML pipelines: a small language over the event `x`.
//
//   literals   42, 2.5, "text"
//   operators  + - * / %  == != < <= > >=  && || !  unary -  ( )  cond ? a : b
//              (+ also concatenates strings)
//   functions  len contains starts_with ends_with upper lower trim int float str abs min max
//
// An expression is parsed and type-checked once, against the type of `x`, and then evaluated a
// whole batch at a time: every node of the expression runs over the batch's column of values
// before the next node, not one event at a time through a tree walk. Integer overflow and
// division by zero are errors, never silent.
#include <sluice/value.hpp>

#include <cstddef>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::expr {

enum class Type { integer, floating, string, boolean };
std::string_view type_name(Type type);

// A parse or type error, at a 0-based column of the expression's source.
class SyntaxError : public std::runtime_error {
 public:
  SyntaxError(std::size_t column, const std::string& message) : std::runtime_error(message), column_(column) {}
  std::size_t column() const noexcept { return column_; }

 private:
  std::size_t column_;
};

// An evaluation error (overflow, division by zero, a bad conversion) on one event of a batch.
class EvalError : public std::runtime_error {
 public:
  EvalError(std::size_t index, const std::string& message) : std::runtime_error(message), index_(index) {}
  std::size_t index() const noexcept { return index_; }  // of the failing event in the batch

 private:
  std::size_t index_;
};

class Node;

class Expression {
 public:
  // Throws SyntaxError. The event is named `variable` (x, or i for generated indices).
  static Expression compile(std::string_view source, Type x_type, std::string_view variable = "x");

  Type type() const noexcept { return type_; }
  Type x_type() const noexcept { return x_type_; }
  const std::string& source() const noexcept { return source_; }

  // The value of the expression for each event of `events` (all of the x type it was compiled
  // for). Throws EvalError naming the first event that failed.
  std::vector<Value> evaluate(std::span<const Value> events) const;
  // For boolean expressions: which events it holds for.
  std::vector<bool> test(std::span<const Value> events) const;

 private:
  Expression(std::shared_ptr<const Node> root, Type type, Type x_type, std::string source)
      : root_(std::move(root)), type_(type), x_type_(x_type), source_(std::move(source)) {}
  std::shared_ptr<const Node> root_;
  Type type_;
  Type x_type_;
  std::string source_;
};

}  // namespace sluice::expr
