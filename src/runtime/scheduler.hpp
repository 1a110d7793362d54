#pragma once
// The production scheduler: stages run as oneTBB tasks in one arena.
#include <sluice/scheduler.hpp>

#include <memory>

namespace sluice::detail {

std::unique_ptr<Scheduler> make_tbb_scheduler(std::size_t threads);

}  // namespace sluice::detail
