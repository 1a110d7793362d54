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
#include <sluice/detail/batch.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace sluice::expr {

enum class Type { integer, floating, string, boolean };
std::string_view type_name(Type type);

// The C++ types of events: integers (booleans too, as 0 and 1), floats and strings. A YAML
// pipeline knows each edge's type when it loads, so its batches are plain vectors of these,
// which an expression reads and writes as columns without conversion.
template <class T>
concept EventType = std::is_same_v<T, std::int64_t> || std::is_same_v<T, double> || std::is_same_v<T, std::string>;

// A column of values, as an expression gives them: a vector that a node grows without
// zero-filling first (it writes every slot), and the very type of a batch, so that a stage can
// send it on as one.
template <EventType T>
using Values = detail::Batch<T>;

// The Type whose values an EventType holds (booleans share integer's).
template <EventType T>
constexpr Type type_of = std::is_same_v<T, std::int64_t> ? Type::integer : std::is_same_v<T, double> ? Type::floating : Type::string;

// Calls f(std::type_identity<T>{}), T being the EventType of `type`'s values.
template <class F>
decltype(auto) with_event_type(Type type, F&& f) {
  switch (type) {
    case Type::floating: return f(std::type_identity<double>{});
    case Type::string: return f(std::type_identity<std::string>{});
    case Type::integer:
    case Type::boolean: break;
  }
  return f(std::type_identity<std::int64_t>{});
}

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

  // The value of the expression for each event of `events`. X is the EventType of the x type
  // it was compiled for, R that of its result type (a boolean gives 1 where it holds, else 0);
  // others throw std::logic_error. Throws EvalError naming an event that failed: each operand is
  // evaluated over the whole batch before the next, so not always the first one in the batch.
  template <EventType R, EventType X>
  Values<R> evaluate(std::span<const X> events) const;

  // The events for which the expression holds (a boolean, or an integer where nonzero holds), in
  // order: a filter of integers or floats. A comparison with a literal picks them in one pass,
  // with no column of flags in between. Throws as evaluate does.
  template <EventType X>
    requires std::is_trivially_copyable_v<X>
  Values<X> select(std::span<const X> events) const;

 private:
  Expression(std::shared_ptr<const Node> root, Type type, Type x_type, std::string source)
      : root_(std::move(root)), type_(type), x_type_(x_type), source_(std::move(source)) {}
  std::shared_ptr<const Node> root_;
  Type type_;
  Type x_type_;
  std::string source_;
};

}  // namespace sluice::expr
