#pragma once
// The pipeline DSL: a linear chain in one expression, read left to right as Elixir's |>.
//
//   auto sum = sluice::from<NumberProducer>(system, 1, 100)
//            | sluice::via<NumberProcessor>()
//            | sluice::map([](std::int64_t x) { return x + 1; }, {.copies = 2})
//            | sluice::into<SumConsumer>();
//   system.wait();
//
// sluice::fuse(map(f), filter(g), ...) runs adjacent maps and filters as one stage.
//
// Each step spawns its stage(s) on the System and subscribes them to the previous step's.
// The chain's new stages start together once its last step (each, into) attaches, or once the
// last Flow of an unfinished chain is gone, so a chain built on a running System is whole before
// its first event flows.
// A step with copies > 1 runs that many parallel stages; each subscribes to every stage of
// the previous step, whose demand dispatcher feeds the copies with the most demand first.
// For fan-in and fan-out beyond a chain, wire StageRefs with System::subscribe and continue
// a chain from any of them with from(system, ref).
#include <sluice/async_options.hpp>
#include <sluice/defaults.hpp>
#include <sluice/detail/async_map_stage.hpp>
#include <sluice/detail/pipeline_stages.hpp>
#include <sluice/stage.hpp>
#include <sluice/stage_ref.hpp>
#include <sluice/subscription.hpp>
#include <sluice/system.hpp>

#include <cstddef>
#include <exception>
#include <map>
#include <memory>
#include <optional>
#include <ranges>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace sluice {

// Options of one step of a pipeline.
struct StepOptions {
  std::string name{};  // defaults to the kind of step ("map", "filter", ...)
  std::size_t max_demand = defaults::max_demand;
  std::optional<std::size_t> min_demand{};  // defaults to max_demand / 2
  std::size_t copies = 1;                 // parallel copies, fed by demand: 1 to defaults::max_copies
  std::optional<std::size_t> buffer_size{};  // as StageOptions::buffer_size
  BufferKeep buffer_keep = BufferKeep::last;
  HandOff hand_off = HandOff::queued;     // how batches reach this step (see HandOff)
};

namespace detail {

// The stages a chain has spawned held (System::spawn_held), released together once the chain
// is whole: when its last step attaches, or when the last Flow of an unfinished chain goes away
// (an exception mid-chain included), or when the System starts again (wait(), drain()). Until
// then none runs, so a step's copies all subscribe before any event flows, and no stage can
// complete before its consumers subscribe, even on a System that runs already (Elixir's Flow
// starts its stages the same way: demand accumulated, every subscription made, then demand
// forwarded). Every Flow of a chain shares one: a Flow is continued once (fan-out goes through
// StageRefs), since the first sink to attach releases the whole chain.
// It also names the chain's steps.
class HeldStages {
 public:
  explicit HeldStages(System& system) : system_(system), exceptions_when_built_(std::uncaught_exceptions()) {}
  HeldStages(const HeldStages&) = delete;
  HeldStages& operator=(const HeldStages&) = delete;
  // Gone while an exception unwinds the expression that built the chain, the chain failed to
  // build: its stages stop (shutdown), since they lack a consumer or a producer and would never
  // complete.
  ~HeldStages() {
    if (std::uncaught_exceptions() > exceptions_when_built_)
      for (const ActorRef& stage : stages_) stage->post(Stop{ExitReason::shutdown()});
    release();
  }

  void add(ActorRef stage) { stages_.push_back(std::move(stage)); }
  // A step's default name: its kind, numbered from the chain's second step of that kind on
  // ("map", "map#2"), so that an error names the step.
  std::string step_name(const std::string& kind) {
    const std::size_t count = ++steps_of_kind_[kind];
    return count == 1 ? kind : kind + "#" + std::to_string(count);
  }
  // A stage the System released already (start(), its destructor) is not held: the System is
  // not touched then, since a Flow may outlive it.
  void release() {
    for (const ActorRef& stage : std::exchange(stages_, {}))
      if (stage->held()) system_.release_held(*stage);
  }

 private:
  System& system_;
  std::vector<ActorRef> stages_;
  int exceptions_when_built_;
  std::map<std::string, std::size_t> steps_of_kind_;
};

}  // namespace detail

// The open end of a pipeline: the stages whose events of type Out the next step consumes.
template <class Out>
class Flow {
 public:
  Flow(System& system, std::vector<detail::ActorRef> stages, std::shared_ptr<detail::HeldStages> held = nullptr)
      : system_(&system), stages_(std::move(stages)),
        held_(held != nullptr ? std::move(held) : std::make_shared<detail::HeldStages>(system)) {}
  System& system() const noexcept { return *system_; }
  const std::vector<detail::ActorRef>& stages() const noexcept { return stages_; }
  // The chain's stages that wait to run, shared by every Flow of the chain.
  const std::shared_ptr<detail::HeldStages>& held() const noexcept { return held_; }

