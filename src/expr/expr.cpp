// The expression language: a lexer, a precedence-climbing parser that type-checks as it builds,
// and nodes that each evaluate a whole column (one value per event of the batch) at a time.
#include <sluice/detail/compact.hpp>
#include <sluice/expr.hpp>
#include <sluice/value.hpp>

#include "suggest.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <functional>
#include <limits>
#include <optional>

namespace sluice::expr {

std::string_view type_name(Type type) {
  switch (type) {
    case Type::integer: return "integer";
    case Type::floating: return "float";
    case Type::string: return "string";
    case Type::boolean: return "boolean";
  }
  return "?";
}

namespace {

// "an integer", "a float", ...: for messages.
std::string a(Type type) { return (type == Type::integer ? "an " : "a ") + std::string(type_name(type)); }

// --- columns ---------------------------------------------------------------------------------

// One value per event. Integers and booleans (0/1) share `ints`.
struct Column {
  Type type = Type::integer;
  Values<std::int64_t> ints;
  Values<double> floats;
  Values<std::string> strings;

  std::size_t size() const {
    switch (type) {
      case Type::floating: return floats.size();
      case Type::string: return strings.size();
      default: return ints.size();
    }
  }
  void resize(std::size_t n) {
    switch (type) {
      case Type::floating: floats.resize(n); break;
      case Type::string: strings.resize(n); break;
      default: ints.resize(n);
    }
  }
};

// The rows of `column` listed in `rows`, as a column of their own.
Column gather(const Column& column, const std::vector<std::size_t>& rows) {
  Column out{column.type, {}, {}, {}};
  out.resize(rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    switch (column.type) {
      case Type::floating: out.floats[i] = column.floats[rows[i]]; break;
      case Type::string: out.strings[i] = column.strings[rows[i]]; break;
      default: out.ints[i] = column.ints[rows[i]];
    }
  }
  return out;
}

void scatter(const Column& part, const std::vector<std::size_t>& rows, Column& out) {
  for (std::size_t i = 0; i < rows.size(); ++i) {
    switch (out.type) {
      case Type::floating: out.floats[rows[i]] = part.floats[i]; break;
      case Type::string: out.strings[rows[i]] = part.strings[i]; break;
      default: out.ints[rows[i]] = part.ints[i];
    }
  }
}

}  // namespace

// --- nodes -----------------------------------------------------------------------------------

class Node {
 public:
  Node(Type type, std::size_t column, bool is_event = false) : type_(type), column_(column), is_event_(is_event) {}
  virtual ~Node() = default;
  Type type() const noexcept { return type_; }
  std::size_t column() const noexcept { return column_; }
  // The event x itself (XNode). A flag, not a dynamic_cast: operands are looked up on every batch.
  bool is_event() const noexcept { return is_event_; }
  // Evaluates over every row of `x`; an EvalError's index is a row of `x`.
  virtual Column eval(const Column& x) const = 0;
  // A boolean node that can pick the events it holds for in one pass, with no column of flags
  // (Expression::select), sets `kept` to them and returns true; others return false.
  virtual bool select(std::span<const std::int64_t>, Values<std::int64_t>&) const { return false; }
  virtual bool select(std::span<const double>, Values<double>&) const { return false; }

 private:
  Type type_;
  std::size_t column_;  // where in the source, for messages
  bool is_event_;
};

namespace {

using NodePtr = std::shared_ptr<const Node>;

// The events of a batch as the column `x`: a copy, since a failing event must stay in the batch
// for on_error.
template <EventType X>
Column column_of(std::span<const X> events) {
  Column x{type_of<X>, {}, {}, {}};
  if constexpr (std::is_same_v<X, std::int64_t>) x.ints.assign(events.begin(), events.end());
  if constexpr (std::is_same_v<X, double>) x.floats.assign(events.begin(), events.end());
  if constexpr (std::is_same_v<X, std::string>) x.strings.assign(events.begin(), events.end());
  return x;
}

class XNode final : public Node {
 public:
  XNode(Type type, std::size_t column) : Node(type, column, true) {}
  Column eval(const Column& x) const override { return x; }
};

// The column of `node` over `x`: x itself for the event (no copy), else evaluated into `storage`.
const Column& operand(const NodePtr& node, const Column& x, Column& storage) {
  if (node->is_event()) return x;
  storage = node->eval(x);
  return storage;
}

class Literal final : public Node {
 public:
  Literal(Type type, std::size_t column, Value value) : Node(type, column), value_(std::move(value)) {}
  Column eval(const Column& x) const override {
    Column out{type(), {}, {}, {}};
    const std::size_t n = x.size();
    if (const auto* i = std::get_if<std::int64_t>(&value_)) out.ints.assign(n, *i);
    if (const auto* d = std::get_if<double>(&value_)) out.floats.assign(n, *d);
    if (const auto* s = std::get_if<std::string>(&value_)) out.strings.assign(n, *s);
    return out;
  }
  const Value& value() const noexcept { return value_; }

