#include "pipeline_config.hpp"

#include "../expr/suggest.hpp"

#include <sluice/defaults.hpp>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <limits>
#include <set>
#include <sstream>

namespace sluice::yaml {

namespace {

const OptionSpec expression(const char* description) { return {"expr", OptionType::expression, true, "", description}; }

}  // namespace

// Durations in ms up to about 31 years: a time point that far ahead still fits the clock's
// int64 nanoseconds, where a larger one would wrap around to the past and fire at once.
constexpr double max_ms = 1e12;
// The slowest rate: one event in about 31 years, for the same reason.
constexpr double min_per_second = 1e-9;
// Each partition has a consumer stage of its own in the file, so no real pipeline comes near
// this; the dispatcher sets up every partition when the stage starts, so a typo such as 100000000
// would otherwise take gigabytes before any check of the consumers.
constexpr std::int64_t max_partitions = 1024;

const std::vector<StageTypeSpec>& catalog() {
  static const std::vector<StageTypeSpec> types = {
      {"range", Role::producer, "the integers from, from + step, ... up to `to` (inclusive); endless without `to`",
       {{"from", OptionType::integer, false, "1", "first value"},
        {"to", OptionType::integer, false, "", "last value (inclusive); omit for an endless stream"},
        {"step", OptionType::integer, false, "1", "increment, not 0"}}},
      {"generate", Role::producer, "`expr` evaluated over i = 0, 1, ... count - 1",
       {{"count", OptionType::integer, true, "", "how many events", 0}, {"expr", OptionType::expression, true, "", "an expression over i"}}},
      {"lines", Role::producer, "one string event per line of a file", {{"path", OptionType::string, true, "", "a file, or - for standard input"}}},
      {"map", Role::producer_consumer, "replaces each event x by `expr`", {expression("an expression over x")}},
      {"filter", Role::producer_consumer, "keeps the events for which `expr` is true", {expression("a boolean expression over x")}},
      {"flat_map", Role::producer_consumer, "splits each string event into one event per part",
       {{"split", OptionType::string, true, "", "the separator"}}},
      {"take", Role::producer_consumer, "passes the first `count` events on, then cancels upstream: the pipeline ends",
       {{"count", OptionType::integer, true, "", "how many events", 0}}},
      {"batch", Role::producer_consumer, "joins every `size` events into one string event",
       {{"size", OptionType::integer, true, "", "events per batch (>= 1)", 1},
        {"timeout_ms", OptionType::integer, false, "0", "a partial batch goes out after this long (0: only at the end)", 0, false, max_ms},
        {"sep", OptionType::string, false, ",", "the separator between parts"}}},
      {"rate_limit", Role::producer_consumer, "lets at most `per_second` events a second through, evenly spaced",
       {{"per_second", OptionType::number, true, "", "events per second (>= 1e-9)", min_per_second}}},
      {"delay", Role::producer_consumer, "holds each event for `ms` (simulated I/O); events overlap",
       {{"ms", OptionType::integer, true, "", "milliseconds (>= 0)", 0, false, max_ms}}},
      {"async_map", Role::producer_consumer,
       "replaces each event x by `expr`, evaluated as a task, at most max_concurrency at once (async_stream)",
       {expression("an expression over x"),
        {"max_concurrency", OptionType::integer, false, "cores", "tasks at once (>= 1)", 1},
        {"ordered", OptionType::boolean, false, "true", "results in input order; false: as tasks finish"},
        {"timeout_ms", OptionType::integer, false, "5000", "per task; a late task is an error, handled by on_error", 1, false, max_ms},
        {"delay_ms", OptionType::integer, false, "0", "each task first waits this long (simulated I/O)", 0, false, max_ms}}},
      {"stdout", Role::consumer, "writes one event per line to standard output", {}},
      {"file", Role::consumer, "writes one event per line to a file",
       {{"path", OptionType::string, true, "", "the file"}, {"append", OptionType::boolean, false, "false", "append instead of truncating"}}},
      {"null", Role::consumer, "discards events", {}},
      {"count", Role::consumer, "prints the number of events at the end", {}},
      {"sum", Role::consumer, "prints the sum of the events at the end: integers exactly (an overflow is an error), or floats", {}},
  };
  return types;
}

const std::vector<OptionSpec>& common_options() {
  static const std::vector<OptionSpec> options = {
      {"type", OptionType::string, true, "", "the stage type (see `sluice list`)"},
      {"subscribe_to", OptionType::string, false, "",
       "producers: a stage id, or a list of ids or of {stage, max_demand, min_demand, cancel, hand_off}"},
      {"max_demand", OptionType::integer, false, "1000", "default max_demand of its subscriptions (>= 1)"},
      {"min_demand", OptionType::integer, false, "max_demand / 2", "default min_demand (0 .. max_demand - 1)"},
      {"concurrency", OptionType::integer, false, "1", "parallel copies, fed by the demand dispatcher (producer-consumers only)"},
      {"hand_off", OptionType::string, false, "queued",
       "default hand_off of its subscriptions: queued, or at_once (run on the producer's thread when idle)"},
      {"dispatcher", OptionType::string, false, "demand",
       "demand, broadcast, or {partition: {partitions: N, key: EXPR}} (a consumer picks one with subscribe_to: [{stage, partition}])"},
      {"buffer_size", OptionType::integer, false, "10000", "events buffered beyond demand (a processor's: no limit unless set)"},
      {"buffer_keep", OptionType::string, false, "last", "last or first: which events a full buffer keeps"},
      {"on_error", OptionType::string, false, "stop",
       "stop, skip, or {dead_letter: STAGE}: what an event that fails (an expression error, a task timeout) does"},
  };
  return options;
}

std::string_view role_name(Role role) {
  switch (role) {
    case Role::producer: return "producer";
    case Role::producer_consumer: return "producer-consumer";
    case Role::consumer: return "consumer";
  }
  return "?";
}

std::string_view option_type_name(OptionType type) {
  switch (type) {
    case OptionType::integer: return "integer";
    case OptionType::number: return "number";
    case OptionType::string: return "string";
    case OptionType::boolean: return "boolean";
    case OptionType::expression: return "expression";
  }
  return "?";
}

const StageConfig* PipelineConfig::find(std::string_view id) const {
  for (const auto& stage : stages)
    if (stage.id == id) return &stage;
  return nullptr;
}

ConfigErrors::ConfigErrors(std::vector<std::string> lines)
    : std::runtime_error(lines.empty() ? "invalid pipeline" : lines.front()), lines_(std::move(lines)) {}

namespace {

std::string hint(std::string_view name, const std::vector<std::string>& candidates) {
  auto near = text::closest(name, candidates);
  return near ? "; did you mean '" + *near + "'?" : "";
}

std::vector<std::string> names_of(const std::vector<OptionSpec>& options) {
  std::vector<std::string> names;
  for (const auto& option : options) names.push_back(option.name);
  return names;
}

// Collects diagnostics and knows the file, to place them.
class Checker {
 public:
  explicit Checker(std::string file) : file_(std::move(file)) {}

