#pragma once
// Everything a library user needs.
#include <sluice/async_stream.hpp>
#include <sluice/consumer_supervisor.hpp>
#include <sluice/defaults.hpp>
#include <sluice/emitter.hpp>
#include <sluice/exit_reason.hpp>
#include <sluice/manual_scheduler.hpp>
#include <sluice/pipeline.hpp>
#include <sluice/stage.hpp>
#include <sluice/stage_ref.hpp>
#include <sluice/stage_stats.hpp>
#include <sluice/subscription.hpp>
#include <sluice/supervisor.hpp>
#include <sluice/system.hpp>
#include <sluice/task.hpp>
