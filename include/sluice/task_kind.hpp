#pragma once
// Where a task runs: on the oneTBB workers (CPU work), or on threads of its own because it may
// block (sleeps, file or socket I/O), so that it cannot starve the stages.
namespace sluice {

enum class TaskKind { cpu, blocking };

}  // namespace sluice