  // An error at `path` points at the --set that gave its value, if one did: that value has no
  // place in the file. `at` lies in the value of `located_in` when that is a key of `path` (an
  // error about a stage found in its max_demand), and that key's --set is the one named.
  void error(Location at, const std::string& path, const std::string& message, const std::string& located_in = "") {
    std::ostringstream line;
    const std::string* setting = setting_of(located_in.empty() ? path : located_in);
    if (setting != nullptr) {
      line << "--set " << *setting;
    } else {
      line << file_ << ':' << at.line << ':' << at.column;
    }
    line << ": error: " << (path.empty() ? "" : path + ": ") << message;
    errors_.push_back({setting != nullptr ? Location{} : at, line.str()});
  }
  // An error in a --set itself.
  void setting_error(const std::string& setting, const std::string& message) {
    errors_.push_back({Location{}, "--set " + setting + ": error: " + message});
  }
  void set_by(std::string path, std::string setting) { settings_.emplace_back(std::move(path), std::move(setting)); }
  // A node with no place (the root of an empty file) is at 1:1.
  static Location at(const YAML::Node& node) {
    return {std::max(node.Mark().line, 0) + 1, std::max(node.Mark().column, 0) + 1};
  }
  void set_source(std::string text) { source_ = std::move(text); }
  // Whether a null node at `path` was written as a word (null, ~), not left empty. yaml-cpp
  // makes no difference between them, but an empty value's mark points past it, at whatever
  // follows, while a word's points at the word: in the file, or in the --set that gave it.
  bool spelled_null(const YAML::Node& node, const std::string& path) const {
    const std::string_view rest = written_at(node, path);
    for (std::string_view word : {"null", "Null", "NULL", "~"}) {
      if (!rest.starts_with(word)) continue;
      // The word is the value only if the value ends there: not a key (`null_out:`) that an
      // empty value's mark points at.
      std::string_view after = rest.substr(word.size());
      while (!after.empty() && (after.front() == ' ' || after.front() == '\t')) after.remove_prefix(1);
      return after.empty() || std::string_view(",]}#\r\n").find(after.front()) != std::string_view::npos;
    }
    return false;
  }
  // How far past a scalar's mark its text `text` starts (0, or 1 past a quote), if the scalar is
  // written in the file exactly as `text` reads: no escape, no ${VAR}, no block indicator, and on
  // one line (YAML folds the line breaks of one that spans lines). Only then is a column inside
  // `text` a column of the file. A --set value has no place in the file: never.
  std::optional<int> verbatim_offset(const YAML::Node& node, const std::string& path, const std::string& text) const {
    if (setting_of(path) != nullptr) return std::nullopt;
    const std::string_view written = written_at(node, path);
    const int offset = written.starts_with('"') || written.starts_with('\'') ? 1 : 0;
    if (written.substr(static_cast<std::size_t>(offset)).starts_with(text)) return offset;
    return std::nullopt;
  }
  bool failed() const { return !errors_.empty(); }
  // In the order of the file (errors in --set values first), whichever check found them.
  std::vector<std::string> take() {
    std::stable_sort(errors_.begin(), errors_.end(), [](const auto& a, const auto& b) {
      return std::pair(a.first.line, a.first.column) < std::pair(b.first.line, b.first.column);
    });
    std::vector<std::string> lines;
    for (auto& error : errors_) lines.push_back(std::move(error.second));
    errors_.clear();
    return lines;
  }

 private:
  // The text from `node`'s mark on: in the file, or in the --set that gave the value at `path`.
  std::string_view written_at(const YAML::Node& node, const std::string& path) const {
    std::string_view source = source_;
    if (const std::string* setting = setting_of(path)) source = std::string_view(*setting).substr(setting->find('=') + 1);
    if (node.Mark().pos < 0 || static_cast<std::size_t>(node.Mark().pos) >= source.size()) return {};
    return source.substr(static_cast<std::size_t>(node.Mark().pos));
  }

  // The last --set of the path, or of one that contains it (a key or an item of its value).
  const std::string* setting_of(const std::string& path) const {
    for (auto set = settings_.rbegin(); set != settings_.rend(); ++set) {
      const std::string& set_path = set->first;
      if (path == set_path || path.starts_with(set_path + ".") || path.starts_with(set_path + "[")) return &set->second;
    }
    return nullptr;
  }

