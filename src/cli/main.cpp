// The sluice command line: run, validate, graph and list YAML-described pipelines.
#include "../yaml/pipeline_config.hpp"
#include "runner.hpp"

#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <limits>
#include <map>
#include <string>
#include <vector>

namespace {

using namespace sluice;

// sysexits.h's EX_CONFIG: the configuration was wrong.
constexpr int config_error_exit = 78;
// sysexits.h's EX_USAGE: the command line was wrong. One code for every such error, where
// CLI11's own (100-114) tell its exception types apart.
constexpr int usage_error_exit = 64;

int report(const yaml::ConfigErrors& errors) {
  for (const auto& line : errors.lines()) fmt::print(stderr, "{}\n", line);
  fmt::print(stderr, "{} error{} in the configuration\n", errors.lines().size(), errors.lines().size() == 1 ? "" : "s");
  return config_error_exit;
}

void list(const std::string& format) {
  if (format == "json") {
    std::string json = "[";
    for (const auto& type : yaml::catalog()) {
      json += fmt::format("{}{{\"type\":\"{}\",\"role\":\"{}\",\"description\":\"{}\",\"options\":[", json.size() > 1 ? "," : "", type.name,
                          yaml::role_name(type.role), cli::escape_json(type.description));
      bool first = true;
      for (const auto& option : type.options) {
        json += fmt::format("{}{{\"name\":\"{}\",\"type\":\"{}\",\"required\":{},\"default\":\"{}\",\"description\":\"{}\"}}", first ? "" : ",",
                            option.name, yaml::option_type_name(option.type), option.required, cli::escape_json(option.default_value),
                            cli::escape_json(option.description));
        first = false;
      }
      json += "]}";
    }
    fmt::print("{}]\n", json);
    return;
  }
  for (const auto& type : yaml::catalog()) {
    fmt::print("{} ({}): {}\n", type.name, yaml::role_name(type.role), type.description);
    for (const auto& option : type.options) {
      fmt::print("  {:<8} {:<10} {:<9} {}\n", option.name, yaml::option_type_name(option.type),
                 option.required ? "required" : "default " + (option.default_value.empty() ? std::string("none") : option.default_value),
                 option.description);
    }
  }
  fmt::print("keys every stage accepts:\n");
  for (const auto& option : yaml::common_options()) {
    fmt::print("  {:<12} default {:<14} {}\n", option.name, option.default_value.empty() ? "none" : option.default_value, option.description);
  }
}

// `text` inside a DOT double-quoted string: quotes and backslashes escaped, so that the string
// ends where it should and two ids stay two nodes.
std::string dot_escaped(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '"' || c == '\\') out.push_back('\\');
    if (c == '\n') {
      out += "\\n";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

// `text` inside a Mermaid label, "...": what Mermaid would read as the label's end, an entity
// (#name;), markup or a markdown string, written as an entity code instead.
std::string mermaid_escaped(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '"' || c == '#' || c == '<' || c == '>' || c == '`' || c == '\n') {
      out += fmt::format("#{};", static_cast<int>(c));
    } else {
      out.push_back(c);
    }
  }
  return out;
}

void graph(const yaml::PipelineConfig& config, const std::string& format) {
  const bool dot = format != "mermaid";
  // A Mermaid node is named by its place in the file, since a stage id may be anything
  // (`end`, a quote, a space) while a Mermaid id may not; its label shows the id.
  std::map<std::string, std::string> node;  // by stage id
  for (std::size_t i = 0; i < config.stages.size(); ++i)
    node[config.stages[i].id] = dot ? "\"" + dot_escaped(config.stages[i].id) + "\"" : "s" + std::to_string(i);
  fmt::print("{}\n", dot ? "digraph pipeline {\n  rankdir=LR;" : "flowchart LR");
  for (const auto& stage : config.stages) {
    if (dot) {
      fmt::print("  {} [label=\"{}\\n{}{}\"];\n", node[stage.id], dot_escaped(stage.id), stage.type->name,
                 stage.concurrency > 1 ? fmt::format(" x{}", stage.concurrency) : "");
    } else {
      fmt::print("  {}[\"{}: {}\"]\n", node[stage.id], mermaid_escaped(stage.id), stage.type->name);
    }
  }
  auto edge = [&](const std::string& from, const std::string& to, const std::string& label) {
    if (dot) {
      fmt::print("  {} -> {} [label=\"{}\"];\n", node[from], node[to], label);
    } else {
      fmt::print("  {} -->|{}| {}\n", node[from], label, node[to]);
    }
  };
  for (const auto& stage : config.stages) {
    for (const auto& subscription : stage.subscribe_to) {
      const auto& producer = *config.find(subscription.stage);
      const std::string dispatcher = producer.dispatcher == yaml::DispatcherKind::broadcast ? "broadcast"
                                     : producer.dispatcher == yaml::DispatcherKind::partition
                                         ? fmt::format("partition {}", subscription.partition.value_or(0))
                                         : "demand";
      edge(subscription.stage, stage.id,
           fmt::format("{} max {} / min {}", dispatcher, subscription.options.max_demand,
                       subscription.options.effective_min_demand()));
    }
    if (stage.on_error == stages::OnError::dead_letter) edge(stage.id, stage.dead_letter, "dead letters");
  }
  if (dot) fmt::print("}}\n");
}

}  // namespace

