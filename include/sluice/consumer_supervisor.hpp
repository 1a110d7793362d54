#pragma once
// Elixir's ConsumerSupervisor: a consumer that starts one task per event, with at most
// max_demand tasks running at once per producer, and asks a producer for more once min_demand
// of the tasks its events started have finished.
#include <sluice/stage.hpp>

#include <algorithm>
#include <any>
#include <cstddef>
#include <exception>
#include <functional>
#include <span>
#include <utility>
#include <vector>

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

  // Demand is kept per producer, as Elixir's is: a finished task gives its demand back to the
  // producer its event came from.
  DemandMode handle_subscribe(const SubscriptionInfo& info) override {
    producers_.push_back(Upstream{info.id, info.options.effective_min_demand()});
    this->context().ask(info.id, info.options.max_demand);
    return DemandMode::manual;
  }

  void handle_cancel(const SubscriptionInfo& info, const ExitReason&) override {
    std::erase_if(producers_, [&](const Upstream& producer) { return producer.id == info.id; });
  }

  void handle_events(std::span<In> events) override {
    const SubscriptionId from = this->context().current_subscription();
    for (In& event : events) {
      ++running_;
      this->context().run_task(
          [task = task_, event = std::move(event), from]() mutable -> std::any {
            try {
              task(std::move(event));
            } catch (...) {
              return Finished{from, std::current_exception()};
            }
            return Finished{from, nullptr};
          },
          kind_);
    }
  }

  void handle_info(std::any& message) override {
    auto* finished = std::any_cast<Finished>(&message);
    if (finished == nullptr) return;
    --running_;
    if (finished->failure && on_failure_) on_failure_(finished->failure);
    auto producer = std::find_if(producers_.begin(), producers_.end(), [&](const Upstream& p) { return p.id == finished->from; });
    if (producer == producers_.end()) return;  // that subscription has ended
    if (++producer->finished >= std::max<std::size_t>(producer->min_demand, 1)) {
      this->context().ask(producer->id, std::exchange(producer->finished, 0));
    }
  }

  std::size_t running() const noexcept { return running_; }
  // Once its producers are done it completes only when its tasks have, as Elixir's waits for
  // its children: so every failure reaches on_failure before System::wait returns.
  bool holds_work() const noexcept override { return running_ > 0; }

 private:
  struct Finished {
    SubscriptionId from;
    std::exception_ptr failure;  // null when the task returned
  };
  struct Upstream {
    SubscriptionId id;
    std::size_t min_demand;
    std::size_t finished = 0;  // tasks of its events finished since the last ask
  };

  Task task_;
  std::function<void(std::exception_ptr)> on_failure_;
  StageContext::TaskKind kind_;
  std::vector<Upstream> producers_;
  std::size_t running_ = 0;
};

}  // namespace sluice