  std::string file_;
  std::string source_;  // the file's text
  std::vector<std::pair<Location, std::string>> errors_;  // where (none: a --set), and the line
  std::vector<std::pair<std::string, std::string>> settings_;  // (config path, the --set that gave it)
};

// ${VAR} and ${VAR:-default} in a scalar; a missing variable with no default is an error.
std::optional<std::string> interpolate(const std::string& text, Checker& checker, Location at, const std::string& path) {
  std::string out;
  std::size_t i = 0;
  while (i < text.size()) {
    const std::size_t open = text.find("${", i);
    if (open == std::string::npos) break;
    const std::size_t close = text.find('}', open);
    if (close == std::string::npos) {
      checker.error(at, path, "unterminated ${ in '" + text + "'");
      return std::nullopt;
    }
    out.append(text, i, open - i);
    std::string name = text.substr(open + 2, close - open - 2);
    std::optional<std::string> fallback;
    if (const std::size_t dash = name.find(":-"); dash != std::string::npos) {
      fallback = name.substr(dash + 2);
      name.resize(dash);
    }
    if (const char* value = std::getenv(name.c_str())) {
      out += value;
    } else if (fallback) {
      out += *fallback;
    } else {
      checker.error(at, path, "environment variable " + name + " is not set, and ${" + name + "} has no default (${" + name + ":-default})");
      return std::nullopt;
    }
    i = close + 1;
  }
  out.append(text, i, std::string::npos);
  return out;
}

template <class T>
std::optional<T> scalar(const YAML::Node& node, Checker& checker, const std::string& path, OptionType type) {
  if (!node.IsScalar()) {
    checker.error(Checker::at(node), path, "expected " + std::string(option_type_name(type)) + ", got a " + (node.IsMap() ? "map" : node.IsSequence() ? "list" : "null"));
    return std::nullopt;
  }
  auto text = interpolate(node.Scalar(), checker, Checker::at(node), path);
  if (!text) return std::nullopt;
  try {
    return YAML::Node(*text).as<T>();
  } catch (const YAML::Exception&) {
    checker.error(Checker::at(node), path, "expected " + std::string(option_type_name(type)) + ", got '" + *text + "'");
    return std::nullopt;
  }
}

std::optional<std::size_t> count_value(const YAML::Node& node, Checker& checker, const std::string& path, std::int64_t minimum,
                                       std::int64_t maximum = std::numeric_limits<std::int64_t>::max()) {
  auto value = scalar<std::int64_t>(node, checker, path, OptionType::integer);
  if (!value) return std::nullopt;
  if (*value < minimum || *value > maximum) {
    checker.error(Checker::at(node), path,
                  "must be " + (*value < minimum ? "at least " + std::to_string(minimum) : "at most " + std::to_string(maximum)) +
                      ", got " + std::to_string(*value));
    return std::nullopt;
  }
  return static_cast<std::size_t>(*value);
}

// `located_in`: see Checker::error.
void check_demand(const SubscribeOptions& options, Checker& checker, Location at, const std::string& path,
                  const std::string& located_in = "") {
  try {
    options.validate();
  } catch (const std::invalid_argument& error) {
    checker.error(at, path, error.what(), located_in);
  }
}

// Applies --set stages.ID.KEY=VALUE to the tree before it is checked.
void apply_override(YAML::Node& root, const std::string& setting, Checker& checker) {
  const std::size_t equals = setting.find('=');
  const std::string path = setting.substr(0, equals);
  std::vector<std::string> parts;
  std::stringstream stream(path);
  for (std::string part; std::getline(stream, part, '.');) parts.push_back(part);
  if (equals == std::string::npos || parts.size() != 3 || parts[0] != "stages") {
    checker.setting_error(setting, "expected stages.ID.KEY=VALUE");
    return;
  }
  // The file's own shape errors are reported when it is checked: here it only has to hold.
  YAML::Node stages = root.IsMap() ? root["stages"] : YAML::Node();
  if (!stages.IsMap() || !stages[parts[1]]) {
    checker.setting_error(setting, "there is no stage '" + parts[1] + "'");
    return;
  }
  YAML::Node stage = stages[parts[1]];
  if (!stage.IsMap()) {
    checker.setting_error(setting, "stage '" + parts[1] + "' is not a map of options");
    return;
  }
  try {
    stage[parts[2]] = YAML::Load(setting.substr(equals + 1));
  } catch (const YAML::ParserException& e) {
    checker.setting_error(setting, "the value is not valid YAML: " + e.msg);
    return;
  }
  checker.set_by(path, setting);
}

// yaml-cpp keeps a key given twice in a map, and a lookup finds only the first, while a loop
// over the map sees both: the second would be ignored or half used, so it is an error. A stage
// id given twice has its own (Loader::stage).
void check_duplicate_keys(const YAML::Node& node, const std::string& path, Checker& checker) {
  if (node.IsSequence()) {
    for (std::size_t i = 0; i < node.size(); ++i) check_duplicate_keys(node[i], path + "[" + std::to_string(i) + "]", checker);
  }
  if (!node.IsMap()) return;
  std::map<std::string, Location> seen;
  for (const auto& entry : node) {
    if (!entry.first.IsScalar()) continue;
    const std::string& key = entry.first.Scalar();
    const std::string key_path = path.empty() ? key : path + "." + key;
    const Location at = Checker::at(entry.first);
    if (auto [first, fresh] = seen.emplace(key, at); !fresh && path != "stages") {
      checker.error(at, key_path,
                    "duplicate key: already given at line " + std::to_string(first->second.line) + ", column " +
                        std::to_string(first->second.column));
    }
    check_duplicate_keys(entry.second, key_path, checker);
  }
}

class Loader {
 public:
  Loader(const std::string& file, Checker& checker) : checker_(checker) { config_.file = file; }

  PipelineConfig load(const YAML::Node& root) {
    if (!root.IsMap()) {
      checker_.error(Checker::at(root), "", "a pipeline is a map with a `stages` key");
      return std::move(config_);
    }
    for (const auto& entry : root) {
      const auto key = entry.first.Scalar();
      if (key == "name") {
        if (auto name = scalar<std::string>(entry.second, checker_, "name", OptionType::string)) config_.name = *name;
      } else if (key != "stages") {
        checker_.error(Checker::at(entry.first), key, "unknown key" + hint(key, {"name", "stages"}));
      }
    }
    const YAML::Node stages = root["stages"];
    if (!stages || !stages.IsMap()) {
      checker_.error(Checker::at(root), "stages", "expected a map from stage id to stage");
      return std::move(config_);
    }
    for (const auto& entry : stages) stage(entry.first, entry.second);
    graph();
    return std::move(config_);
  }

 private:
  void stage(const YAML::Node& key, const YAML::Node& node) {
    StageConfig stage;
    stage.id = key.Scalar();
    stage.location = Checker::at(key);
    const std::string path = "stages." + stage.id;
    if (std::find(ids_.begin(), ids_.end(), stage.id) != ids_.end()) {
      // Its options are not checked: errors in them would be reported against the first stage
      // of that id, and references to the id all mean the first.
      checker_.error(stage.location, path, "a stage with this id already exists");
      if (node.IsMap()) note_subscriptions(node["subscribe_to"]);
      return;
    }
    ids_.push_back(stage.id);
    if (!node.IsMap()) {
      checker_.error(Checker::at(node), path, "expected a map with at least a `type`");
      return;
    }
    // Without a known type, the keys every stage accepts are still checked, so that one pass
    // reports their errors too; the type's own options, and the checks of its role, wait for it.
    stage.type = stage_type(node, stage.location, path);
    std::vector<std::string> allowed = names_of(common_options());
    if (stage.type != nullptr)
      for (const auto& option : stage.type->options) allowed.push_back(option.name);
    for (const auto& entry : node) {
      const std::string name = entry.first.Scalar();
      const std::string option_path = path + "." + name;
      const YAML::Node& value = entry.second;
      if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
        if (stage.type != nullptr) checker_.error(Checker::at(entry.first), option_path, "unknown key for a " + stage.type->name + " stage" + hint(name, allowed));
      } else if (name == "type") {
      } else if (name == "subscribe_to") {
        subscriptions(stage, value, option_path);
      } else if (name == "max_demand") {
        if (auto n = count_value(value, checker_, option_path, 0)) stage.max_demand = *n;
      } else if (name == "min_demand") {
        if (auto n = count_value(value, checker_, option_path, 0)) stage.min_demand = *n;
      } else if (name == "concurrency") {
        const auto n = count_value(value, checker_, option_path, 1, static_cast<std::int64_t>(defaults::max_copies));
        if (n && *n > 1 && stage.type != nullptr && stage.type->role != Role::producer_consumer) {
          const bool producer = stage.type->role == Role::producer;
          checker_.error(Checker::at(value), option_path,
                         "only a producer-consumer runs as parallel copies, and a " + stage.type->name + " stage is a " +
                             std::string(role_name(stage.type->role)) +
                             (producer ? ": each copy would emit every event" : ": each copy would write its own output"));
        } else if (n) {
          stage.concurrency = *n;
        }
      } else if (name == "buffer_size") {
        if (auto n = count_value(value, checker_, option_path, 0)) stage.buffer_size = *n;
      } else if (name == "on_error" && value.IsMap()) {
        dead_letter(stage, value, option_path);
      } else if (name == "dispatcher" && value.IsMap()) {
        partition_dispatcher(stage, value, option_path);
      } else if (name == "buffer_keep" || name == "on_error" || name == "dispatcher" || name == "hand_off") {
        choice(stage, name, value, option_path);
      } else {
        own_option(stage, name, value, option_path);
      }
    }
    if (stage.type != nullptr)
      for (const auto& option : stage.type->options)
        if (option.required && !stage.options.contains(option.name) && !node[option.name]) {
          checker_.error(stage.location, path, "missing required key '" + option.name + "' (" + option.description + ")");
        }
    // The demand error is found in min_demand's value if given, else in max_demand's.
    const std::string demand_key = node["min_demand"] ? "min_demand" : node["max_demand"] ? "max_demand" : "";
    check_demand(SubscribeOptions{.max_demand = stage.max_demand, .min_demand = stage.min_demand}, checker_,
                 demand_key.empty() ? stage.location : Checker::at(node[demand_key]), path,
                 demand_key.empty() ? "" : path + "." + demand_key);
    // A subscription's own demand settings win; the stage's are the defaults.
    for (auto& subscription : stage.subscribe_to) {
      subscription.options.max_demand = subscription.max_demand.value_or(stage.max_demand);
      subscription.options.min_demand = subscription.min_demand ? subscription.min_demand : stage.min_demand;
      subscription.options.hand_off = subscription.hand_off.value_or(stage.hand_off);
      if (subscription.max_demand || subscription.min_demand) {
        check_demand(subscription.options, checker_, subscription.location, path + ".subscribe_to");
      }
    }
    if (stage.type == nullptr) {
      untyped_.push_back(std::move(stage));
      return;
    }
    if (stage.type->name == "range" && stage.options.contains("step") && stage.options["step"] == "0") {
      checker_.error(Checker::at(node["step"]), path + ".step", "must not be 0");
    }
    config_.stages.push_back(std::move(stage));
  }