 private:
  Value value_;
};

// Applies a kernel to one evaluated argument: unary operators, functions and conversions. The
// kernel is either `op(in, out)` over whole columns, or `op(row, in, out)`, which writes row
// `row` of `out` and is inlined into a loop over the column: one indirect call a column.
class Map1 final : public Node {
 public:
  using Op = std::function<void(const Column&, Column&)>;
  template <class Kernel>
  Map1(Type type, std::size_t column, NodePtr arg, Kernel kernel) : Node(type, column), arg_(std::move(arg)) {
    if constexpr (std::is_invocable_v<Kernel&, const Column&, Column&>) {
      op_ = kernel;
    } else {
      op_ = [kernel](const Column& in, Column& out) {
        const std::size_t rows = in.size();
        for (std::size_t row = 0; row < rows; ++row) kernel(row, in, out);
      };
    }
  }
  Column eval(const Column& x) const override {
    Column storage;
    const Column& in = operand(arg_, x, storage);
    Column out{type(), {}, {}, {}};
    out.resize(in.size());
    op_(in, out);
    return out;
  }

 private:
  NodePtr arg_;
  Op op_;
};

// As Map1, with two arguments.
class Map2 final : public Node {
 public:
  using Op = std::function<void(const Column&, const Column&, Column&)>;
  template <class Kernel>
  Map2(Type type, std::size_t column, NodePtr left, NodePtr right, Kernel kernel)
      : Node(type, column), left_(std::move(left)), right_(std::move(right)) {
    if constexpr (std::is_invocable_v<Kernel&, const Column&, const Column&, Column&>) {
      op_ = kernel;
    } else {
      op_ = [kernel](const Column& a, const Column& b, Column& out) {
        const std::size_t rows = a.size();
        for (std::size_t row = 0; row < rows; ++row) kernel(row, a, b, out);
      };
    }
  }
  Column eval(const Column& x) const override {
    Column left_storage, right_storage;
    const Column& a = operand(left_, x, left_storage);
    const Column& b = operand(right_, x, right_storage);
    Column out{type(), {}, {}, {}};
    out.resize(a.size());
    op_(a, b, out);
    return out;
  }

 private:
  NodePtr left_, right_;
  Op op_;
};

// `left` compared with a literal, `x < 1000` being the usual filter: the literal itself is read,
// not a column of copies of it, and as a filter it picks the events in the same pass
// (select), reading them as its keys when `left` is x itself.
template <class T, class Decide>
class LiteralComparison final : public Node {
 public:
  LiteralComparison(std::size_t column, NodePtr left, Values<T> Column::*values, T constant, Decide decide)
      : Node(Type::boolean, column), left_(std::move(left)), values_(values), constant_(std::move(constant)), decide_(decide) {}

  Column eval(const Column& x) const override {
    Column storage;
    const Values<T>& keys = operand(left_, x, storage).*values_;
    Column out{Type::boolean, {}, {}, {}};
    out.resize(keys.size());
    std::int64_t* result = out.ints.data();
    const std::size_t rows = keys.size();
#pragma GCC unroll 4
    for (std::size_t row = 0; row < rows; ++row) result[row] = holds(keys[row]);
    return out;
  }

  bool select(std::span<const std::int64_t> events, Values<std::int64_t>& kept) const override { return select_from(events, kept); }
  bool select(std::span<const double> events, Values<double>& kept) const override { return select_from(events, kept); }

 private:
  bool holds(const T& key) const { return decide_(key, constant_); }

  template <class X>
  bool select_from(std::span<const X> events, Values<X>& kept) const {
    const auto holds_key = [this](const T& key) { return holds(key); };
    kept.resize(events.size());
    if constexpr (std::is_same_v<T, X>) {
      if (left_->is_event()) {
        kept.resize(detail::compact(events.data(), nullptr, events.size(), kept.data(), holds_key));
        return true;
      }
    }
    const Column keys = left_->eval(column_of(events));
    kept.resize(detail::compact(events.data(), (keys.*values_).data(), events.size(), kept.data(), holds_key));
    return true;
  }

