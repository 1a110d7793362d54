// The expression language of YAML pipelines.
#include <sluice/expr.hpp>
#include <sluice/value.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>

using namespace sluice;
using namespace sluice::expr;

namespace {

// The values of `source` over `events`, whatever its result type, as Values to compare.
template <EventType X>
std::vector<Value> eval(std::string_view source, const std::vector<X>& events) {
  const Expression expression = Expression::compile(source, type_of<X>);
  return with_event_type(expression.type(), [&]<class R>(std::type_identity<R>) {
    const Values<R> values = expression.evaluate<R, X>(events);
    return std::vector<Value>(values.begin(), values.end());
  });
}

std::vector<std::int64_t> xs(std::initializer_list<std::int64_t> values) { return values; }
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
  CHECK(eval("x * x", xs({1, 2, 3})) == ints({1, 4, 9}));
  CHECK(eval("1 + 2 * x - -x % 4", xs({3})) == ints({1 + 6 - (-3 % 4)}));
  CHECK(eval("(1 + 2) * x", xs({2})) == ints({6}));
  CHECK(eval("x / 2", xs({7, -7})) == ints({3, -3}));
  CHECK(eval("x / 2.0", xs({7})) == std::vector<Value>{3.5});
  CHECK(eval("x + 0.5", std::vector<double>{1.0}) == std::vector<Value>{1.5});
}

TEST_CASE("a batch of the wrong event types is a programming error, not a silent conversion") {
  const Expression square = Expression::compile("x * x", Type::integer);
  const std::vector<double> floats{1.5};
  const std::vector<std::int64_t> ints{2};
  CHECK_THROWS_AS((square.evaluate<double, double>(floats)), std::logic_error);
  CHECK_THROWS_AS((square.evaluate<std::string, std::int64_t>(ints)), std::logic_error);
  CHECK((square.evaluate<std::int64_t, std::int64_t>(ints) == Values<std::int64_t>{4}));
}

TEST_CASE("comparisons, logic and the conditional; && and || do not evaluate what they skip") {
  CHECK(eval("x < 1000", xs({1, 999, 1000})) == ints({1, 1, 0}));
  CHECK(eval("x != 0 && 10 / x > 1", xs({0, 5, 20})) == ints({0, 1, 0}));
  CHECK(eval("x == 0 || 10 / x > 1", xs({0, 5, 20})) == ints({1, 1, 0}));
  CHECK(eval("x % 2 == 0 ? x / 2 : 3 * x + 1", xs({4, 5})) == ints({2, 16}));
  CHECK(eval("x > 1 ? 1 : 0.5", xs({2, 0})) == std::vector<Value>{1.0, 0.5});
  CHECK(eval("!(x > 1)", xs({1, 2})) == ints({1, 0}));
}

TEST_CASE("select keeps exactly the events whose flag evaluate gives, in order, on each of its paths") {
  // A comparison with a literal picks in one pass, reading the events as keys (x < 3) or an
  // evaluated operand (x * 2 < 10, str(x) == "4", a string key); any other boolean goes through
  // a column of flags (&&, a bare integer where nonzero holds).
  const std::vector<std::int64_t> events{5, 1, 4, -2, 0, 3, 8, 2};
  for (std::string_view source : {"x < 3", "x * 2 < 10", "x >= 4", "3 > x", "str(x) == \"4\"", "x % 2 == 0 && x > 0", "x"}) {
    CAPTURE(source);
    const Expression filter = Expression::compile(source, Type::integer);
    const Values<std::int64_t> flags = filter.evaluate<std::int64_t, std::int64_t>(events);
    std::vector<std::int64_t> expected;
    for (std::size_t i = 0; i < events.size(); ++i)
      if (flags[i] != 0) expected.push_back(events[i]);
    const Values<std::int64_t> kept = filter.select<std::int64_t>(events);
    CHECK(std::vector<std::int64_t>(kept.begin(), kept.end()) == expected);
  }
  // Floats: the events as keys, an integer literal converted once, the flags' path; integer
  // events against a float literal, keys converted.
  const std::vector<double> floats{2.0, 1.0, 1.5, std::nan("")};
  for (std::string_view source : {"x >= 1.5", "x < 2", "x != 1", "2.0 > x"}) {
    CAPTURE(source);
    const Expression filter = Expression::compile(source, Type::floating);
    const Values<std::int64_t> flags = filter.evaluate<std::int64_t, double>(floats);
    std::vector<double> expected;
    for (std::size_t i = 0; i < floats.size(); ++i)
      if (flags[i] != 0) expected.push_back(floats[i]);
    const Values<double> kept = filter.select<double>(floats);
    REQUIRE(kept.size() == expected.size());
    for (std::size_t i = 0; i < kept.size(); ++i) CHECK(std::memcmp(&kept[i], &expected[i], sizeof(double)) == 0);
  }
  const Values<double> at_least = Expression::compile("x >= 1.5", Type::floating).select<double>(floats);
  CHECK(std::vector<double>(at_least.begin(), at_least.end()) == std::vector<double>{2.0, 1.5});
  const Values<std::int64_t> below = Expression::compile("x < 1.5", Type::integer).select<std::int64_t>(events);
  CHECK(std::vector<std::int64_t>(below.begin(), below.end()) == std::vector<std::int64_t>{1, -2, 0});
}