  // The stage type `node` names, or nullptr when it names none (reported).
  const StageTypeSpec* stage_type(const YAML::Node& node, Location stage_location, const std::string& path) {
    const YAML::Node type = node["type"];
    if (!type) {
      checker_.error(stage_location, path, "missing required key 'type'");
      return nullptr;
    }
    // `type: null` is YAML's null, and also the name of the stage type that discards events; a
    // `type:` left empty is a null too, but surely not a choice to discard everything.
    if (type.IsNull() && !checker_.spelled_null(type, path + ".type")) {
      checker_.error(stage_location, path + ".type", "no stage type given (the sink that discards events is `type: null`)");
      return nullptr;
    }
    const auto name = type.IsNull() ? std::optional<std::string>("null") : scalar<std::string>(type, checker_, path + ".type", OptionType::string);
    if (!name) return nullptr;
    std::vector<std::string> type_names;
    for (const auto& spec : catalog()) {
      if (spec.name == *name) return &spec;
      type_names.push_back(spec.name);
    }
    checker_.error(Checker::at(type), path + ".type", "unknown stage type '" + *name + "'" + hint(*name, type_names) + " (see `sluice list`)");
    return nullptr;
  }

  // The producers a stage given twice subscribes to: they have a consumer, so they get no
  // follow-on "nothing subscribes" error.
  // The ids are read as a checked stage's are, ${VAR} expanded; errors in them go unreported,
  // as the duplicate's options are not checked.
  void note_subscriptions(const YAML::Node& value) {
    if (!value) return;
    auto note = [&](const YAML::Node& item) {
      const YAML::Node id = item.IsMap() ? item["stage"] : item;
      if (!id || !id.IsScalar()) return;
      Checker unreported(config_.file);
      if (auto expanded = interpolate(id.Scalar(), unreported, Checker::at(id), "")) subscribed_by_duplicates_.insert(*expanded);
    };
    if (value.IsSequence()) {
      for (const auto& item : value) note(item);
    } else {
      note(value);
    }
  }

  void choice(StageConfig& stage, const std::string& name, const YAML::Node& value, const std::string& path) {
    const std::vector<std::string> choices = name == "buffer_keep" ? std::vector<std::string>{"last", "first"}
                                             : name == "on_error"  ? std::vector<std::string>{"stop", "skip"}
                                             : name == "hand_off"  ? hand_off_choices()
                                                                   : std::vector<std::string>{"demand", "broadcast"};
    // The map forms are choices too.
    const std::string map_forms = name == "on_error"     ? " or {dead_letter: STAGE}"
                                  : name == "dispatcher" ? " or {partition: {partitions: N, key: EXPR}}"
                                                         : "";
    auto text = one_of(value, path, choices, map_forms);
    if (!text) return;
    if (name == "buffer_keep") stage.buffer_keep = *text == "first" ? BufferKeep::first : BufferKeep::last;
    if (name == "on_error") stage.on_error = *text == "skip" ? stages::OnError::skip : stages::OnError::stop;
    if (name == "dispatcher") stage.dispatcher = *text == "broadcast" ? DispatcherKind::broadcast : DispatcherKind::demand;
    if (name == "hand_off") stage.hand_off = hand_off_of(*text);
  }

  // A scalar among `choices`, or an error naming them (and `map_forms`, the other ways to write
  // the option), with a suggestion when the value is close to one.
  std::optional<std::string> one_of(const YAML::Node& value, const std::string& path, const std::vector<std::string>& choices,
                                    const std::string& map_forms = "") {
    auto text = scalar<std::string>(value, checker_, path, OptionType::string);
    if (!text) return std::nullopt;
    if (std::find(choices.begin(), choices.end(), *text) != choices.end()) return text;
    std::string all;
    for (const auto& c : choices) all += (all.empty() ? "" : " or ") + c;
    checker_.error(Checker::at(value), path, "expected " + all + map_forms + ", got '" + *text + "'" + hint(*text, choices));
    return std::nullopt;
  }

  // hand_off, on a stage or on one of its subscriptions.
  static std::vector<std::string> hand_off_choices() { return {"queued", "at_once"}; }
  static HandOff hand_off_of(const std::string& text) { return text == "at_once" ? HandOff::at_once : HandOff::queued; }

  // on_error: {dead_letter: STAGE}
  void dead_letter(StageConfig& stage, const YAML::Node& value, const std::string& path) {
    for (const auto& entry : value) {
      const std::string key = entry.first.Scalar();
      if (key != "dead_letter") {
        checker_.error(Checker::at(entry.first), path + "." + key, "unknown key" + hint(key, {"dead_letter"}) + " (expected {dead_letter: STAGE})");
        continue;
      }
      if (auto target = scalar<std::string>(entry.second, checker_, path + ".dead_letter", OptionType::string)) {
        stage.on_error = stages::OnError::dead_letter;
        stage.dead_letter = *target;
        stage.dead_letter_location = Checker::at(entry.second);
      }
    }
    // An empty map would otherwise quietly mean the default, stop.
    if (value.size() == 0) checker_.error(Checker::at(value), path, "expected stop, skip or {dead_letter: STAGE}, got an empty map");
  }