  NodePtr left_;
  Values<T> Column::*values_;
  T constant_;
  Decide decide_;
};

// cond ? a : b, and (as cond ? right : false / cond ? true : right) && and ||: each branch is
// evaluated only on the rows that take it, so `x != 0 && 10 / x > 1` never divides by zero.
class Choose final : public Node {
 public:
  Choose(Type type, std::size_t column, NodePtr condition, NodePtr when_true, NodePtr when_false)
      : Node(type, column), condition_(std::move(condition)), when_true_(std::move(when_true)), when_false_(std::move(when_false)) {}
  Column eval(const Column& x) const override {
    const Column condition = condition_->eval(x);
    std::vector<std::size_t> yes, no;
    for (std::size_t row = 0; row < condition.ints.size(); ++row) (condition.ints[row] ? yes : no).push_back(row);
    Column out{type(), {}, {}, {}};
    out.resize(x.size());
    branch(*when_true_, x, yes, out);
    branch(*when_false_, x, no, out);
    return out;
  }

 private:
  static void branch(const Node& node, const Column& x, const std::vector<std::size_t>& rows, Column& out) {
    if (rows.empty()) return;
    try {
      scatter(node.eval(gather(x, rows)), rows, out);
    } catch (const EvalError& error) {
      throw EvalError(rows[error.index()], error.what());
    }
  }
  NodePtr condition_, when_true_, when_false_;
};

[[noreturn]] void fail(std::size_t row, const std::string& message) { throw EvalError(row, message); }

// x op y for + - *, failing on overflow.
template <class Op>
std::int64_t checked(Op op, std::int64_t x, std::int64_t y, std::size_t row, const char* what) {
  std::int64_t result = 0;
  if (op(x, y, &result)) fail(row, std::string("integer overflow in ") + what);
  return result;
}
constexpr auto add = [](std::int64_t x, std::int64_t y, std::int64_t* r) { return __builtin_add_overflow(x, y, r); };
constexpr auto subtract = [](std::int64_t x, std::int64_t y, std::int64_t* r) { return __builtin_sub_overflow(x, y, r); };
constexpr auto multiply = [](std::int64_t x, std::int64_t y, std::int64_t* r) { return __builtin_mul_overflow(x, y, r); };

std::string trimmed(std::string_view s) {
  const auto first = s.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return {};
  const auto last = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(first, last - first + 1));
}

// --- lexer -----------------------------------------------------------------------------------

enum class Kind { number, string, name, symbol, end };

struct Token {
  Kind kind;
  std::string text;
  std::size_t column;
};

std::vector<Token> lex(std::string_view source) {
  std::vector<Token> tokens;
  std::size_t i = 0;
  while (i < source.size()) {
    const char c = source[i];
    if (std::isspace(static_cast<unsigned char>(c))) {
      ++i;
      continue;
    }
    const std::size_t start = i;
    if (std::isdigit(static_cast<unsigned char>(c)) || (c == '.' && i + 1 < source.size() && std::isdigit(static_cast<unsigned char>(source[i + 1])))) {
      while (i < source.size() && (std::isalnum(static_cast<unsigned char>(source[i])) || source[i] == '.' ||
                                   ((source[i] == '+' || source[i] == '-') && (source[i - 1] == 'e' || source[i - 1] == 'E'))))
        ++i;
      tokens.push_back({Kind::number, std::string(source.substr(start, i - start)), start});
    } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      while (i < source.size() && (std::isalnum(static_cast<unsigned char>(source[i])) || source[i] == '_')) ++i;
      tokens.push_back({Kind::name, std::string(source.substr(start, i - start)), start});
    } else if (c == '"') {
      std::string text;
      ++i;
      for (;;) {
        if (i >= source.size()) throw SyntaxError(start, "unterminated string");
        char d = source[i++];
        if (d == '"') break;
        if (d == '\\' && i < source.size()) {
          const char e = source[i++];
          d = e == 'n' ? '\n' : e == 't' ? '\t' : e;
        }
        text.push_back(d);
      }
      tokens.push_back({Kind::string, std::move(text), start});
    } else {
      static const char* const two[] = {"&&", "||", "==", "!=", "<=", ">="};
      std::string symbol(1, c);
      for (const char* t : two)
        if (source.substr(i, 2) == t) symbol = t;
      if (symbol.size() == 1 && std::string_view("+-*/%<>!?:(),").find(c) == std::string_view::npos) {
        throw SyntaxError(start, std::string("unexpected character '") + c + "'");
      }
      i += symbol.size();
      tokens.push_back({Kind::symbol, std::move(symbol), start});
    }
  }
  tokens.push_back({Kind::end, "", source.size()});
  return tokens;
}

