#pragma once
// YAML-described pipelines: the catalog of stage types, and a loader that checks a file in one
// pass and reports every error as FILE:LINE:COL: error: PATH: MESSAGE.
#include <sluice/expr.hpp>
#include <sluice/stage.hpp>
#include <sluice/stages/value_stages.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::yaml {

enum class Role { producer, producer_consumer, consumer };
enum class OptionType { integer, number, string, boolean, expression };

struct OptionSpec {
  std::string name;
  OptionType type;
  bool required;
  std::string default_value;  // as written in YAML; empty: none
  std::string description;
  std::optional<double> least{};  // numeric options: the least value allowed, if any
  bool above_least = false;       // the value must exceed `least` rather than reach it
  std::optional<double> most{};   // numeric options: the greatest value allowed, if any
};

struct StageTypeSpec {
  std::string name;
  Role role;
  std::string description;
  std::vector<OptionSpec> options;
};

const std::vector<StageTypeSpec>& catalog();
// The keys every stage accepts, besides its type's own options.
const std::vector<OptionSpec>& common_options();
std::string_view role_name(Role role);
std::string_view option_type_name(OptionType type);

struct Location {
  int line = 0;  // 1-based
  int column = 0;
};

struct Subscription {
  std::string stage;
  SubscribeOptions options;  // max_demand/min_demand: its own, else the stage's
  Location location;
  std::optional<std::size_t> max_demand;  // as written, before the stage's defaults apply
  std::optional<std::size_t> min_demand;
  std::optional<std::size_t> partition;  // with a partition dispatcher: which one
  std::optional<HandOff> hand_off;         // as written, before the stage's default applies
};

enum class DispatcherKind { demand, broadcast, partition };

struct StageConfig {
  std::string id;
  const StageTypeSpec* type = nullptr;
  Location location;
  std::vector<Subscription> subscribe_to;
  std::size_t max_demand = defaults::max_demand;
  std::optional<std::size_t> min_demand;
  std::size_t concurrency = 1;
  HandOff hand_off = HandOff::queued;  // the default of its subscriptions
  std::optional<std::size_t> buffer_size;  // unset: the stage kind's default (StageOptions)
  BufferKeep buffer_keep = BufferKeep::last;
  stages::OnError on_error = stages::OnError::stop;
  std::string dead_letter;  // with on_error: dead_letter, the stage that gets the failed events
  Location dead_letter_location;
  DispatcherKind dispatcher = DispatcherKind::demand;
  std::size_t partitions = 0;                     // with a partition dispatcher
  std::optional<expr::Expression> partition_key;  // an integer expression over x: 0..partitions-1
  std::map<std::string, std::string> options;  // the type's own options, interpolated
  expr::Type event_type = expr::Type::integer;    // of the events it emits (a sink: receives)
  expr::Type input_type = expr::Type::integer;    // of the events it receives (not a producer)
  std::optional<expr::Expression> expression;
};

struct PipelineConfig {
  std::string file;
  std::string name;
  std::vector<StageConfig> stages;  // in file order

  const StageConfig* find(std::string_view id) const;
};

// Every error of a file, each line formatted FILE:LINE:COL: error: PATH: MESSAGE.
class ConfigErrors : public std::runtime_error {
 public:
  explicit ConfigErrors(std::vector<std::string> lines);
  const std::vector<std::string>& lines() const noexcept { return lines_; }

 private:
  std::vector<std::string> lines_;
};

// Loads and checks `file`; `overrides` are --set arguments (stages.ID.KEY=VALUE). Throws
// ConfigErrors with every error found.
PipelineConfig load_pipeline(const std::string& file, const std::vector<std::string>& overrides = {});

}  // namespace sluice::yaml