  // dispatcher: {partition: {partitions: N, key: EXPR}}
  void partition_dispatcher(StageConfig& stage, const YAML::Node& value, const std::string& path) {
    const YAML::Node partition = value["partition"];
    for (const auto& entry : value) {
      const std::string key = entry.first.Scalar();
      if (key != "partition") checker_.error(Checker::at(entry.first), path + "." + key, "unknown dispatcher" + hint(key, {"partition"}) + " (expected demand, broadcast or {partition: {partitions: N, key: EXPR}})");
    }
    // An empty map would otherwise quietly mean the default, demand.
    if (value.size() == 0) {
      checker_.error(Checker::at(value), path, "expected demand, broadcast or {partition: {partitions: N, key: EXPR}}, got an empty map");
    }
    if (!partition) return;
    if (!partition.IsMap()) {
      checker_.error(Checker::at(partition), path + ".partition", "expected a map with `partitions` and `key`");
      return;
    }
    stage.dispatcher = DispatcherKind::partition;
    for (const auto& entry : partition) {
      const std::string key = entry.first.Scalar();
      const std::string key_path = path + ".partition." + key;
      if (key == "partitions") {
        partition_counts_[stage.id] = Checker::at(entry.second);
        if (auto n = count_value(entry.second, checker_, key_path, 1, max_partitions)) stage.partitions = *n;
      } else if (key == "key") {
        if (auto text = scalar<std::string>(entry.second, checker_, key_path, OptionType::expression)) {
          partition_keys_[stage.id] = {*text, Checker::at(entry.second), checker_.verbatim_offset(entry.second, key_path, *text)};
        }
      } else {
        checker_.error(Checker::at(entry.first), key_path, "unknown key" + hint(key, {"partitions", "key"}));
      }
    }
    if (!partition["partitions"]) checker_.error(Checker::at(partition), path + ".partition", "missing required key 'partitions' (how many partitions)");
    if (!partition["key"]) checker_.error(Checker::at(partition), path + ".partition", "missing required key 'key' (an integer expression over x: the partition, 0..partitions-1)");
  }

  void own_option(StageConfig& stage, const std::string& name, const YAML::Node& value, const std::string& path) {
    const OptionSpec* spec = nullptr;
    for (const auto& option : stage.type->options)
      if (option.name == name) spec = &option;
    // Kept in a canonical form, so that the runtime reads the value that was checked: yaml-cpp
    // reads `yes` as true, 0x10 as 16 and 010 as 8, which the text itself would not say to
    // std::stoll or a comparison with "true".
    std::optional<std::string> canonical;
    switch (spec->type) {
      case OptionType::integer:
        if (auto integer = scalar<std::int64_t>(value, checker_, path, spec->type)) canonical = std::to_string(*integer);
        break;
      case OptionType::number:
        if (auto number = scalar<double>(value, checker_, path, spec->type)) {
          if (std::isfinite(*number)) {
            char text[32];
            canonical = std::string(text, std::to_chars(text, text + sizeof text, *number).ptr);
          } else {
            checker_.error(Checker::at(value), path, std::string("expected a finite number, got ") + (std::isnan(*number) ? "NaN" : "infinity"));
          }
        }
        break;
      case OptionType::boolean:
        if (auto boolean = scalar<bool>(value, checker_, path, spec->type)) canonical = *boolean ? "true" : "false";
        break;
      default: canonical = scalar<std::string>(value, checker_, path, spec->type);
    }
    if (!canonical) return;
    stage.options[name] = *canonical;
    if (spec->least || spec->most) {
      const double number = std::stod(stage.options[name]);
      auto out_of_range = [&](const char* relation, double bound) {
        // Whole bounds in full (1000000000000, not 1e+12), as a reader would write them.
        std::ostringstream text;
        text << "must be " << relation;
        if (bound == std::floor(bound) && std::fabs(bound) < 1e15) {
          text << static_cast<std::int64_t>(bound);
        } else {
          text << bound;
        }
        text << ", got " << stage.options[name];
        checker_.error(Checker::at(value), path, text.str());
      };
      if (spec->least && (number < *spec->least || (spec->above_least && number <= *spec->least))) {
        out_of_range(spec->above_least ? "more than " : "at least ", *spec->least);
      } else if (spec->most && number > *spec->most) {
        out_of_range("at most ", *spec->most);
      }
    }
    if (spec->type == OptionType::expression) expression_marks_[stage.id] = {Checker::at(value), checker_.verbatim_offset(value, path, *canonical)};
  }

  // A subscription that names no stage it could read is reported, and kept out of the graph.
  void subscriptions(StageConfig& stage, const YAML::Node& value, const std::string& path) {
    auto add = [&](const YAML::Node& item, const std::string& item_path) {
      Subscription subscription;
      subscription.location = Checker::at(item);
      std::optional<std::string> id;
      if (item.IsScalar()) {
        id = stage_id(item, item_path);
      } else if (item.IsMap()) {
        for (const auto& entry : item) {
          const std::string key = entry.first.Scalar();
          const std::string key_path = item_path + "." + key;
          if (key == "stage") {
            id = stage_id(entry.second, key_path);
          } else if (key == "max_demand") {
            subscription.max_demand = count_value(entry.second, checker_, key_path, 0);
          } else if (key == "min_demand") {
            subscription.min_demand = count_value(entry.second, checker_, key_path, 0);
          } else if (key == "partition") {
            subscription.partition = count_value(entry.second, checker_, key_path, 0);
          } else if (key == "hand_off") {
            if (auto mode = one_of(entry.second, key_path, hand_off_choices())) subscription.hand_off = hand_off_of(*mode);
          } else if (key == "cancel") {
            auto mode = one_of(entry.second, key_path, {"permanent", "transient", "temporary"});
            if (mode == "transient") subscription.options.cancel = CancelMode::transient;
            if (mode == "temporary") subscription.options.cancel = CancelMode::temporary;
          } else {
            checker_.error(Checker::at(entry.first), key_path, "unknown key" + hint(key, {"stage", "max_demand", "min_demand", "partition", "cancel", "hand_off"}));
          }
        }
        if (!item["stage"]) checker_.error(subscription.location, item_path, "missing required key 'stage'");
      } else {
        checker_.error(subscription.location, item_path, "expected a stage id or a map with `stage`");
      }
      if (!id) {
        unread_subscriptions_.insert(stage.id);
        return;
      }
      subscription.stage = *id;
      stage.subscribe_to.push_back(std::move(subscription));
    };
    if (value.IsSequence()) {
      for (std::size_t i = 0; i < value.size(); ++i) add(value[i], path + "[" + std::to_string(i) + "]");
    } else {
      add(value, path);
    }
  }

  // The id a subscription names; an empty one (a ${VAR} set to "") names no stage.
  std::optional<std::string> stage_id(const YAML::Node& node, const std::string& path) {
    auto id = scalar<std::string>(node, checker_, path, OptionType::string);
    if (id && id->empty()) {
      checker_.error(Checker::at(node), path, "expected a stage id, got an empty string");
      return std::nullopt;
    }
    return id;
  }