// --- parser and type checker -----------------------------------------------------------------

const char* const function_names[] = {"len", "contains", "starts_with", "ends_with", "upper", "lower", "trim",
                                      "int", "float",   "str",         "abs",       "min",   "max"};

bool numeric(Type t) { return t == Type::integer || t == Type::floating; }

class Parser {
 public:
  Parser(std::string_view source, Type x_type, std::string_view variable)
      : tokens_(lex(source)), x_type_(x_type), variable_(variable) {
    if (tokens_.size() > max_tokens + 1) {  // the end is a token too
      throw SyntaxError(tokens_[max_tokens].column, "the expression is too long: more than " + std::to_string(max_tokens) + " tokens");
    }
  }

  NodePtr parse() {
    NodePtr root = ternary();
    if (peek().kind != Kind::end) throw SyntaxError(peek().column, "expected the end of the expression, found '" + peek().text + "'");
    return root;
  }

 private:
  // The parser recurses once per nested sub-expression (parentheses, an argument, a branch of
  // ?:, a prefix operator), and the tree it builds is walked and freed recursively, on a worker's
  // stack: both bounds keep an expression, however broken or hostile, from overflowing it. They
  // are far beyond what a pipeline's expression needs (CEL bounds nesting the same way).
  static constexpr std::size_t max_tokens = 4096;
  static constexpr std::size_t max_nesting = 100;

  // Counts a nesting level for its lifetime.
  class Nested {
   public:
    explicit Nested(Parser& parser) : depth_(parser.depth_) {
      if (++depth_ > max_nesting) {
        throw SyntaxError(parser.peek().column, "the expression nests deeper than " + std::to_string(max_nesting) + " levels");
      }
    }
    Nested(const Nested&) = delete;
    Nested& operator=(const Nested&) = delete;
    ~Nested() { --depth_; }

   private:
    std::size_t& depth_;
  };

  const Token& peek() const { return tokens_[next_]; }
  bool accept(std::string_view symbol) {
    if (peek().kind == Kind::symbol && peek().text == symbol) {
      ++next_;
      return true;
    }
    return false;
  }
  void expect(std::string_view symbol) {
    if (!accept(symbol)) {
      throw SyntaxError(peek().column, "expected '" + std::string(symbol) + "', found " +
                                           (peek().kind == Kind::end ? std::string("the end") : "'" + peek().text + "'"));
    }
  }

  static NodePtr to_float(NodePtr node) {
    if (node->type() != Type::integer) return node;
    // A literal is converted once, here: `x < 1000` on floats stays a comparison with a literal.
    if (const auto* literal = dynamic_cast<const Literal*>(node.get())) {
      return std::make_shared<Literal>(Type::floating, node->column(), static_cast<double>(std::get<std::int64_t>(literal->value())));
    }
    return std::make_shared<Map1>(Type::floating, node->column(), node, [](std::size_t row, const Column& in, Column& out) {
      out.floats[row] = static_cast<double>(in.ints[row]);
    });
  }

  static void require(const NodePtr& node, Type type, const std::string& what) {
    if (node->type() != type) {
      throw SyntaxError(node->column(), what + " needs " + a(type) + ", got " + a(node->type()));
    }
  }

  NodePtr ternary() {
    const Nested nested(*this);
    NodePtr condition = logical_or();
    const std::size_t column = peek().column;
    if (!accept("?")) return condition;
    require(condition, Type::boolean, "the condition of '?'");
    NodePtr yes = ternary();
    expect(":");
    NodePtr no = ternary();
    if (numeric(yes->type()) && numeric(no->type()) && yes->type() != no->type()) {
      yes = to_float(yes);
      no = to_float(no);
    }
    if (yes->type() != no->type()) {
      throw SyntaxError(column, "the branches of '?' differ: " + std::string(type_name(yes->type())) + " and " +
                                    std::string(type_name(no->type())));
    }
    return std::make_shared<Choose>(yes->type(), column, condition, yes, no);
  }

  NodePtr logical_or() {
    NodePtr left = logical_and();
    for (;;) {
      const std::size_t column = peek().column;
      if (!accept("||")) return left;
      NodePtr right = logical_and();
      require(left, Type::boolean, "'||'");
      require(right, Type::boolean, "'||'");
      left = std::make_shared<Choose>(Type::boolean, column, left, std::make_shared<Literal>(Type::boolean, column, std::int64_t{1}), right);
    }
  }

