#pragma once
// Where stages run. A stage is scheduled only when it has messages; between slices it holds
// no thread.
#include <sluice/defaults.hpp>

#include <cstddef>
#include <functional>

namespace sluice {

namespace detail {
class ActorCore;
}

class Scheduler {
 public:
  virtual ~Scheduler() = default;
  // `actor` went from idle to having messages: run slices of it until it reports no more work.
  // It cannot fail: the actor's mailbox already counts it as scheduled, so one that was not
  // queued would never run again. A scheduler that cannot queue it (out of memory) ends the
  // process, as the BEAM does when it runs out of memory.
  virtual void schedule(detail::ActorCore& actor) noexcept = 0;
  // Stages scheduled before start() run only from then on, so that a whole graph can be wired
  // before the first event flows. A scheduler that runs only when stepped needs no gate.
  virtual void start() {}
  // Runs a plain task (no stage) on the workers.
  virtual void run_task(std::function<void()> task) = 0;
  // Runs a task that may block, on threads of its own rather than the workers.
  virtual void run_blocking(std::function<void()> task) = 0;
  // Mailbox messages a slice handles before it yields, counting those of the consumers it hands
  // batches to at once (not the batches themselves).
  virtual std::size_t throughput() const noexcept { return defaults::max_throughput; }
};

}  // namespace sluice
