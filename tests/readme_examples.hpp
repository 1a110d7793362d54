#pragma once
// The code README.md shows, compiled and run by test_readme_examples.cpp so that it stays true.
#include <sluice/sluice.hpp>

#include <condition_variable>
#include <mutex>
#include <stop_token>
#include <vector>

#include <chrono>
#include <cstdint>
#include <list>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>

namespace readme {

// --- README: the seed workload, ported from GenStage ------------------------------------------
// (NumberProducer, NumberProcessor and SumConsumer ship in stages/; this is how they are written.)
class Numbers final : public sluice::Producer<std::int64_t> {
 public:
  explicit Numbers(std::int64_t first, std::int64_t last) : next_(first), last_(last) {}
  void handle_demand(std::size_t demand, sluice::Emitter<std::int64_t>& out) override {
    for (; demand > 0 && next_ <= last_; --demand) out.emit(next_++);
    if (next_ > last_) out.done();
  }

 private:
  std::int64_t next_, last_;
};

class Squares final : public sluice::ProducerConsumer<std::int64_t, std::int64_t> {
 public:
  void handle_events(std::span<std::int64_t> events, sluice::Emitter<std::int64_t>& out) override {
    for (std::int64_t x : events)
      if (x * x < 1000) out.emit(x * x);
  }
};

class Printer final : public sluice::Consumer<std::int64_t> {
 public:
  void handle_events(std::span<std::int64_t> events) override {
    for (std::int64_t x : events) printed.push_back(x);
  }
  std::vector<std::int64_t> printed;
};

// --- README: a TTL + LRU cache server ----------------------------------------------------------
// At most `capacity` entries; each expires `ttl` after it was last put.
class Cache final : public sluice::Server {
 public:
  struct Put {
    std::string key, value;
  };
  struct Get {
    std::string key;
  };

  Cache(std::size_t capacity, std::chrono::milliseconds ttl) : capacity_(capacity), ttl_(ttl) {}

  // Get -> std::optional<std::string>; a hit makes the entry the most recently used.
  std::any handle_call(std::any& request) override {
    auto found = entries_.find(std::any_cast<Get&>(request).key);
    if (found == entries_.end()) return std::optional<std::string>();
    recency_.splice(recency_.begin(), recency_, found->second.recency);
    return std::optional<std::string>(found->second.value);
  }

  void handle_cast(std::any& message) override {
    auto& put = std::any_cast<Put&>(message);
    auto [entry, inserted] = entries_.try_emplace(put.key);
    if (inserted) {
      recency_.push_front(put.key);
      entry->second.recency = recency_.begin();
    } else {
      recency_.splice(recency_.begin(), recency_, entry->second.recency);
    }
    entry->second.value = std::move(put.value);
    entry->second.version = ++versions_;
    context().send_after(ttl_, Expire{put.key, entry->second.version});
    if (entries_.size() > capacity_) {
      entries_.erase(recency_.back());
      recency_.pop_back();
    }
  }

  // A timer from send_after: the entry expires unless it was put again since.
  void handle_info(std::any& message) override {
    auto& expire = std::any_cast<Expire&>(message);
    auto found = entries_.find(expire.key);
    if (found == entries_.end() || found->second.version != expire.version) return;
    recency_.erase(found->second.recency);
    entries_.erase(found);
  }

 private:
  struct Expire {
    std::string key;
    std::uint64_t version;
  };
  struct Entry {
    std::string value;
    std::list<std::string>::iterator recency;
    std::uint64_t version = 0;
  };

  std::size_t capacity_;
  std::chrono::milliseconds ttl_;
  std::unordered_map<std::string, Entry> entries_;
  std::list<std::string> recency_;  // most recently used first
  std::uint64_t versions_ = 0;
};

// --- README: async_stream, fetching URLs -----------------------------------------------------
// A stand-in for an HTTP client: answers at once, except for hosts that never answer, where it
// waits until it is asked to stop.
inline std::string fetch(const std::string& url, std::stop_token stop) {
  if (url.find("unreachable") != std::string::npos) {
    std::mutex mutex;
    std::condition_variable_any never;
    std::unique_lock lock(mutex);
    never.wait(lock, stop, [] { return false; });
  }
  return "200 " + url;
}

inline std::vector<std::string> fetch_all(const std::vector<std::string>& urls) {
  using namespace std::chrono_literals;
  std::vector<std::string> report;
  for (auto& result : sluice::async_stream(urls, fetch,
                                           {.max_concurrency = 10,
                                            .timeout = 500ms,
                                            .on_timeout = sluice::OnTimeout::kill_task,
                                            .zip_input_on_exit = true,
                                            .kind = sluice::TaskKind::blocking})) {
    if (result.ok()) {
      report.push_back(result.value());
    } else {
      report.push_back("failed " + *result.exit().input + ": " + result.exit().reason);
    }
  }
  return report;
}

}  // namespace readme