  NodePtr logical_and() {
    NodePtr left = equality();
    for (;;) {
      const std::size_t column = peek().column;
      if (!accept("&&")) return left;
      NodePtr right = equality();
      require(left, Type::boolean, "'&&'");
      require(right, Type::boolean, "'&&'");
      left = std::make_shared<Choose>(Type::boolean, column, left, right, std::make_shared<Literal>(Type::boolean, column, std::int64_t{0}));
    }
  }

  NodePtr equality() {
    NodePtr left = relation();
    for (;;) {
      const Token op = peek();
      if (!accept("==") && !accept("!=")) return left;
      left = compare(op, left, relation());
    }
  }

  NodePtr relation() {
    NodePtr left = additive();
    for (;;) {
      const Token op = peek();
      if (!accept("<") && !accept("<=") && !accept(">") && !accept(">=")) return left;
      left = compare(op, left, additive());
    }
  }

  NodePtr compare(const Token& op, NodePtr left, NodePtr right) {
    if (numeric(left->type()) && numeric(right->type()) && left->type() != right->type()) {
      left = to_float(left);
      right = to_float(right);
    }
    if (left->type() != right->type()) {
      throw SyntaxError(op.column, "'" + op.text + "' cannot compare " + a(left->type()) + " with " + a(right->type()));
    }
    if (left->type() == Type::boolean && op.text != "==" && op.text != "!=") {
      throw SyntaxError(op.column, "'" + op.text + "' cannot order booleans");
    }
    // The operator is chosen here, once, not for every row.
    const std::string& symbol = op.text;
    if (symbol == "==") return compared(op, left, right, std::equal_to<>());
    if (symbol == "!=") return compared(op, left, right, std::not_equal_to<>());
    if (symbol == "<") return compared(op, left, right, std::less<>());
    if (symbol == "<=") return compared(op, left, right, std::less_equal<>());
    if (symbol == ">") return compared(op, left, right, std::greater<>());
    return compared(op, left, right, std::greater_equal<>());
  }

  template <class Decide>
  static NodePtr compared(const Token& op, const NodePtr& left, const NodePtr& right, Decide decide) {
    switch (left->type()) {
      case Type::floating: return compared_as(op, left, right, decide, &Column::floats);
      case Type::string: return compared_as(op, left, right, decide, &Column::strings);
      default: return compared_as(op, left, right, decide, &Column::ints);
    }
  }

  // Compares columns of T row by row; against a literal, with the literal itself rather than a
  // column of copies of it (`x < 1000` is the common filter).
  template <class Decide, class T>
  static NodePtr compared_as(const Token& op, const NodePtr& left, const NodePtr& right, Decide decide, Values<T> Column::*values) {
    const auto* literal = dynamic_cast<const Literal*>(right.get());
    if (const T* constant = literal != nullptr ? std::get_if<T>(&literal->value()) : nullptr) {
      return std::make_shared<LiteralComparison<T, Decide>>(op.column, left, values, *constant, decide);
    }
    return std::make_shared<Map2>(Type::boolean, op.column, left, right, [decide, values](const Column& a, const Column& b, Column& out) {
      const Values<T>& x = a.*values;
      const Values<T>& y = b.*values;
      std::int64_t* result = out.ints.data();
      for (std::size_t row = 0; row < x.size(); ++row) result[row] = decide(x[row], y[row]);
    });
  }

  NodePtr additive() {
    NodePtr left = multiplicative();
    for (;;) {
      const Token op = peek();
      if (!accept("+") && !accept("-")) return left;
      left = arithmetic(op, left, multiplicative());
    }
  }

  NodePtr multiplicative() {
    NodePtr left = unary();
    for (;;) {
      const Token op = peek();
      if (!accept("*") && !accept("/") && !accept("%")) return left;
      left = arithmetic(op, left, unary());
    }
  }

  // + - * on integers. Overflow is noted in a flag over the whole column, so the loop has no
  // branch; only a column that overflowed is searched again for its first failing row.
  template <class Checked>
  static NodePtr overflow_checked(const Token& op, const NodePtr& left, const NodePtr& right, Checked checked) {
    return std::make_shared<Map2>(Type::integer, op.column, left, right,
                                  [checked, what = "integer overflow in " + op.text](const Column& a, const Column& b, Column& out) {
                                    const std::size_t rows = a.ints.size();
                                    const std::int64_t* x = a.ints.data();
                                    const std::int64_t* y = b.ints.data();
                                    std::int64_t* result = out.ints.data();
                                    bool overflow = false;
#pragma GCC unroll 4
                                    for (std::size_t row = 0; row < rows; ++row) overflow |= checked(x[row], y[row], &result[row]);
                                    if (!overflow) return;
                                    for (std::size_t row = 0; row < rows; ++row) {
                                      std::int64_t ignored = 0;
                                      if (checked(x[row], y[row], &ignored)) fail(row, what);
                                    }
                                  });
  }