  // References, roles, cycles, and then event types and expressions, in dependency order.
  void graph() {
    std::map<std::string, std::size_t> subscribers;
    for (const StageConfig* stage : every_stage()) check_links(*stage, subscribers);
    // A subscription that could not be read may have named any producer, and any partition: then
    // none is said to lack a consumer, nor a partition to be untaken.
    if (unread_subscriptions_.empty()) {
      for (const auto& stage : config_.stages) {
        if (stage.type->role != Role::consumer && !subscribers.contains(stage.id) && !subscribed_by_duplicates_.contains(stage.id)) {
          checker_.error(stage.location, "stages." + stage.id, "nothing subscribes to this " + std::string(role_name(stage.type->role)) + ": its events would go nowhere");
        } else if (stage.dispatcher == DispatcherKind::partition) {
          check_partitions_taken(stage);
        }
      }
    }
    for (const StageConfig* stage : every_stage())
      for (const auto& subscription : stage->subscribe_to) check_hand_off(*stage, subscription);
    // A dead-letter loop runs through a stage's on_error, which a subscription cycle never does:
    // each kind is reported, and neither repeats the other.
    cycles();
    dead_letter_loops();
    types();
  }

  // The stages of known type, then those without one (see stage()).
  std::vector<const StageConfig*> every_stage() const {
    std::vector<const StageConfig*> all;
    for (const auto& stage : config_.stages) all.push_back(&stage);
    for (const auto& stage : untyped_) all.push_back(&stage);
    return all;
  }

  // The stage of that id, with a known type or not: a cycle or a chain of dead letters runs
  // through either, and is reported along with the unknown type.
  const StageConfig* any_stage(const std::string& id) const {
    for (const StageConfig* stage : every_stage())
      if (stage->id == id) return stage;
    return nullptr;
  }

  bool known(const std::string& id) const { return std::find(ids_.begin(), ids_.end(), id) != ids_.end(); }

  // The stages a stage names exist and can feed it; the checks of its role need its type.
  void check_links(const StageConfig& stage, std::map<std::string, std::size_t>& subscribers) {
    const std::string path = "stages." + stage.id;
    if (stage.type != nullptr && stage.type->role == Role::producer && !stage.subscribe_to.empty()) {
      checker_.error(stage.subscribe_to.front().location, path + ".subscribe_to", "a " + stage.type->name + " stage is a producer and subscribes to nothing");
    }
    if (stage.on_error == stages::OnError::dead_letter) check_dead_letter(stage);
    if (stage.type != nullptr && stage.type->role != Role::producer && stage.subscribe_to.empty() &&
        !unread_subscriptions_.contains(stage.id) && !dead_letter_targets().contains(stage.id)) {
      checker_.error(stage.location, path, "a " + std::string(role_name(stage.type->role)) + " needs `subscribe_to`: nothing would feed it");
    }
    for (const auto& subscription : stage.subscribe_to) {
      const StageConfig* target = config_.find(subscription.stage);
      if (target == nullptr) {
        if (!known(subscription.stage)) {
          checker_.error(subscription.location, path + ".subscribe_to", "no stage '" + subscription.stage + "'" + hint(subscription.stage, ids_));
          // The stage a typo surely meant has its consumer: no follow-on error that nothing
          // subscribes to it, or that a partition of it is untaken.
          if (auto meant = text::closest(subscription.stage, ids_)) {
            ++subscribers[*meant];
            unsure_partitions_.insert(*meant);
          }
        }
      } else if (target->type->role == Role::consumer) {
        checker_.error(subscription.location, path + ".subscribe_to", "'" + subscription.stage + "' is a consumer: it emits no events");
      } else {
        ++subscribers[subscription.stage];
        check_partition(stage, subscription, *target, path + ".subscribe_to");
      }
    }
  }

  std::set<std::string> dead_letter_targets() const {
    std::set<std::string> targets;
    for (const StageConfig* stage : every_stage())
      if (stage->on_error == stages::OnError::dead_letter) targets.insert(stage->dead_letter);
    return targets;
  }

  void check_dead_letter(const StageConfig& stage) {
    const std::string path = "stages." + stage.id + ".on_error.dead_letter";
    const StageConfig* target = config_.find(stage.dead_letter);
    if (target != nullptr && target->type->role == Role::producer) {
      checker_.error(stage.dead_letter_location, path, "'" + stage.dead_letter + "' is a producer: it cannot take failed events");
    } else if (stage.dead_letter == stage.id) {
      checker_.error(stage.dead_letter_location, path, "a stage cannot be its own dead-letter stage");
    } else if (target == nullptr && !known(stage.dead_letter)) {
      checker_.error(stage.dead_letter_location, path, "no stage '" + stage.dead_letter + "'" + hint(stage.dead_letter, ids_));
    }
  }

  // hand_off: at_once takes effect only for a demand dispatcher's only consumer: anywhere else it
  // would silently do nothing, so it is an error.
  void check_hand_off(const StageConfig& stage, const Subscription& subscription) {
    const StageConfig* producer = config_.find(subscription.stage);
    if (subscription.options.hand_off != HandOff::at_once || producer == nullptr || producer->type->role == Role::consumer) return;
    const std::string path = "stages." + stage.id + ".subscribe_to";
    if (producer->dispatcher != DispatcherKind::demand) {
      const char* kind = producer->dispatcher == DispatcherKind::broadcast ? "broadcasts" : "dispatches by partition";
      checker_.error(subscription.location, path, "hand_off: at_once needs a demand dispatcher, but '" + producer->id + "' " + kind);
      return;
    }
    std::size_t consumers = 0;
    for (const StageConfig* other : every_stage())
      for (const auto& edge : other->subscribe_to)
        if (edge.stage == producer->id) consumers += other->concurrency;
    if (consumers > 1) {
      checker_.error(subscription.location, path,
                     "hand_off: at_once needs its producer's only consumer, but '" + producer->id + "' has " +
                         std::to_string(consumers) + " (counting concurrency)");
    }
  }

  // A subscription to a partitioned producer names one partition, in range, not yet taken.
  void check_partition(const StageConfig& stage, const Subscription& subscription, const StageConfig& producer,
                       const std::string& path) {
    if (producer.dispatcher != DispatcherKind::partition) {
      if (subscription.partition) {
        checker_.error(subscription.location, path, "'" + producer.id + "' does not dispatch by partition, so `partition` means nothing here");
      }
      return;
    }
    const std::string range = partition_range(producer);
    if (!subscription.partition) {
      checker_.error(subscription.location, path, "'" + producer.id + "' dispatches by partition: pick one with {stage: " + producer.id +
                                                      ", partition: K}" + (range.empty() ? "" : ", K in " + range));
    } else if (!range.empty() && *subscription.partition >= producer.partitions) {
      checker_.error(subscription.location, path, "partition " + std::to_string(*subscription.partition) + " is out of range: '" + producer.id + "' has " + range);
    } else if (auto [taken, fresh] = partition_owners_.emplace(std::make_pair(producer.id, *subscription.partition), stage.id); !fresh) {
      checker_.error(subscription.location, path, "partition " + std::to_string(*subscription.partition) + " of '" + producer.id + "' is already taken by '" + taken->second + "'");
    } else {
      if (stage.concurrency > 1) {
        checker_.error(subscription.location, path, "a partition has exactly one consumer, but this stage has concurrency " + std::to_string(stage.concurrency));
      }
      return;
    }
    // The partition this subscription meant is not known, nor then which ones are left.
    unsure_partitions_.insert(producer.id);
  }

