#include "runner.hpp"
#include "spawn.hpp"

#include <sluice/detail/file_descriptor.hpp>
#include <sluice/stages/value_stages.hpp>

#include <fmt/format.h>

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <csignal>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <system_error>
#include <thread>

namespace sluice::cli {

namespace {

// SIGINT and SIGTERM are taken by one thread, from a signalfd: the first drains the pipeline
// (and stops it if the drain outlasts its deadline), a second exits at once. The thread sleeps
// in poll() until a signal, the deadline, or its own end (an eventfd), so a finished run exits
// at once rather than at the thread's next tick. It outlives the System: a signal while the
// System shuts down (detached by then) exits at once too.
class SignalWatch {
 public:
  explicit SignalWatch(std::chrono::milliseconds drain_timeout)
      : signals_(::signalfd(-1, &blocked(), SFD_CLOEXEC)), wake_(::eventfd(0, EFD_CLOEXEC)) {
    if (!signals_.valid() || !wake_.valid()) throw std::system_error(errno, std::generic_category(), "cannot watch for signals");
    thread_ = std::jthread([this, drain_timeout](std::stop_token stop) { watch(stop, drain_timeout); });
  }
  bool interrupted() const noexcept { return interrupted_.load(); }

  // Signals drain `system` while the returned guard lives; it must go before the System does.
  class Attachment {
   public:
    Attachment(SignalWatch& watch, System& system) : watch_(watch) { watch_.set_system(&system); }
    ~Attachment() { watch_.set_system(nullptr); }
    Attachment(const Attachment&) = delete;
    Attachment& operator=(const Attachment&) = delete;

   private:
    SignalWatch& watch_;
  };

  // Blocks the signals in the calling thread and in every thread it starts afterwards, so that
  // they reach only the signalfd.
  static void block() { pthread_sigmask(SIG_BLOCK, &blocked(), nullptr); }

 private:
  static const sigset_t& blocked() {
    static const sigset_t signals = [] {
      sigset_t set;
      sigemptyset(&set);
      sigaddset(&set, SIGINT);
      sigaddset(&set, SIGTERM);
      return set;
    }();
    return signals;
  }

  void set_system(System* system) {
    std::lock_guard lock(mutex_);
    system_ = system;
  }