  NodePtr arithmetic(const Token& op, NodePtr left, NodePtr right) {
    const char symbol = op.text[0];
    if (symbol == '+' && left->type() == Type::string && right->type() == Type::string) {
      return std::make_shared<Map2>(Type::string, op.column, left, right, [](std::size_t row, const Column& a, const Column& b, Column& out) {
        out.strings[row] = a.strings[row] + b.strings[row];
      });
    }
    if (!numeric(left->type()) || !numeric(right->type())) {
      throw SyntaxError(op.column, "'" + op.text + "' needs numbers" + std::string(symbol == '+' ? " or two strings" : "") + ", got " +
                                       a(left->type()) + " and " + a(right->type()));
    }
    if (left->type() == Type::integer && right->type() == Type::integer) {
      if (symbol == '+') return overflow_checked(op, left, right, add);
      if (symbol == '-') return overflow_checked(op, left, right, subtract);
      if (symbol == '*') return overflow_checked(op, left, right, multiply);
      return std::make_shared<Map2>(Type::integer, op.column, left, right, [symbol](std::size_t row, const Column& a, const Column& b, Column& out) {
        const std::int64_t x = a.ints[row], y = b.ints[row];
        if (y == 0) fail(row, symbol == '/' ? "division by zero" : "modulo by zero");
        if (x == std::numeric_limits<std::int64_t>::min() && y == -1) fail(row, std::string("integer overflow in ") + symbol);
        out.ints[row] = symbol == '/' ? x / y : x % y;
      });
    }
    return std::make_shared<Map2>(Type::floating, op.column, to_float(left), to_float(right),
                                  [symbol](std::size_t row, const Column& a, const Column& b, Column& out) {
                                    const double x = a.floats[row], y = b.floats[row];
                                    if ((symbol == '/' || symbol == '%') && y == 0.0) fail(row, symbol == '/' ? "division by zero" : "modulo by zero");
                                    out.floats[row] = symbol == '+' ? x + y : symbol == '-' ? x - y : symbol == '*' ? x * y : symbol == '/' ? x / y : std::fmod(x, y);
                                  });
  }

  NodePtr unary() {
    const Token op = peek();
    if (accept("-")) {
      const Nested nested(*this);
      NodePtr arg = unary();
      if (arg->type() == Type::integer) {
        return std::make_shared<Map1>(Type::integer, op.column, arg, [](std::size_t row, const Column& in, Column& out) {
          out.ints[row] = checked(subtract, 0, in.ints[row], row, "unary -");
        });
      }
      require(arg, Type::floating, "unary '-'");
      return std::make_shared<Map1>(Type::floating, op.column, arg, [](std::size_t row, const Column& in, Column& out) { out.floats[row] = -in.floats[row]; });
    }
    if (accept("!")) {
      const Nested nested(*this);
      NodePtr arg = unary();
      require(arg, Type::boolean, "'!'");
      return std::make_shared<Map1>(Type::boolean, op.column, arg, [](std::size_t row, const Column& in, Column& out) { out.ints[row] = !in.ints[row]; });
    }
    return primary();
  }

  NodePtr primary() {
    const Token token = peek();
    switch (token.kind) {
      case Kind::number: {
        ++next_;
        const char* first = token.text.data();
        const char* last = first + token.text.size();
        if (token.text.find_first_of(".eE") == std::string::npos) {
          std::int64_t value = 0;
          auto [end, error] = std::from_chars(first, last, value);
          if (error != std::errc() || end != last) throw SyntaxError(token.column, "bad integer '" + token.text + "'");
          return std::make_shared<Literal>(Type::integer, token.column, value);
        }
        double value = 0;
        auto [end, error] = std::from_chars(first, last, value);
        if (error != std::errc() || end != last) throw SyntaxError(token.column, "bad number '" + token.text + "'");
        return std::make_shared<Literal>(Type::floating, token.column, value);
      }
      case Kind::string:
        ++next_;
        return std::make_shared<Literal>(Type::string, token.column, token.text);
      case Kind::name:
        ++next_;
        if (token.text == variable_) return std::make_shared<XNode>(x_type_, token.column);
        if (token.text == "true" || token.text == "false") {
          return std::make_shared<Literal>(Type::boolean, token.column, std::int64_t{token.text == "true"});
        }
        if (peek().kind == Kind::symbol && peek().text == "(") return call(token);
        throw SyntaxError(token.column, "unknown name '" + token.text + "' (the event is " + std::string(variable_) + ")");
      case Kind::symbol:
        if (accept("(")) {
          NodePtr inner = ternary();
          expect(")");
          return inner;
        }
        [[fallthrough]];
      case Kind::end:
        break;
    }
    throw SyntaxError(token.column, "expected a value, found " + (token.kind == Kind::end ? std::string("the end") : "'" + token.text + "'"));
  }