  // "0..N-1", or empty when `partitions` is missing or out of bounds (reported).
  static std::string partition_range(const StageConfig& stage) {
    return stage.partitions == 0 ? "" : "0.." + std::to_string(stage.partitions - 1);
  }

  // Every partition needs its consumer: the events of one that none takes would be dropped.
  void check_partitions_taken(const StageConfig& producer) {
    if (producer.partitions == 0 || unsure_partitions_.contains(producer.id) || subscribed_by_duplicates_.contains(producer.id)) return;
    std::string untaken;  // as spans: 1, 3..5
    std::size_t count = 0;
    for (std::size_t first = 0; first < producer.partitions; ++first) {
      if (partition_owners_.contains({producer.id, first})) continue;
      std::size_t last = first;
      while (last + 1 < producer.partitions && !partition_owners_.contains({producer.id, last + 1})) ++last;
      untaken += (untaken.empty() ? "" : ", ") + std::to_string(first) + (last > first ? ".." + std::to_string(last) : "");
      count += last - first + 1;
      first = last;
    }
    if (count == 0) return;
    checker_.error(partition_counts_.at(producer.id), "stages." + producer.id + ".dispatcher.partition.partitions",
                   (count == 1 ? "no consumer takes partition " + untaken + ", so its events" : "no consumer takes partitions " + untaken + ", so their events") +
                       " would be dropped (a consumer takes one with subscribe_to: [{stage: " + producer.id + ", partition: K}])");
  }

  // A stage waits for its producers to end, and a dead-letter stage also for the stages that
  // feed it. A dead-letter stage that its feeder waits for, through any chain of these, would
  // take that stage's failed events back in, and the pipeline could never end.
  void dead_letter_loops() {
    for (const StageConfig* stage : every_stage()) {
      if (stage->on_error != stages::OnError::dead_letter || stage->dead_letter == stage->id) continue;  // reported already
      if (!waits_for(*stage, stage->dead_letter)) continue;
      checker_.error(stage->dead_letter_location, "stages." + stage->id + ".on_error.dead_letter",
                     "'" + stage->dead_letter + "' feeds '" + stage->id +
                         "', through subscriptions or dead letters: each would wait for the other to end, so the "
                         "pipeline could never end");
    }
  }

  // Whether `stage` waits, directly or not, for `other` to end.
  bool waits_for(const StageConfig& stage, const std::string& other) const {
    std::set<std::string> seen{stage.id};
    std::vector<const StageConfig*> todo{&stage};
    auto reach = [&](const std::string& id) {
      const StageConfig* next = any_stage(id);
      if (next != nullptr && seen.insert(id).second) todo.push_back(next);
    };
    while (!todo.empty()) {
      const StageConfig* next = todo.back();
      todo.pop_back();
      for (const auto& subscription : next->subscribe_to) {
        if (subscription.stage == other) return true;
        reach(subscription.stage);
      }
      for (const StageConfig* feeder : every_stage()) {
        if (feeder->on_error != stages::OnError::dead_letter || feeder->dead_letter != next->id) continue;
        if (feeder->id == other) return true;
        reach(feeder->id);
      }
    }
    return false;
  }

  // Reports each cycle as a -> b -> a.
  void cycles() {
    std::map<std::string, int> state;  // 0 unseen, 1 on the path, 2 done
    std::vector<std::string> path;
    std::function<void(const StageConfig&)> visit = [&](const StageConfig& stage) {
      state[stage.id] = 1;
      path.push_back(stage.id);
      for (const auto& subscription : stage.subscribe_to) {
        const StageConfig* producer = any_stage(subscription.stage);
        if (producer == nullptr) continue;  // reported already
        if (state[producer->id] == 1) {
          auto from = std::find(path.begin(), path.end(), producer->id);
          std::string cycle;
          for (auto it = from; it != path.end(); ++it) cycle += *it + " -> ";
          checker_.error(stage.location, "stages." + stage.id + ".subscribe_to", "a cycle: " + cycle + producer->id);
        } else if (state[producer->id] == 0) {
          visit(*producer);
        }
      }
      path.pop_back();
      state[stage.id] = 2;
    };
    for (const StageConfig* stage : every_stage())
      if (state[stage->id] == 0) visit(*stage);
  }

  // Event types and expressions, in dependency order, as far as the other errors allow, so that
  // one pass reports them all: a stage fed by a producer that is missing, broken, a consumer, on
  // a cycle, or of unknown output has an unknown input, and its expressions are checked only for
  // what holds whatever the input (see check_untyped).
  void types() {
    std::map<std::string, std::optional<expr::Type>> outputs;  // by stage id: its event type, if known
    std::vector<bool> done(config_.stages.size(), false);
    auto ready = [&](const StageConfig& stage) {
      return std::all_of(stage.subscribe_to.begin(), stage.subscribe_to.end(), [&](const Subscription& subscription) {
        const StageConfig* producer = config_.find(subscription.stage);
        return producer == nullptr || producer->type->role == Role::consumer || outputs.contains(producer->id);
      });
    };
    auto type_at = [&](std::size_t i) {
      outputs.try_emplace(config_.stages[i].id, type_stage(config_.stages[i], outputs));
      done[i] = true;
    };
    // Rounds in dependency order. When no stage is ready (the rest wait on a cycle), the first
    // one left is typed with what its producers have so far, and the rounds go on.
    for (;;) {
      bool progress = false;
      for (std::size_t i = 0; i < config_.stages.size(); ++i) {
        if (done[i] || !ready(config_.stages[i])) continue;
        type_at(i);
        progress = true;
      }
      if (progress) continue;
      const auto left = std::find(done.begin(), done.end(), false);
      if (left == done.end()) break;
      type_at(static_cast<std::size_t>(left - done.begin()));
    }
  }

