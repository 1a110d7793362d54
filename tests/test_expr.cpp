// The expression language of YAML pipelines.
#include <sluice/expr.hpp>

#include <doctest/doctest.h>

#include <limits>

using namespace sluice;
using namespace sluice::expr;

namespace {

std::vector<Value> eval(std::string_view source, std::vector<Value> events, Type x = Type::integer) {
  return Expression::compile(source, x).evaluate(events);
}

std::vector<Value> ints(std::initializer_list<std::int64_t> values) { return {values.begin(), values.end()}; }

std::string error_of(std::string_view source, Type x = Type::integer) {
  try {
    Expression::compile(source, x);
  } catch (const SyntaxError& error) {
    return std::to_string(error.column()) + ": " + error.what();
  }
  return "no error";
}

}  // namespace

TEST_CASE("arithmetic and precedence over a whole batch") {
  CHECK(eval("x * x", ints({1, 2, 3})) == ints({1, 4, 9}));
  CHECK(eval("1 + 2 * x - -x % 4", ints({3})) == ints({1 + 6 - (-3 % 4)}));
  CHECK(eval("(1 + 2) * x", ints({2})) == ints({6}));
  CHECK(eval("x / 2", ints({7, -7})) == ints({3, -3}));
  CHECK(eval("x / 2.0", ints({7})) == std::vector<Value>{3.5});
  CHECK(eval("x + 0.5", {Value(1.0)}, Type::floating) == std::vector<Value>{1.5});
}

TEST_CASE("comparisons, logic and the conditional; && and || do not evaluate what they skip") {
  CHECK(Expression::compile("x < 1000", Type::integer).test(ints({1, 999, 1000})) == std::vector<bool>{true, true, false});
  CHECK(Expression::compile("x != 0 && 10 / x > 1", Type::integer).test(ints({0, 5, 20})) == std::vector<bool>{false, true, false});
  CHECK(Expression::compile("x == 0 || 10 / x > 1", Type::integer).test(ints({0, 5, 20})) == std::vector<bool>{true, true, false});
  CHECK(eval("x % 2 == 0 ? x / 2 : 3 * x + 1", ints({4, 5})) == ints({2, 16}));
  CHECK(eval("x > 1 ? 1 : 0.5", ints({2, 0})) == std::vector<Value>{1.0, 0.5});
  CHECK(Expression::compile("!(x > 1)", Type::integer).test(ints({1, 2})) == std::vector<bool>{true, false});
}

TEST_CASE("strings: concatenation and every string function") {
  std::vector<Value> lines{std::string("  Error: disk  "), std::string("info")};
  CHECK(eval("trim(x)", lines, Type::string) == std::vector<Value>{std::string("Error: disk"), std::string("info")});
  CHECK(eval("upper(x) + \"!\"", {Value(std::string("ab"))}, Type::string) == std::vector<Value>{std::string("AB!")});
  CHECK(eval("lower(x)", {Value(std::string("AbC"))}, Type::string) == std::vector<Value>{std::string("abc")});
  CHECK(eval("len(x)", lines, Type::string) == ints({15, 4}));
  CHECK(Expression::compile("contains(x, \"Error\")", Type::string).test(lines) == std::vector<bool>{true, false});
  CHECK(Expression::compile("starts_with(x, \"in\") || ends_with(x, \"  \")", Type::string).test(lines) == std::vector<bool>{true, true});
}

TEST_CASE("conversions and numeric functions") {
  CHECK(eval("int(x)", {Value(std::string(" 42 "))}, Type::string) == ints({42}));
  CHECK(eval("float(x)", {Value(std::string("2.5"))}, Type::string) == std::vector<Value>{2.5});
  CHECK(eval("str(x) + \"s\"", ints({3})) == std::vector<Value>{std::string("3s")});
  CHECK(eval("str(x / 4.0)", ints({1})) == std::vector<Value>{std::string("0.25")});
  CHECK(eval("int(x * 1.9)", ints({1})) == ints({1}));
  CHECK(eval("abs(x)", ints({-3, 3})) == ints({3, 3}));
  CHECK(eval("min(x, 10)", ints({3, 30})) == ints({3, 10}));
  CHECK(eval("max(x, 2.5)", ints({3})) == std::vector<Value>{3.0});
}

TEST_CASE("integer overflow and division by zero are errors naming the event, never silent") {
  auto failure = [](std::string_view source, std::vector<Value> events) -> std::string {
    try {
      Expression::compile(source, Type::integer).evaluate(events);
    } catch (const EvalError& error) {
      return std::to_string(error.index()) + ": " + error.what();
    }
    return "no error";
  };
  CHECK(failure("x * x", ints({2, 3037000500, 4})) == "1: integer overflow in *");
  CHECK(failure("100 / (x - 3)", ints({1, 2, 3})) == "2: division by zero");
  CHECK(failure("x % 0", ints({5})) == "0: modulo by zero");
  CHECK(failure("-x", ints({std::numeric_limits<std::int64_t>::min()})) == "0: integer overflow in unary -");
  CHECK(failure("x + 1", ints({std::numeric_limits<std::int64_t>::max()})) == "0: integer overflow in +");
}

TEST_CASE("parse and type errors point at the column inside the expression") {
  CHECK(error_of("x * ") == "4: expected a value, found the end");
  CHECK(error_of("x + \"a\"") == "2: '+' needs numbers or two strings, got an integer and a string");
  CHECK(error_of("uper(x)", Type::string) == "0: unknown function 'uper'; did you mean 'upper'?");
  CHECK(error_of("y + 1") == "0: unknown name 'y' (the event is x)");
  CHECK(error_of("x > 1 ? 1 : \"no\"") == "6: the branches of '?' differ: integer and string");
  CHECK(error_of("len(x)") == "4: len() needs a string, got an integer");
  CHECK(error_of("(x + 1") == "6: expected ')', found the end");
  CHECK(error_of("x # 2") == "2: unexpected character '#'");
}