  NodePtr call(const Token& name) {
    expect("(");
    std::vector<NodePtr> args;
    if (!accept(")")) {
      do args.push_back(ternary());
      while (accept(","));
      expect(")");
    }
    const std::string& f = name.text;
    const std::size_t column = name.column;
    auto arity = [&](std::size_t n) {
      if (args.size() != n) {
        throw SyntaxError(column, f + "() takes " + std::to_string(n) + " argument" + (n == 1 ? "" : "s") + ", got " + std::to_string(args.size()));
      }
    };
    if (f == "len") {
      arity(1);
      require(args[0], Type::string, "len()");
      return std::make_shared<Map1>(Type::integer, column, args[0], [](std::size_t row, const Column& in, Column& out) {
        out.ints[row] = static_cast<std::int64_t>(in.strings[row].size());
      });
    }
    if (f == "contains" || f == "starts_with" || f == "ends_with") {
      arity(2);
      require(args[0], Type::string, f + "()");
      require(args[1], Type::string, f + "()");
      const int which = f == "contains" ? 0 : f == "starts_with" ? 1 : 2;
      return std::make_shared<Map2>(Type::boolean, column, args[0], args[1], [which](std::size_t row, const Column& a, const Column& b, Column& out) {
        const std::string_view s = a.strings[row], t = b.strings[row];
        out.ints[row] = which == 0 ? s.find(t) != std::string_view::npos : which == 1 ? s.starts_with(t) : s.ends_with(t);
      });
    }
    if (f == "upper" || f == "lower" || f == "trim") {
      arity(1);
      require(args[0], Type::string, f + "()");
      const int which = f == "upper" ? 0 : f == "lower" ? 1 : 2;
      return std::make_shared<Map1>(Type::string, column, args[0], [which](std::size_t row, const Column& in, Column& out) {
        if (which == 2) {
          out.strings[row] = trimmed(in.strings[row]);
          return;
        }
        out.strings[row] = in.strings[row];
        for (char& c : out.strings[row]) c = static_cast<char>(which == 0 ? std::toupper(static_cast<unsigned char>(c)) : std::tolower(static_cast<unsigned char>(c)));
      });
    }
    if (f == "int") {
      arity(1);
      return std::make_shared<Map1>(Type::integer, column, args[0], [from = args[0]->type()](std::size_t row, const Column& in, Column& out) {
        switch (from) {
          case Type::floating: {
            const double d = in.floats[row];
            if (!(d >= -9.2233720368547758e18 && d < 9.2233720368547758e18)) fail(row, "int() of " + to_string(Value(d)) + " overflows");
            out.ints[row] = static_cast<std::int64_t>(d);
            return;
          }
          case Type::string: {
            const std::string text = trimmed(in.strings[row]);
            auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), out.ints[row]);
            if (error != std::errc() || end != text.data() + text.size() || text.empty()) fail(row, "int() cannot read \"" + in.strings[row] + "\"");
            return;
          }
          default: out.ints[row] = in.ints[row];
        }
      });
    }
    if (f == "float") {
      arity(1);
      return std::make_shared<Map1>(Type::floating, column, args[0], [from = args[0]->type()](std::size_t row, const Column& in, Column& out) {
        switch (from) {
          case Type::floating: out.floats[row] = in.floats[row]; return;
          case Type::string: {
            const std::string text = trimmed(in.strings[row]);
            auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), out.floats[row]);
            if (error != std::errc() || end != text.data() + text.size() || text.empty()) fail(row, "float() cannot read \"" + in.strings[row] + "\"");
            return;
          }
          default: out.floats[row] = static_cast<double>(in.ints[row]);
        }
      });
    }
    if (f == "str") {
      arity(1);
      return std::make_shared<Map1>(Type::string, column, args[0], [from = args[0]->type()](std::size_t row, const Column& in, Column& out) {
        switch (from) {
          case Type::floating: out.strings[row] = to_string(Value(in.floats[row])); return;
          case Type::string: out.strings[row] = in.strings[row]; return;
          case Type::boolean: out.strings[row] = in.ints[row] ? "true" : "false"; return;
          default: out.strings[row] = to_string(Value(in.ints[row]));
        }
      });
    }
    if (f == "abs") {
      arity(1);
      if (args[0]->type() == Type::integer) {
        return std::make_shared<Map1>(Type::integer, column, args[0], [](std::size_t row, const Column& in, Column& out) {
          if (in.ints[row] == std::numeric_limits<std::int64_t>::min()) fail(row, "integer overflow in abs()");
          out.ints[row] = in.ints[row] < 0 ? -in.ints[row] : in.ints[row];
        });
      }
      require(args[0], Type::floating, "abs()");
      return std::make_shared<Map1>(Type::floating, column, args[0], [](std::size_t row, const Column& in, Column& out) { out.floats[row] = std::fabs(in.floats[row]); });
    }
    if (f == "min" || f == "max") {
      arity(2);
      if (!numeric(args[0]->type()) || !numeric(args[1]->type())) throw SyntaxError(column, f + "() needs numbers");
      const bool is_min = f == "min";
      if (args[0]->type() == Type::integer && args[1]->type() == Type::integer) {
        return std::make_shared<Map2>(Type::integer, column, args[0], args[1], [is_min](std::size_t row, const Column& a, const Column& b, Column& out) {
          out.ints[row] = is_min ? std::min(a.ints[row], b.ints[row]) : std::max(a.ints[row], b.ints[row]);
        });
      }
      return std::make_shared<Map2>(Type::floating, column, to_float(args[0]), to_float(args[1]), [is_min](std::size_t row, const Column& a, const Column& b, Column& out) {
        out.floats[row] = is_min ? std::min(a.floats[row], b.floats[row]) : std::max(a.floats[row], b.floats[row]);
      });
    }
    const auto near = text::closest(f, function_names);
    throw SyntaxError(column, "unknown function '" + f + "'" + (near ? "; did you mean '" + *near + "'?" : ""));
  }

  std::vector<Token> tokens_;
  std::size_t next_ = 0;
  std::size_t depth_ = 0;  // nesting levels open (Nested)
  Type x_type_;
  std::string_view variable_;
};