 private:
  System* system_;
  std::vector<detail::ActorRef> stages_;
  std::shared_ptr<detail::HeldStages> held_;
};

// The stages a terminal step spawned: one per copy.
template <StageType S>
class Stages {
 public:
  explicit Stages(std::vector<StageRef<S>> refs) : refs_(std::move(refs)) {}
  const StageRef<S>& front() const noexcept { return refs_.front(); }
  S* operator->() const noexcept { return front().operator->(); }
  const StageRef<S>& operator[](std::size_t i) const noexcept { return refs_[i]; }
  std::size_t size() const noexcept { return refs_.size(); }
  auto begin() const noexcept { return refs_.begin(); }
  auto end() const noexcept { return refs_.end(); }

 private:
  std::vector<StageRef<S>> refs_;
};

// --- sources ---------------------------------------------------------------------------------

namespace detail {
template <ProducerStage S, class... Args>
struct SourceStep;
}  // namespace detail

// Starts a chain at a new producer stage S built from `args`, named "source".
template <ProducerStage S, class... Args>
Flow<typename S::out_type> from(System& system, Args&&... args);
// The same with options: from(system, source<S>(args...).with({.name = "numbers"})).
template <ProducerStage S, class... Args>
Flow<typename S::out_type> from(System& system, detail::SourceStep<S, Args...> source);
// Starts a chain at a producer (or producer-consumer) that already runs.
template <EmittingStage S>
Flow<typename S::out_type> from(System& system, const StageRef<S>& stage);
// Starts a chain at a range, emitted lazily on demand (it may be endless).
template <std::ranges::input_range R>
  requires std::ranges::view<std::remove_cvref_t<R>> || std::is_rvalue_reference_v<R&&>
Flow<std::ranges::range_value_t<R>> from(System& system, R&& range, StepOptions options = {});

// --- steps -----------------------------------------------------------------------------------

namespace detail {

// Spawns options.copies stages of S and subscribes each to every stage of `upstream`.
template <StageType S, class In, class... Args>
std::vector<StageRef<S>> spawn_step(const Flow<In>& upstream, const StepOptions& options, const char* kind,
                                    const Args&... args);

template <class Self>
struct StepBase {
  StepOptions options;
  Self with(StepOptions new_options) && {
    options = std::move(new_options);
    return std::move(static_cast<Self&>(*this));
  }
};

template <class F>
struct MapStep : StepBase<MapStep<F>> {
  F f;
  template <class In>
  Flow<map_result_t<In, F>> attach(const Flow<In>& upstream) const;
};
template <class F>
struct FilterStep : StepBase<FilterStep<F>> {
  F f;
  template <class In>
  Flow<In> attach(const Flow<In>& upstream) const;
};
template <class F>
struct AsyncMapStep : StepBase<AsyncMapStep<F>> {
  F f;
  AsyncOptions async;
  template <class In>
  Flow<TaskResult<async_map_value_t<In, F>, In>> attach(const Flow<In>& upstream) const;
};
template <class F>
struct EachStep : StepBase<EachStep<F>> {
  F f;
  template <class In>
  Stages<EachStage<In, F>> attach(const Flow<In>& upstream) const;
};
template <class... Parts>
struct FusedStep : StepBase<FusedStep<Parts...>> {
  std::tuple<Parts...> parts;
  template <class In>
  Flow<fused_result_t<In, Parts...>> attach(const Flow<In>& upstream) const;
};
template <ProducerConsumerStage S, class... Args>
struct ViaStep : StepBase<ViaStep<S, Args...>> {
  std::tuple<Args...> args;
  template <class In>
    requires std::same_as<In, typename S::in_type>
  Flow<typename S::out_type> attach(const Flow<In>& upstream) const;
};
template <ConsumerStage S, class... Args>
struct IntoStep : StepBase<IntoStep<S, Args...>> {
  std::tuple<Args...> args;
  template <class In>
    requires std::same_as<In, typename S::in_type>
  Stages<S> attach(const Flow<In>& upstream) const;
};
template <ProducerStage S, class... Args>
struct SourceStep : StepBase<SourceStep<S, Args...>> {
  std::tuple<Args...> args;
};

}  // namespace detail