  // Types one stage from its producers' outputs; returns its own output type, if known.
  std::optional<expr::Type> type_stage(StageConfig& stage, const std::map<std::string, std::optional<expr::Type>>& outputs) {
    const std::string path = "stages." + stage.id;
    std::optional<expr::Type> input;
    bool input_known = true;
    if (dead_letter_targets().contains(stage.id)) input = expr::Type::string;  // `stage: error: event` lines
    for (const auto& subscription : stage.subscribe_to) {
      const auto found = outputs.find(subscription.stage);
      const StageConfig* producer = config_.find(subscription.stage);
      if (found == outputs.end() || !found->second || producer == nullptr || producer->type->role == Role::consumer) {
        input_known = false;
        continue;
      }
      const expr::Type t = *found->second;
      if (input && *input != t) {
        checker_.error(subscription.location, path + ".subscribe_to",
                       "its producers emit different event types (" + std::string(expr::type_name(*input)) + " and " + std::string(expr::type_name(t)) + ")");
      }
      input = t;
    }
    if (!input_known) input.reset();
    if (input) stage.input_type = *input;
    std::optional<expr::Type> output;
    const std::string& type = stage.type->name;
    if (type == "range") {
      output = expr::Type::integer;
    } else if (type == "lines" || type == "flat_map") {
      output = expr::Type::string;
      if (type == "flat_map" && input && *input != expr::Type::string) {
        checker_.error(stage.location, path, "flat_map splits strings, but its input events are " + std::string(expr::type_name(*input)) + "s");
      }
    } else if (type == "batch") {
      output = expr::Type::string;
    } else if (type == "generate" || type == "map" || type == "filter" || type == "async_map") {
      const bool generates = type == "generate";
      // A missing expr is reported as such; over an input of unknown type, only what holds for
      // any is checked. Either way the output stays unknown.
      if (stage.options.contains("expr") && (generates || input)) {
        compile(stage, generates ? expr::Type::integer : *input, generates ? "i" : "x");
      } else if (stage.options.contains("expr")) {
        check_untyped(stage);
      }
      if (stage.expression && type == "filter") {
        output = *input;
        if (stage.expression->type() != expr::Type::boolean) {
          checker_.error(expression_marks_[stage.id].first, path + ".expr",
                         "a filter needs a boolean expression, this one gives " + std::string(expr::type_name(stage.expression->type())) + "s");
        }
      } else if (stage.expression) {
        const expr::Type result = stage.expression->type();
        output = result == expr::Type::boolean ? expr::Type::integer : result;
      }
    } else {
      output = input;
      if (type == "sum" && input == expr::Type::string) checker_.error(stage.location, path, "sum adds numbers, but its input events are strings");
    }
    if (output) stage.event_type = *output;
    if (stage.dispatcher == DispatcherKind::partition) compile_partition_key(stage, output);
    return output;
  }

  // An expression over an input of unknown type: an error it gives for every type x could have
  // (a syntax error, an unknown name) is its own; any other depends on the input, and waits for
  // the errors that hide the input to be fixed.
  void check_untyped(const StageConfig& stage) {
    const auto& [location, text_offset] = expression_marks_[stage.id];
    report_untyped(stage.options.at("expr"), "x", location, text_offset, "stages." + stage.id + ".expr");
  }

  void report_untyped(const std::string& text, std::string_view variable, Location location, std::optional<int> text_offset,
                      const std::string& path) {
    std::optional<std::pair<std::size_t, std::string>> common;
    for (expr::Type x : {expr::Type::integer, expr::Type::floating, expr::Type::string}) {
      try {
        expr::Expression::compile(text, x, variable);
        return;
      } catch (const expr::SyntaxError& error) {
        const std::pair<std::size_t, std::string> seen{error.column(), error.what()};
        if (common && *common != seen) return;
        common = seen;
      }
    }
    expression_error(text, location, text_offset, common->first, path, common->second);
  }

  void compile_partition_key(StageConfig& stage, std::optional<expr::Type> events) {
    auto found = partition_keys_.find(stage.id);
    if (found == partition_keys_.end()) return;
    const auto& [text, location, text_offset] = found->second;
    const std::string path = "stages." + stage.id + ".dispatcher.partition.key";
    if (!events) {
      report_untyped(text, "x", location, text_offset, path);
      return;
    }
    stage.partition_key = compile_at(text, *events, "x", location, text_offset, path);
    if (stage.partition_key && stage.partition_key->type() != expr::Type::integer) {
      const std::string range = partition_range(stage);
      checker_.error(location, path, "a partition key is an integer (the partition" + (range.empty() ? "" : ", " + range) + "), this one gives " + std::string(expr::type_name(stage.partition_key->type())) + "s");
    }
  }

  void compile(StageConfig& stage, expr::Type input, std::string_view variable) {
    const auto& [location, text_offset] = expression_marks_[stage.id];
    stage.expression = compile_at(stage.options["expr"], input, variable, location, text_offset, "stages." + stage.id + ".expr");
  }

  // A syntax or type error points at its column inside the expression.
  std::optional<expr::Expression> compile_at(const std::string& text, expr::Type input, std::string_view variable,
                                             Location location, std::optional<int> text_offset, const std::string& path) {
    try {
      return expr::Expression::compile(text, input, variable);
    } catch (const expr::SyntaxError& error) {
      expression_error(text, location, text_offset, error.column(), path, error.what());
      return std::nullopt;
    }
  }

  // An error at byte `column` (0-based) of the expression `text`, whose scalar starts at
  // `location`, and whose text starts `text_offset` past it if written in the file as it reads
  // (Checker::verbatim_offset): then the file's column is exact, in bytes as yaml-cpp's marks
  // count. Otherwise it points at the scalar, and says where in the expression the error is, in
  // characters as a reader counts them: UTF-8 lead bytes, not continuation bytes (10xxxxxx).
  void expression_error(const std::string& text, Location location, std::optional<int> text_offset, std::size_t column,
                        const std::string& path, const std::string& message) {
    if (text_offset) {
      location.column += *text_offset + static_cast<int>(column);
      checker_.error(location, path, message);
      return;
    }
    const auto before = std::string_view(text).substr(0, column);
    const auto characters = std::count_if(before.begin(), before.end(), [](unsigned char byte) { return (byte & 0xC0) != 0x80; });
    checker_.error(location, path, message + " (at character " + std::to_string(characters + 1) + " of the expression as read)");
  }

  Checker& checker_;
  PipelineConfig config_;
  std::vector<std::string> ids_;  // every stage id, the broken ones too, for hints
  std::set<std::string> subscribed_by_duplicates_;  // see note_subscriptions
  std::set<std::string> unread_subscriptions_;  // stages with a subscription that names no stage it could read
  // Where each expr scalar starts, and its text_offset (see expression_error).
  std::map<std::string, std::pair<Location, std::optional<int>>> expression_marks_;
  std::map<std::string, std::tuple<std::string, Location, std::optional<int>>> partition_keys_;  // text, where, text_offset
  std::map<std::pair<std::string, std::size_t>, std::string> partition_owners_;   // (producer, partition) -> consumer
  std::set<std::string> unsure_partitions_;  // producers a subscription names no valid partition of
  std::map<std::string, Location> partition_counts_;  // where each stage's `partitions` is given
  std::vector<StageConfig> untyped_;  // stages whose type is missing or unknown (see stage())
};

}  // namespace

PipelineConfig load_pipeline(const std::string& file, const std::vector<std::string>& overrides) {
  Checker checker(file);
  YAML::Node root;
  try {
    std::ifstream in(file);
    if (!in) throw ConfigErrors({file + ":0:0: error: cannot read the file"});
    std::ostringstream text;
    text << in.rdbuf();
    checker.set_source(text.str());
    root = YAML::Load(text.str());
  } catch (const YAML::ParserException& error) {
    checker.error({error.mark.line + 1, error.mark.column + 1}, "", "YAML syntax: " + error.msg);
    throw ConfigErrors(checker.take());
  }
  check_duplicate_keys(root, "", checker);
  for (const auto& setting : overrides) apply_override(root, setting, checker);
  Loader loader(file, checker);
  PipelineConfig config = loader.load(root);
  if (checker.failed()) throw ConfigErrors(checker.take());
  return config;
}

}  // namespace sluice::yaml
