#pragma once
// Elixir's ConsumerSupervisor: a consumer that starts one task per event, with at most
// max_demand tasks running at once, and asks for more once min_demand of them have finished.
#include <sluice/stage.hpp>

#include <any>
#include <cstddef>
#include <exception>
#include <functional>
#include <span>
#include <utility>

namespace sluice {

template <class In>
class ConsumerSupervisor final : public Consumer<In> {
 public:
  using Task = std::function<void(In)>;
  // `on_failure` hears of each task that threw (the task counts as finished all the same).
  // Tasks run on threads of their own, where they may block, unless `kind` says cpu.
  explicit ConsumerSupervisor(Task task, std::function<void(std::exception_ptr)> on_failure = {},
                              StageContext::TaskKind kind = StageContext::TaskKind::blocking)
      : task_(std::move(task)), on_failure_(std::move(on_failure)), kind_(kind) {}

  DemandMode handle_subscribe(const SubscriptionInfo& info) override {
    subscription_ = info.id;
    max_demand_ = info.options.max_demand;
    min_demand_ = info.options.effective_min_demand();
    this->context().ask(subscription_, max_demand_);
    return DemandMode::manual;
  }

  void handle_events(std::span<In> events) override {
    for (In& event : events) {
      ++running_;
      this->context().run_task(
          [task = task_, event = std::move(event)]() mutable -> std::any {
            task(std::move(event));
            return Finished{};
          },
          kind_);
    }
  }

  void handle_info(std::any& message) override {
    if (auto* failure = std::any_cast<std::exception_ptr>(&message)) {
      if (on_failure_) on_failure_(*failure);
    } else if (std::any_cast<Finished>(&message) == nullptr) {
      return;
    }
    --running_;
    if (++finished_ >= std::max<std::size_t>(min_demand_, 1)) this->context().ask(subscription_, std::exchange(finished_, 0));
  }

  std::size_t running() const noexcept { return running_; }

 private:
  struct Finished {};

  Task task_;
  std::function<void(std::exception_ptr)> on_failure_;
  StageContext::TaskKind kind_;
  SubscriptionId subscription_ = 0;
  std::size_t max_demand_ = 0;
  std::size_t min_demand_ = 0;
  std::size_t running_ = 0;
  std::size_t finished_ = 0;  // since the last ask
};

}  // namespace sluice