// A stateless 1:1 transformation.
template <class F>
detail::MapStep<F> map(F f, StepOptions options = {}) {
  return {{std::move(options)}, std::move(f)};
}
// Keeps the events for which `predicate` is true.
template <class F>
detail::FilterStep<F> filter(F predicate, StepOptions options = {}) {
  return {{std::move(options)}, std::move(predicate)};
}
// async_stream as a step: `f` runs as a task per event, at most async.max_concurrency at once,
// and the step emits TaskResult<value, event>s (ok or exit), in input order unless
// async.ordered is false. Its tasks count against downstream demand, so memory stays bounded.
// A task that times out with on_timeout = exit fails the stage.
template <class F>
detail::AsyncMapStep<F> async_map(F f, AsyncOptions async = {}, StepOptions options = {}) {
  return {{std::move(options)}, std::move(f), async};
}
namespace detail {
// A fused step's options are its own (fuse(...).with(...)): its parts have none.
inline void check_fused_part(const StepOptions& options) {
  const StepOptions none;
  if (!options.name.empty() || options.max_demand != none.max_demand || options.min_demand || options.copies != none.copies ||
      options.buffer_size != none.buffer_size || options.buffer_keep != none.buffer_keep || options.hand_off != none.hand_off) {
    throw std::invalid_argument("the steps inside fuse() take no options: give them to fuse(...).with({...})");
  }
}
template <class F>
Mapping<F> part_of(const MapStep<F>& step) {
  check_fused_part(step.options);
  return {step.f};
}
template <class F>
Keeping<F> part_of(const FilterStep<F>& step) {
  check_fused_part(step.options);
  return {step.f};
}
}  // namespace detail

// The steps fuse() takes: maps and filters, which keep no state between events.
template <class Step>
concept FusableStep = requires(const Step& step) { detail::part_of(step); };

// Runs adjacent map and filter steps as one stage, in order, each event going through all of
// them before the next (as Akka Streams and Elixir's Flow fuse operators): no batch, message
// or demand between them, so cheap steps cost no hop. The fused step takes StepOptions with
// .with({...}) like any other; the steps inside take none (std::invalid_argument).
template <FusableStep... Steps>
  requires(sizeof...(Steps) > 0)
auto fuse(const Steps&... steps) -> detail::FusedStep<decltype(detail::part_of(steps))...> {
  return {{}, {detail::part_of(steps)...}};
}

// A sink that calls `f` on every event.
template <class F>
detail::EachStep<F> each(F f, StepOptions options = {}) {
  return {{std::move(options)}, std::move(f)};
}
// A user ProducerConsumer S built from `args` (copied for each copy); options with .with({...}).
template <ProducerConsumerStage S, class... Args>
detail::ViaStep<S, std::decay_t<Args>...> via(Args&&... args) {
  return {{}, {std::forward<Args>(args)...}};
}
// A user Producer S built from `args`, for from(system, source<S>(args...).with({...})).
template <ProducerStage S, class... Args>
detail::SourceStep<S, std::decay_t<Args>...> source(Args&&... args) {
  return {{}, {std::forward<Args>(args)...}};
}
// A user Consumer S built from `args`; ends the chain and returns the spawned stages.
template <ConsumerStage S, class... Args>
detail::IntoStep<S, std::decay_t<Args>...> into(Args&&... args) {
  return {{}, {std::forward<Args>(args)...}};
}

template <class In, class Step>
auto operator|(const Flow<In>& upstream, const Step& step) -> decltype(step.template attach<In>(upstream)) {
  return step.template attach<In>(upstream);
}

// --- definitions -----------------------------------------------------------------------------

namespace detail {
// A chain's first stage, held until the chain is whole.
template <class Out>
Flow<Out> held_source(System& system, const ActorRef& stage) {
  Flow<Out> flow(system, {stage});
  flow.held()->add(stage);
  return flow;
}

// What a source has no use for is an error, not ignored: demand and hand-off are the consuming
// step's, and copies of a source would each emit everything.
inline StageOptions source_stage_options(const StepOptions& options) {
  const StepOptions none;
  if (options.max_demand != none.max_demand || options.min_demand || options.copies != none.copies || options.hand_off != none.hand_off) {
    throw std::invalid_argument(
        "a source takes only name, buffer_size and buffer_keep: max_demand, min_demand and hand_off belong to the step "
        "that consumes it, and copies of a source would each emit everything");
  }
  StageOptions stage_options;
  stage_options.name = options.name.empty() ? "source" : options.name;
  stage_options.buffer_size = options.buffer_size;
  stage_options.buffer_keep = options.buffer_keep;
  return stage_options;
}
}  // namespace detail

template <ProducerStage S, class... Args>
Flow<typename S::out_type> from(System& system, Args&&... args) {
  auto stage = system.spawn_held<S>(detail::source_stage_options({}), std::forward<Args>(args)...);
  return detail::held_source<typename S::out_type>(system, stage.handle());
}

template <ProducerStage S, class... Args>
Flow<typename S::out_type> from(System& system, detail::SourceStep<S, Args...> source) {
  auto stage = std::apply(
      [&](Args&... args) { return system.spawn_held<S>(detail::source_stage_options(source.options), std::move(args)...); },
      source.args);
  return detail::held_source<typename S::out_type>(system, stage.handle());
}

