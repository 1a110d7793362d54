#pragma once
// Builds the stages of a checked pipeline configuration: each stage type instantiated for the
// event types of its edges.
#include "../yaml/pipeline_config.hpp"

#include <sluice/stages/value_stages.hpp>
#include <sluice/system.hpp>

#include <any>
#include <map>
#include <memory>
#include <string>

namespace sluice::cli {

// The expression steps of a pipeline's stages, by stage name (for their error counts).
using Steps = std::map<std::string, std::shared_ptr<stages::ExpressionStep>>;

// Spawns one copy of `stage`; an expression stage's step goes into `steps` too, by name.
// `dead_letter` takes its failed events when its on_error says dead_letter.
detail::ActorRef spawn(System& system, const yaml::StageConfig& stage, StageOptions options,
                         const std::shared_ptr<stages::Failures>& failures, Steps& steps, stages::DeadLetter dead_letter);

// The dispatcher `stage` names, for its StageOptions.
std::any dispatcher_of(const yaml::StageConfig& stage);

// map and async_map, for every pair of event types: a translation unit of their own, so that
// their eighteen instantiations compile in parallel with the rest.
detail::ActorRef spawn_map(System& system, const yaml::StageConfig& stage, StageOptions options,
                             std::shared_ptr<stages::ExpressionStep> step);

// An integer option of `stage`, or `fallback` when the file leaves it out.
std::int64_t integer_option(const yaml::StageConfig& stage, const std::string& name, std::int64_t fallback);

}  // namespace sluice::cli