TEST_CASE("select fails as evaluate does: an event that fails is named, and a non-boolean is a programming error") {
  const std::vector<std::int64_t> events{5, 0, 2};
  try {
    (void)Expression::compile("10 / x < 3", Type::integer).select<std::int64_t>(events);
    FAIL("no EvalError");
  } catch (const EvalError& error) {
    CHECK(error.index() == 1);
  }
  CHECK_THROWS_AS((void)Expression::compile("x * 2", Type::floating).select<double>(std::vector<double>{1.0}), std::logic_error);
  CHECK_THROWS_AS((void)Expression::compile("x < 3", Type::integer).select<double>(std::vector<double>{1.0}), std::logic_error);
}

TEST_CASE("strings: concatenation and every string function") {
  const std::vector<std::string> lines{"  Error: disk  ", "info"};
  CHECK(eval("trim(x)", lines) == std::vector<Value>{std::string("Error: disk"), std::string("info")});
  CHECK(eval("upper(x) + \"!\"", std::vector<std::string>{"ab"}) == std::vector<Value>{std::string("AB!")});
  CHECK(eval("lower(x)", std::vector<std::string>{"AbC"}) == std::vector<Value>{std::string("abc")});
  CHECK(eval("len(x)", lines) == ints({15, 4}));
  CHECK(eval("contains(x, \"Error\")", lines) == ints({1, 0}));
  CHECK(eval("starts_with(x, \"in\") || ends_with(x, \"  \")", lines) == ints({1, 1}));
}

TEST_CASE("conversions and numeric functions") {
  CHECK(eval("int(x)", std::vector<std::string>{" 42 "}) == ints({42}));
  CHECK(eval("float(x)", std::vector<std::string>{"2.5"}) == std::vector<Value>{2.5});
  CHECK(eval("str(x) + \"s\"", xs({3})) == std::vector<Value>{std::string("3s")});
  CHECK(eval("str(x / 4.0)", xs({1})) == std::vector<Value>{std::string("0.25")});
  CHECK(eval("int(x * 1.9)", xs({1})) == ints({1}));
  CHECK(eval("abs(x)", xs({-3, 3})) == ints({3, 3}));
  CHECK(eval("min(x, 10)", xs({3, 30})) == ints({3, 10}));
  CHECK(eval("max(x, 2.5)", xs({3})) == std::vector<Value>{3.0});
}

TEST_CASE("integer overflow and division by zero are errors naming the event, never silent") {
  auto failure = [](std::string_view source, std::vector<std::int64_t> events) -> std::string {
    try {
      eval(source, events);
    } catch (const EvalError& error) {
      return std::to_string(error.index()) + ": " + error.what();
    }
    return "no error";
  };
  CHECK(failure("x * x", xs({2, 3037000500, 4})) == "1: integer overflow in *");
  CHECK(failure("100 / (x - 3)", xs({1, 2, 3})) == "2: division by zero");
  CHECK(failure("x % 0", xs({5})) == "0: modulo by zero");
  CHECK(failure("-x", xs({std::numeric_limits<std::int64_t>::min()})) == "0: integer overflow in unary -");
  CHECK(failure("x + 1", xs({std::numeric_limits<std::int64_t>::max()})) == "0: integer overflow in +");
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

// The parser recurses per nested sub-expression and the tree is walked recursively: a bad or
// hostile expression must get an error, never overflow the stack.
TEST_CASE("nesting and length are bounded: a clear error instead of a stack overflow") {
  auto nested = [](std::size_t levels, std::string_view open, std::string_view close) {
    std::string text;
    for (std::size_t i = 0; i < levels; ++i) text += open;
    text += "x";
    for (std::size_t i = 0; i < levels; ++i) text += close;
    return text;
  };
  CHECK(eval(nested(99, "(", ")"), xs({7})) == ints({7}));
  CHECK(error_of(nested(100, "(", ")")) == "100: the expression nests deeper than 100 levels");
  CHECK(eval(nested(99, "-", ""), xs({7})) == ints({-7}));
  CHECK(error_of(nested(100, "-", "")) == "100: the expression nests deeper than 100 levels");
  CHECK(error_of(nested(60, "(true ? ", " : 0)")).ends_with("the expression nests deeper than 100 levels"));

  // A chain of 2048 terms (4095 tokens) builds a tree 2047 deep.
  std::string chain = "x";
  for (int i = 1; i < 2048; ++i) chain += "+x";
  CHECK(eval(chain, xs({1, 3})) == ints({2048, 3 * 2048}));
  CHECK(eval("-" + chain, xs({1})) == ints({2046}));  // 4096 tokens: the most there may be
  CHECK(error_of(chain + "+x") == "4096: the expression is too long: more than 4096 tokens");
}
