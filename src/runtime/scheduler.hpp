#pragma once
// The production scheduler: stages run as oneTBB tasks in one arena.
#include <sluice/scheduler.hpp>

#include <memory>

namespace sluice::detail {

std::unique_ptr<Scheduler> make_tbb_scheduler(std::size_t threads);

// Called on a thread about to block until a stage answers (System::call from a callback): a
// stage its worker keeps to run after the current slice would wait for the caller, and the
// caller for it. Nothing to do off the workers.
void before_blocking_wait();

}  // namespace sluice::detail