  void watch(std::stop_token stop, std::chrono::milliseconds drain_timeout) {
    const std::stop_callback wake(stop, [this] {
      const std::uint64_t one = 1;
      [[maybe_unused]] const auto written = ::write(wake_.get(), &one, sizeof one);
    });
    std::optional<std::chrono::steady_clock::time_point> deadline;
    while (!stop.stop_requested()) {
      pollfd ready[2] = {{signals_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
      int timeout_ms = -1;
      if (deadline) {
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline - std::chrono::steady_clock::now());
        timeout_ms = static_cast<int>(std::max<std::int64_t>(left.count(), 0));
      }
      // A failure leaves every revents 0. Beyond EINTR it is transient (ENOMEM): the loop tries
      // again, since the signals stay blocked and only this thread can take them.
      if (::poll(ready, 2, timeout_ms) < 0 && errno != EINTR) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      if ((ready[0].revents & POLLIN) != 0) {
        signalfd_siginfo info{};
        if (::read(signals_.get(), &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
          std::lock_guard lock(mutex_);
          const bool again = interrupted_.exchange(true);
          if (again || system_ == nullptr) {
            std::fputs(again ? "sluice: interrupted again, exiting now\n" : "sluice: interrupted, exiting now\n", stderr);
            std::_Exit(130);
          }
          std::fputs("sluice: interrupted, draining (again to exit at once)\n", stderr);
          system_->drain();
          deadline = std::chrono::steady_clock::now() + drain_timeout;
        }
      }
      if (deadline && std::chrono::steady_clock::now() >= *deadline) {
        std::lock_guard lock(mutex_);
        if (system_ != nullptr) {
          std::fputs("sluice: the drain timed out, stopping\n", stderr);
          system_->stop();
        }
        deadline.reset();
      }
    }
  }

  detail::FileDescriptor signals_;
  detail::FileDescriptor wake_;
  std::atomic<bool> interrupted_{false};
  std::mutex mutex_;
  System* system_ = nullptr;  // guarded by mutex_: the System signals drain, while attached
  std::jthread thread_;       // last: joined before the descriptors close
};

using StageList = std::vector<std::pair<std::string, detail::ActorRef>>;
std::uint64_t errors_of(const detail::ActorCore& core, const Steps& steps) {
  auto step = steps.find(core.name());
  return step == steps.end() ? 0 : step->second->skipped();
}

// Every second, while the pipeline runs, and once at the end: --metrics writes a JSON line per
// stage, --progress redraws one line of events/s per stage on stderr.
class Monitor {
 public:
  Monitor(const RunOptions& options, const StageList& stages, const Steps& steps)
      : stages_(stages), steps_(steps), progress_(options.progress) {
    if (!options.metrics_path.empty()) {
      metrics_ = std::fopen(options.metrics_path.c_str(), "w");
      if (metrics_ == nullptr) throw std::runtime_error("cannot open '" + options.metrics_path + "' for the metrics");
    }
    if (metrics_ != nullptr || progress_) thread_ = std::jthread([this](std::stop_token stop) { run(stop); });
  }
  // Stops the ticks and reports the final figures.
  void finish() {
    if (thread_.joinable()) {
      thread_.request_stop();
      thread_.join();
    }
    tick(true);
    if (progress_) std::fputc('\n', stderr);
    if (metrics_ != nullptr) std::fclose(std::exchange(metrics_, nullptr));
  }
  ~Monitor() {
    if (metrics_ != nullptr) std::fclose(metrics_);
  }

 private:
  void run(std::stop_token stop) {
    std::mutex mutex;
    std::condition_variable_any wake;
    std::unique_lock lock(mutex);
    for (;;) {
      wake.wait_for(lock, stop, std::chrono::seconds(1), [] { return false; });
      if (stop.stop_requested()) return;
      tick(false);
    }
  }

  void tick(bool last) {
    const auto now = std::chrono::steady_clock::now();
    const double seconds = std::chrono::duration<double>(now - previous_time_).count();
    const auto wall_ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    std::string line;
    for (const auto& [id, core] : stages_) {
      const auto stats = core->stats().snapshot();
      if (metrics_ != nullptr) {
        fmt::print(metrics_,
                   "{{\"time_ms\":{},\"final\":{},\"stage\":\"{}\",\"events_in\":{},\"events_out\":{},\"discarded\":{},"
                   "\"errors\":{},\"demand_owed\":{},\"demand_asked\":{},\"buffered\":{},\"busy_ms\":{:.3f}}}\n",
                   wall_ms, last, escape_json(core->name()), stats.events_in, stats.events_out, stats.discarded, errors_of(*core, steps_),
                   stats.demand_owed, stats.demand_asked, stats.buffered, static_cast<double>(stats.busy_ns) / 1e6);
      }
      const std::uint64_t handled = std::max(stats.events_in, stats.events_out);
      std::uint64_t& before = previous_[core.get()];
      line += fmt::format("{}{} {:.3g}/s", line.empty() ? "" : " | ", core->name(),
                          seconds > 0 ? static_cast<double>(handled - before) / seconds : 0.0);
      before = handled;
    }
    if (metrics_ != nullptr) std::fflush(metrics_);
    if (progress_) fmt::print(stderr, "\r\x1b[K{}", line);
    previous_time_ = now;
  }

  const StageList& stages_;
  const Steps& steps_;
  bool progress_;
  std::FILE* metrics_ = nullptr;
  std::map<const detail::ActorCore*, std::uint64_t> previous_;  // events handled at the last tick
  std::chrono::steady_clock::time_point previous_time_ = std::chrono::steady_clock::now();
  std::jthread thread_;  // last: joined before the rest goes
};

void print_summary(std::FILE* out, const StageList& stages, const Steps& steps) {
  std::fprintf(out, "%-20s %12s %12s %10s %10s\n", "stage", "events in", "events out", "discarded", "errors");
  for (const auto& [id, core] : stages) {
    const auto stats = core->stats().snapshot();
    std::fprintf(out, "%-20s %12llu %12llu %10llu %10llu\n", core->name().c_str(), static_cast<unsigned long long>(stats.events_in),
                 static_cast<unsigned long long>(stats.events_out), static_cast<unsigned long long>(stats.discarded),
                 static_cast<unsigned long long>(errors_of(*core, steps)));
  }
}

}  // namespace

std::string escape_json(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
    } else {
      out.push_back(c);
    }
  }
  return out;
}

RunResult run_pipeline(const yaml::PipelineConfig& config, const RunOptions& options) {
  SignalWatch::block();
  SignalWatch signals(options.drain_timeout);  // before the System, so that it outlives it
  System system(options.threads);
  if (!options.metrics_path.empty()) system.measure_busy_time();
  auto failures = std::make_shared<stages::Failures>([&system] { system.drain(); });

  std::map<std::string, std::vector<detail::ActorRef>> copies;  // by stage id
  StageList all;
  Steps steps;  // by stage name, for the summary
  RunResult result;
  std::optional<Monitor> monitor;
  try {
    // A source of failed events per dead-letter stage, fed by the stages that name it, and done
    // once they have all stopped.
    std::map<std::string, detail::ActorRef> dead_letters;  // by target stage id
    for (const auto& stage : config.stages) {
      if (stage.on_error != stages::OnError::dead_letter || dead_letters.contains(stage.dead_letter)) continue;
      std::size_t feeders = 0;
      for (const auto& feeder : config.stages)
        if (feeder.on_error == stages::OnError::dead_letter && feeder.dead_letter == stage.dead_letter) feeders += feeder.concurrency;
      detail::ActorRef source = system.spawn<stages::DeadLetterSource>("dead_letter:" + stage.dead_letter, feeders).handle();
      dead_letters[stage.dead_letter] = source;
      all.emplace_back(source->name(), source);
    }
    for (const auto& stage : config.stages) {
      stages::DeadLetter dead_letter;
      if (stage.on_error == stages::OnError::dead_letter) {
        dead_letter = [&system, source = dead_letters.at(stage.dead_letter)](const std::string& name, const Value& event,
                                                                            const std::string& error) {
          system.send_info(*source, stages::DeadLetterSource::Letter{name + ": " + error + ": " + to_string(event)});
        };
      }
      for (std::size_t copy = 0; copy < stage.concurrency; ++copy) {
        StageOptions stage_options;
        stage_options.name = stage.concurrency > 1 ? stage.id + "." + std::to_string(copy + 1) : stage.id;
        stage_options.buffer_size = stage.buffer_size;
        stage_options.buffer_keep = stage.buffer_keep;
        stage_options.dispatcher = dispatcher_of(stage);
        detail::ActorRef core;
        try {
          core = spawn(system, stage, stage_options, failures, steps, dead_letter);
        } catch (const std::exception& error) {
          // A stage that cannot start (a file it cannot open) is named, as one that fails later is.
          throw std::runtime_error("stage '" + stage_options.name + "' could not start: " + error.what());
        }
        if (dead_letter) system.monitor(*dead_letters.at(stage.dead_letter), *core);
        copies[stage.id].push_back(core);
        all.emplace_back(stage.id, core);
      }
    }
    for (const auto& stage : config.stages) {
      for (const auto& consumer : copies[stage.id]) {
        for (const auto& subscription : stage.subscribe_to) {
          SubscribeOptions subscribe = subscription.options;
          if (subscription.partition) subscribe.partition = PartitionKey{*subscription.partition};
          for (const auto& producer : copies[subscription.stage]) system.subscribe_untyped(*consumer, *producer, subscribe);
        }
        if (auto source = dead_letters.find(stage.id); source != dead_letters.end())
          system.subscribe_untyped(*consumer, *source->second, SubscribeOptions{.max_demand = stage.max_demand, .min_demand = stage.min_demand});
      }
    }
    monitor.emplace(options, all, steps);
    // Attached only once the graph is whole: a signal before then exits at once (nothing has
    // run), where a drain would start a half-wired graph whose sources complete unheard.
    const SignalWatch::Attachment attached(signals, system);
    system.wait();
  } catch (const StageError& error) {
    result.error = error.what();
  } catch (const std::exception& error) {
    system.stop();
    result.error = error.what();
  }
  if (monitor) monitor->finish();
  if (auto failure = failures->first()) result.error = *failure;
  if (options.summary != nullptr) print_summary(options.summary, all, steps);
  result.exit_code = result.error ? 1 : signals.interrupted() ? 130 : 0;
  return result;
}

}  // namespace sluice::cli