template <EventType R>
Values<R> values_of(Column&& column) {
  if constexpr (std::is_same_v<R, std::int64_t>) return std::move(column.ints);
  if constexpr (std::is_same_v<R, double>) return std::move(column.floats);
  if constexpr (std::is_same_v<R, std::string>) return std::move(column.strings);
}

}  // namespace

Expression Expression::compile(std::string_view source, Type x_type, std::string_view variable) {
  Parser parser(source, x_type, variable);
  NodePtr root = parser.parse();
  const Type type = root->type();
  return Expression(std::move(root), type, x_type, std::string(source));
}

template <EventType R, EventType X>
Values<R> Expression::evaluate(std::span<const X> events) const {
  if (type_of<X> != x_type_ || type_of<R> != (type_ == Type::boolean ? Type::integer : type_)) {
    throw std::logic_error("the expression '" + source_ + "' maps " + a(x_type_) + " to " + a(type_) + ", not " + a(type_of<X>) + " to " +
                           a(type_of<R>));
  }
  return values_of<R>(root_->eval(column_of(events)));
}

template <EventType X>
  requires std::is_trivially_copyable_v<X>
Values<X> Expression::select(std::span<const X> events) const {
  if (type_of<X> != x_type_ || (type_ != Type::boolean && type_ != Type::integer)) {
    throw std::logic_error("the expression '" + source_ + "' maps " + a(x_type_) + " to " + a(type_) + ", not " + a(type_of<X>) +
                           " to a boolean");
  }
  Values<X> kept;
  if (root_->select(events, kept)) return kept;
  const Values<std::int64_t> flags = values_of<std::int64_t>(root_->eval(column_of(events)));
  kept.resize(events.size());
  kept.resize(detail::compact(events.data(), flags.data(), events.size(), kept.data(), [](std::int64_t flag) { return flag != 0; }));
  return kept;
}

template Values<std::int64_t> Expression::select(std::span<const std::int64_t>) const;
template Values<double> Expression::select(std::span<const double>) const;

#define SLUICE_EVALUATE(R, X) template Values<R> Expression::evaluate<R, X>(std::span<const X>) const;
#define SLUICE_EVALUATE_TO(X) SLUICE_EVALUATE(std::int64_t, X) SLUICE_EVALUATE(double, X) SLUICE_EVALUATE(std::string, X)
SLUICE_EVALUATE_TO(std::int64_t)
SLUICE_EVALUATE_TO(double)
SLUICE_EVALUATE_TO(std::string)
#undef SLUICE_EVALUATE_TO
#undef SLUICE_EVALUATE

}  // namespace sluice::expr
