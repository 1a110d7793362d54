#pragma once
// OTP's restart intensity, shared by supervisors and ConsumerSupervisor: more than max_restarts
// restarts within max_seconds, and the supervisor gives up.
#include <chrono>
#include <cstddef>
#include <deque>
#include <string>

namespace sluice::detail {

class RestartIntensity {
 public:
  RestartIntensity(int max_restarts, std::chrono::milliseconds max_seconds)
      : max_restarts_(max_restarts), max_seconds_(max_seconds) {}

  // Records a restart now; false when it is one too many within the window.
  bool record() {
    const auto now = std::chrono::steady_clock::now();
    restarts_.push_back(now);
    while (!restarts_.empty() && now - restarts_.front() > max_seconds_) restarts_.pop_front();
    return restarts_.size() <= static_cast<std::size_t>(max_restarts_);
  }

  // How a supervisor that gave up says so.
  std::string exceeded(const std::string& last_failure) const {
    return "reached its maximum restart intensity (" + std::to_string(max_restarts_) + " restarts in " +
           std::to_string(max_seconds_.count()) + " ms); the last failure: " + last_failure;
  }

 private:
  int max_restarts_;
  std::chrono::milliseconds max_seconds_;
  std::deque<std::chrono::steady_clock::time_point> restarts_;
};

}  // namespace sluice::detail