template <EmittingStage S>
Flow<typename S::out_type> from(System& system, const StageRef<S>& stage) {
  return {system, {stage.handle()}};
}

template <std::ranges::input_range R>
  requires std::ranges::view<std::remove_cvref_t<R>> || std::is_rvalue_reference_v<R&&>
Flow<std::ranges::range_value_t<R>> from(System& system, R&& range, StepOptions options) {
  using Source = detail::RangeSource<std::remove_cvref_t<R>>;
  auto stage = system.spawn_held<Source>(detail::source_stage_options(options), std::forward<R>(range));
  return detail::held_source<std::ranges::range_value_t<R>>(system, stage.handle());
}

namespace detail {

template <StageType S, class In, class... Args>
std::vector<StageRef<S>> spawn_step(const Flow<In>& upstream, const StepOptions& options, const char* kind,
                                    const Args&... args) {
  SubscribeOptions subscription;
  subscription.max_demand = options.max_demand;
  subscription.min_demand = options.min_demand;
  subscription.hand_off = options.hand_off;
  subscription.validate();
  if (options.copies < 1 || options.copies > defaults::max_copies) {
    throw std::invalid_argument("copies must lie in [1, " + std::to_string(defaults::max_copies) + "], got " +
                                std::to_string(options.copies));
  }
  const std::string base = options.name.empty() ? upstream.held()->step_name(kind) : options.name;
  std::vector<StageRef<S>> stages;
  for (std::size_t copy = 0; copy < options.copies; ++copy) {
    StageOptions stage_options;
    stage_options.name = options.copies > 1 ? base + "." + std::to_string(copy + 1) : base;
    stage_options.buffer_size = options.buffer_size;
    stage_options.buffer_keep = options.buffer_keep;
    auto stage = upstream.system().template spawn_held<S>(std::move(stage_options), args...);
    upstream.held()->add(stage.handle());
    for (const ActorRef& producer : upstream.stages())
      upstream.system().subscribe_untyped(stage.core(), *producer, subscription);
    stages.push_back(stage);
  }
  return stages;
}

template <class S>
std::vector<ActorRef> cores_of(const std::vector<StageRef<S>>& stages) {
  std::vector<ActorRef> cores;
  for (const auto& stage : stages) cores.push_back(stage.handle());
  return cores;
}

template <class F>
template <class In>
Flow<map_result_t<In, F>> MapStep<F>::attach(const Flow<In>& upstream) const {
  return {upstream.system(), cores_of(spawn_step<MapStage<In, F>>(upstream, this->options, "map", f)), upstream.held()};
}

template <class F>
template <class In>
Flow<In> FilterStep<F>::attach(const Flow<In>& upstream) const {
  return {upstream.system(), cores_of(spawn_step<FilterStage<In, F>>(upstream, this->options, "filter", f)),
          upstream.held()};
}

template <class F>
template <class In>
Flow<TaskResult<async_map_value_t<In, F>, In>> AsyncMapStep<F>::attach(const Flow<In>& upstream) const {
  return {upstream.system(),
          cores_of(spawn_step<AsyncMapStage<In, F>>(upstream, this->options, "async_map", f, async)), upstream.held()};
}

template <class... Parts>
template <class In>
Flow<fused_result_t<In, Parts...>> FusedStep<Parts...>::attach(const Flow<In>& upstream) const {
  return {upstream.system(), cores_of(spawn_step<FusedStage<In, Parts...>>(upstream, this->options, "fused", parts)),
          upstream.held()};
}

template <class F>
template <class In>
Stages<EachStage<In, F>> EachStep<F>::attach(const Flow<In>& upstream) const {
  Stages<EachStage<In, F>> sinks(spawn_step<EachStage<In, F>>(upstream, this->options, "each", f));
  upstream.held()->release();  // the chain is whole
  return sinks;
}

template <ProducerConsumerStage S, class... Args>
template <class In>
  requires std::same_as<In, typename S::in_type>
Flow<typename S::out_type> ViaStep<S, Args...>::attach(const Flow<In>& upstream) const {
  auto stages = std::apply(
      [&](const auto&... a) { return spawn_step<S>(upstream, this->options, "via", a...); }, args);
  return {upstream.system(), cores_of(stages), upstream.held()};
}

template <ConsumerStage S, class... Args>
template <class In>
  requires std::same_as<In, typename S::in_type>
Stages<S> IntoStep<S, Args...>::attach(const Flow<In>& upstream) const {
  Stages<S> sinks(std::apply(
      [&](const auto&... a) { return spawn_step<S>(upstream, this->options, "into", a...); }, args));
  upstream.held()->release();  // the chain is whole
  return sinks;
}

}  // namespace detail
}  // namespace sluice
