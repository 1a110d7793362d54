#include "spawn.hpp"

#include <sluice/dispatcher.hpp>

#include <unistd.h>

#include <optional>
#include <stdexcept>
#include <type_traits>

namespace sluice::cli {

std::int64_t integer_option(const yaml::StageConfig& stage, const std::string& name, std::int64_t fallback) {
  auto found = stage.options.find(name);
  return found == stage.options.end() ? fallback : std::stoll(found->second);
}

detail::ActorRef spawn(System& system, const yaml::StageConfig& stage, StageOptions options,
                         const std::shared_ptr<stages::Failures>& failures, Steps& steps, stages::DeadLetter dead_letter) {
  const std::string& type = stage.type->name;
  auto step = [&] {
    auto made = std::make_shared<stages::ExpressionStep>(options.name, *stage.expression, stage.on_error, failures, dead_letter);
    steps[options.name] = made;
    return made;
  };
  auto milliseconds = [&](const std::string& name, std::int64_t fallback) {
    return std::chrono::milliseconds(integer_option(stage, name, fallback));
  };
  // Events a stage that holds them (delay, rate_limit) may hold at once: its demand.
  const std::size_t window = stage.max_demand;
  // Each stage type is instantiated for the event types of its edges: `in` (what it receives)
  // and `out` (what it emits).
  using expr::with_event_type;
  using Core = detail::ActorRef;
  const expr::Type in = stage.input_type;
  const expr::Type out = stage.event_type;
  if (type == "range") {
    std::optional<std::int64_t> to;
    if (stage.options.contains("to")) to = integer_option(stage, "to", 0);
    return system.spawn<stages::RangeSource>(options, integer_option(stage, "from", 1), to, integer_option(stage, "step", 1)).handle();
  }
  if (type == "generate") {
    return with_event_type(out, [&]<class Out>(std::type_identity<Out>) -> Core {
      return system.spawn<stages::GenerateSource<Out>>(options, integer_option(stage, "count", 0), step()).handle();
    });
  }
  if (type == "lines") return system.spawn<stages::LinesSource>(options, stage.options.at("path")).handle();
  if (type == "map" || type == "async_map") return spawn_map(system, stage, options, step());
  if (type == "flat_map") return system.spawn<stages::FlatMapStage>(options, stage.options.at("split")).handle();
  if (type == "sum") {
    return with_event_type(in, [&]<class In>(std::type_identity<In>) -> Core {
      if constexpr (std::is_same_v<In, std::string>) {
        throw std::logic_error("sum over strings passed the loader");
      } else {
        return system.spawn<stages::SumSink<In>>(options, STDOUT_FILENO).handle();
      }
    });
  }
  // The rest receive one event type and emit the same, or nothing, or strings (batch).
  return with_event_type(in, [&]<class In>(std::type_identity<In>) -> Core {
    if (type == "filter") return system.spawn<stages::FilterStage<In>>(options, step()).handle();
    if (type == "take") return system.spawn<stages::TakeStage<In>>(options, static_cast<std::uint64_t>(integer_option(stage, "count", 0))).handle();
    if (type == "batch") {
      auto sep = stage.options.find("sep");
      return system.spawn<stages::BatchStage<In>>(options, static_cast<std::size_t>(integer_option(stage, "size", 1)), milliseconds("timeout_ms", 0),
                                                  sep == stage.options.end() ? "," : sep->second).handle();
    }
    if (type == "delay") return system.spawn<stages::DelayStage<In>>(options, milliseconds("ms", 0), window).handle();
    if (type == "rate_limit") return system.spawn<stages::RateLimitStage<In>>(options, std::stod(stage.options.at("per_second")), window).handle();
    if (type == "stdout") return system.spawn<stages::WriterSink<In>>(options, STDOUT_FILENO).handle();
    if (type == "file") {
      auto append = stage.options.find("append");
      return system.spawn<stages::WriterSink<In>>(options, stage.options.at("path"), append != stage.options.end() && append->second == "true").handle();
    }
    if (type == "null") return system.spawn<stages::NullSink<In>>(options).handle();
    if (type == "count") return system.spawn<stages::CountSink<In>>(options, STDOUT_FILENO).handle();
    throw std::logic_error("no stage type '" + type + "'");
  });
}

std::any dispatcher_of(const yaml::StageConfig& stage) {
  switch (stage.dispatcher) {
    case yaml::DispatcherKind::broadcast: return dispatch::Broadcast{};
    case yaml::DispatcherKind::partition:
      return expr::with_event_type(stage.event_type, [&]<class Event>(std::type_identity<Event>) -> std::any {
        using Key = typename dispatch::Partition<Event>::Key;
        // The key expression runs over a whole batch's column; the error names the first event
        // whose key fails, whether it is out of range or does not evaluate.
        auto partition = dispatch::Partition<Event>::numbered(stage.partitions, {});
        partition.hash_batch = [key = *stage.partition_key, partitions = stage.partitions, id = stage.id](
                                   std::span<const Event> events, std::vector<Key>& keys) {
          auto check = [&](const Event& event, std::int64_t number) {
            if (number < 0 || static_cast<std::size_t>(number) >= partitions) {
              throw std::runtime_error("the partition key of event " + to_string(Value(event)) + " is " +
                                       std::to_string(number) + ", but '" + id + "' has partitions 0.." +
                                       std::to_string(partitions - 1));
            }
          };
          expr::Values<std::int64_t> numbers;
          try {
            numbers = key.evaluate<std::int64_t>(events);
          } catch (const expr::EvalError&) {
            // It names a failing event, not always the first (an operand is evaluated whole before
            // the next): one event at a time finds the first failure of either kind.
            for (const Event& event : events) {
              std::int64_t number = 0;
              try {
                number = key.evaluate<std::int64_t>(std::span<const Event>(&event, 1)).front();
              } catch (const expr::EvalError& failure) {
                throw std::runtime_error("the partition key of event " + to_string(Value(event)) + " failed: " +
                                         failure.what());
              }
              check(event, number);
            }
            throw;
          }
          for (std::size_t i = 0; i < numbers.size(); ++i) {
            check(events[i], numbers[i]);
            keys.emplace_back(PartitionKey{static_cast<std::size_t>(numbers[i])});
          }
        };
        return partition;
      });
    case yaml::DispatcherKind::demand: break;
  }
  return dispatch::Demand{};
}

}  // namespace sluice::cli
