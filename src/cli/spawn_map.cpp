#include "spawn.hpp"

#include <sluice/async_options.hpp>
#include <sluice/defaults.hpp>

#include <chrono>
#include <type_traits>

namespace sluice::cli {

detail::ActorRef spawn_map(System& system, const yaml::StageConfig& stage, StageOptions options,
                             std::shared_ptr<stages::ExpressionStep> step) {
  using Core = detail::ActorRef;
  return expr::with_event_type(stage.input_type, [&]<class In>(std::type_identity<In>) -> Core {
    return expr::with_event_type(stage.event_type, [&]<class Out>(std::type_identity<Out>) -> Core {
      if (stage.type->name == "map") return system.spawn<stages::MapStage<In, Out>>(options, step).handle();
      const std::chrono::milliseconds delay(integer_option(stage, "delay_ms", 0));
      auto ordered = stage.options.find("ordered");
      const AsyncOptions async{
          .max_concurrency = static_cast<std::size_t>(integer_option(stage, "max_concurrency", static_cast<std::int64_t>(defaults::async_max_concurrency()))),
          .ordered = ordered == stage.options.end() || ordered->second == "true",
          .timeout = std::chrono::milliseconds(integer_option(stage, "timeout_ms", defaults::async_timeout.count())),
          .on_timeout = OnTimeout::kill_task,  // a late task is an event error: on_error decides
          .zip_input_on_exit = true,           // so that the error names the event
          .kind = delay.count() > 0 ? TaskKind::blocking : TaskKind::cpu};
      return system
          .spawn<stages::AsyncMapStage<In, Out>>(options, stages::DelayedExpression<In, Out>{step, delay}, async, stages::DeliverValues<In, Out>{step})
          .handle();
    });
  });
}

}  // namespace sluice::cli