int main(int argc, char** argv) {
  // Buffered standard input, so that the lines stage reads what is ready in chunks.
  std::ios::sync_with_stdio(false);
  CLI::App app{"sluice: run back-pressured stream pipelines described in YAML"};
  app.require_subcommand(1);

  std::string file;
  std::vector<std::string> sets;
  cli::RunOptions run_options;
  int drain_timeout_ms = 10'000;
  bool quiet = false;
  auto* run = app.add_subcommand("run", "run a pipeline: data to stdout, logs and the summary to stderr");
  run->add_option("file", file, "the pipeline's YAML file")->required();
  run->add_option("--set", sets, "override a value: stages.ID.KEY=VALUE (repeatable)");
  // Workers beyond the hardware threads only take turns on them, and each has a queue of its
  // own: the bound covers the largest machines, and keeps a typo (-1 read as 2^64 - 1) a usage
  // error rather than a failed allocation.
  run->add_option("--threads", run_options.threads, "worker threads, up to 1024 (default, or 0: one per hardware thread)")
      ->check(CLI::Range(0, 1024));
  run->add_option("--drain-timeout", drain_timeout_ms, "milliseconds a SIGINT/SIGTERM drain may take (default 10000)")
      ->check(CLI::Range(0, std::numeric_limits<int>::max()));
  run->add_flag("--quiet", quiet, "no summary on stderr");
  run->add_option("--metrics", run_options.metrics_path, "write a JSON line per stage to this file each second and at the end");
  std::optional<bool> progress;
  run->add_flag("--progress,!--no-progress", progress, "a live line of events/s per stage on stderr (default: on a terminal)");

  auto* validate = app.add_subcommand("validate", "check a pipeline and report every error; exit 0 when valid");
  validate->add_option("file", file, "the pipeline's YAML file")->required();
  validate->add_option("--set", sets, "override a value: stages.ID.KEY=VALUE (repeatable)");

  std::string format = "dot";
  auto* graph_command = app.add_subcommand("graph", "print the topology, with dispatchers and demand on the edges");
  graph_command->add_option("file", file, "the pipeline's YAML file")->required();
  graph_command->add_option("--format", format, "dot or mermaid")->check(CLI::IsMember({"dot", "mermaid"}));

  std::string list_format = "text";
  auto* list_command = app.add_subcommand("list", "every stage type, its options, their types and defaults");
  list_command->add_option("--format", list_format, "text or json")->check(CLI::IsMember({"text", "json"}));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    // Prints the message, or the help that --help asked for (which exits 0).
    return app.exit(error) == 0 ? 0 : usage_error_exit;
  }

  if (*list_command) {
    list(list_format);
    return 0;
  }
  try {
    const yaml::PipelineConfig config = yaml::load_pipeline(file, sets);
    if (*validate) {
      fmt::print(stderr, "{}: valid, {} stage{}\n", file, config.stages.size(), config.stages.size() == 1 ? "" : "s");
      return 0;
    }
    if (*graph_command) {
      graph(config, format);
      return 0;
    }
    run_options.drain_timeout = std::chrono::milliseconds(drain_timeout_ms);
    run_options.summary = quiet ? nullptr : stderr;
    run_options.progress = progress.value_or(isatty(fileno(stderr)) != 0);
    const cli::RunResult result = cli::run_pipeline(config, run_options);
    std::fflush(stdout);
    if (result.error) fmt::print(stderr, "error: {}\n", *result.error);
    return result.exit_code;
  } catch (const yaml::ConfigErrors& errors) {
    return report(errors);
  }
}
