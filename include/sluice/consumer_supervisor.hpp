#pragma once
// Elixir's ConsumerSupervisor: a consumer that starts one task per event, with at most
// max_demand tasks running at once per producer, and asks a producer for more once min_demand
// of the tasks its events started have finished.
#include <sluice/detail/restart_intensity.hpp>
#include <sluice/stage.hpp>
#include <sluice/supervisor.hpp>

#include <algorithm>
#include <any>
#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace sluice {

// What ConsumerSupervisor does with a task that throws: the restart type of Elixir's child
// template, and its restart intensity.
struct ConsumerSupervisorOptions {
  // temporary: the task counts as finished. transient: it runs again on the same event (a copy
  // of it), as a crashed child restarts; more than max_restarts restarts within max_seconds
  // and the ConsumerSupervisor fails. A task that returns is done, so permanent is refused.
  Restart restart = Restart::temporary;
  int max_restarts = 3;
  std::chrono::milliseconds max_seconds{5000};
};

template <class In>
class ConsumerSupervisor final : public Consumer<In> {
 public:
  using Task = std::function<void(In)>;
  // `on_failure` hears of each task that threw, whether it then runs again or not. Tasks run on
  // threads of their own, where they may block, unless `kind` says cpu.
  explicit ConsumerSupervisor(Task task, std::function<void(std::exception_ptr)> on_failure = {},
                              StageContext::TaskKind kind = StageContext::TaskKind::blocking,
                              ConsumerSupervisorOptions options = {})
      : task_(std::move(task)),
        on_failure_(std::move(on_failure)),
        kind_(kind),
        restarts_(options.restart == Restart::transient),
        intensity_(options.max_restarts, options.max_seconds) {
    if (options.restart == Restart::permanent)
      throw std::invalid_argument("ConsumerSupervisor: a task that returns is done, so it cannot be permanent; use transient");
    if (restarts_ && !std::is_copy_constructible_v<In>)
      throw std::invalid_argument("ConsumerSupervisor: a transient task runs again on a copy of its event, which this type has not");
  }

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
      if constexpr (std::is_copy_constructible_v<In>) {
        if (restarts_) {
          start_transient(std::make_shared<const In>(std::move(event)), from);
          continue;
        }
      }
      this->context().run_task(
          [task = task_, event = std::move(event), from]() mutable -> std::any {
            try {
              task(std::move(event));
            } catch (...) {
              return Finished{from, std::current_exception(), nullptr};
            }
            return Finished{from, nullptr, nullptr};
          },
          kind_);
    }
  }

  void handle_info(std::any& message) override {
    auto* finished = std::any_cast<Finished>(&message);
    if (finished == nullptr) return;
    if (finished->failure && on_failure_) on_failure_(finished->failure);
    if constexpr (std::is_copy_constructible_v<In>) {
      if (finished->failure && finished->event != nullptr) {
        if (intensity_.record()) {
          start_transient(std::move(finished->event), finished->from);
        } else {
          this->context().stop(ExitReason::error(std::string(this->context().stage_name()),
                                                 intensity_.exceeded(describe(finished->failure))));
        }
        return;
      }
    }
    --running_;
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
    std::shared_ptr<const In> event;  // a transient task's, to run it again
  };

  // Runs the task on a copy of the event, which the result keeps in case it must run again.
  void start_transient(std::shared_ptr<const In> event, SubscriptionId from) {
    this->context().run_task(
        [task = task_, event = std::move(event), from]() mutable -> std::any {
          try {
            task(In(*event));
          } catch (...) {
            return Finished{from, std::current_exception(), std::move(event)};
          }
          return Finished{from, nullptr, nullptr};
        },
        kind_);
  }

  static std::string describe(const std::exception_ptr& failure) {
    try {
      std::rethrow_exception(failure);
    } catch (const std::exception& e) {
      return e.what();
    } catch (...) {
      return "unknown exception";
    }
  }
  struct Upstream {
    SubscriptionId id;
    std::size_t min_demand;
    std::size_t finished = 0;  // tasks of its events finished since the last ask
  };

  Task task_;
  std::function<void(std::exception_ptr)> on_failure_;
  StageContext::TaskKind kind_;
  bool restarts_;  // transient
  detail::RestartIntensity intensity_;
  std::vector<Upstream> producers_;
  std::size_t running_ = 0;
};

}  // namespace sluice
