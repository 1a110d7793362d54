#pragma once
// Why a stage stopped, and the error a caller sees when a pipeline fails.
#include <stdexcept>
#include <string>

namespace sluice {

// The reasons GenStage distinguishes: normal completion, an orderly shutdown, a crash, and
// "no such stage" (a subscription to a stage that is gone).
struct ExitReason {
  enum class Kind { normal, shutdown, error, noproc };

  Kind kind = Kind::normal;
  std::string stage;    // the stage the reason originated in
  std::string message;  // the exception's message, for errors

  static ExitReason normal() { return {}; }
  static ExitReason shutdown() { return {Kind::shutdown, {}, {}}; }
  static ExitReason error(std::string stage, std::string message) {
    return {Kind::error, std::move(stage), std::move(message)};
  }
  static ExitReason noproc(std::string stage) { return {Kind::noproc, std::move(stage), {}}; }

  // Transient subscriptions and restarts treat normal and shutdown as expected exits.
  bool is_abnormal() const noexcept { return kind == Kind::error || kind == Kind::noproc; }
  std::string describe() const;
};

// What a monitoring stage's handle_info receives when a stage it monitors stops.
struct StageDown {
  std::string stage;
  ExitReason reason;
};

// Thrown by System::call when no answer comes: the timeout passed, the stage is gone, or it
// failed while handling the call.
class CallError : public std::runtime_error {
 public:
  // calling_self: the stage runs beneath the caller on its thread (the caller itself, or a
  // producer that handed it the batch it is handling), so it could never answer (OTP's
  // calling_self).
  enum class Kind { timeout, noproc, failed, calling_self };
  CallError(Kind kind, const std::string& what) : std::runtime_error(what), kind_(kind) {}
  Kind kind() const noexcept { return kind_; }

 private:
  Kind kind_;
};

// Thrown by System::wait() when a stage failed: names the stage and the exception's message.
class StageError : public std::runtime_error {
 public:
  explicit StageError(ExitReason reason);
  const ExitReason& reason() const noexcept { return reason_; }
  const std::string& stage() const noexcept { return reason_.stage; }

 private:
  ExitReason reason_;
};

inline std::string ExitReason::describe() const {
  switch (kind) {
    case Kind::normal: return "normal";
    case Kind::shutdown: return "shutdown";
    case Kind::noproc: return "no such stage '" + stage + "'";
    case Kind::error: break;
  }
  return "stage '" + stage + "' failed: " + message;
}

inline StageError::StageError(ExitReason reason)
    : std::runtime_error(reason.describe()), reason_(std::move(reason)) {}

}  // namespace sluice
