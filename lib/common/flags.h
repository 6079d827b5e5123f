#pragma once

// The command line of every sluice program. Flags are Abseil flags (ABSL_FLAG in the
// program's main file, typed: absl::Duration, std::optional<T>, sluice::HostPort,
// sluice::ByteSize), and argv is read with Abseil's grammar: `--flag=value` and
// `--flag value`, `-flag` as `--flag`, booleans as `--flag`, `--noflag` or
// `--flag=true|false`, and `--` ending the flags.
//
// Why not absl::ParseCommandLine itself: in Abseil 20220623 it knows no flag name with a dash
// (a C++ identifier names each flag, and every sluice flag has a dash: `--state-dir`), keeps
// only the last of a repeated flag (`-H a:1 -H b:2`), exits 1 both on a bad value and on
// `--help`, and its --help lists flags by the source file that defines them. So Parse below
// reads argv against Abseil's registry (absl::FindCommandLineFlag,
// CommandLineFlag::ParseFrom, the types' AbslParseFlag) and adds what these programs have
// always had:
//   - `--state-dir` is the flag ABSL_FLAG(..., state_dir, ...) (`--state_dir` works too);
//   - a repeated flag collects every value, without splitting at commas (a path or a
//     header value may hold one), and `--config a.yaml b.yaml` form where declared;
//   - short aliases (`-f` for `--filename`);
//   - a usage error is one line naming the flag, the value and what is wanted, and exit 2;
//   - `--help` and `-h` list every flag of the program with its default, and exit 0.

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/flag.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sluice::flags {

// A flag that may be given more than once; every value is kept, in order.
using ListFlag = absl::Flag<std::vector<std::string>>;

// A condition on a parsed flag, and what a wrong value is told: "want a number from 1 to 256".
struct Requirement {
  const absl::CommandLineFlag* flag = nullptr;
  std::string want;
  std::function<bool()> ok;
};

template <typename T, typename Predicate>
Requirement Require(const absl::Flag<T>& flag, std::string want, Predicate ok) {
  return {&absl::GetFlagReflectionHandle(flag), std::move(want),
          [&flag, ok] { return ok(absl::GetFlag(flag)); }};
}

struct Program {
  // Starts every message: "sluice-server".
  std::string name;
  // What --help prints above the flags (also given to absl::SetProgramUsageMessage).
  std::string usage;
  // Flags whose every occurrence adds a value.
  std::vector<ListFlag*> repeated;
  // Repeated flags that also take the arguments after their value up to the next one starting
  // with '-': `--config a.yaml b.yaml`.
  std::vector<ListFlag*> take_following;
  // Other names for a flag, Abseil names on both sides: {"filename", "f"}.
  std::vector<std::pair<std::string, std::string>> aliases;
  // Checked after parsing, in order; the first unmet one is the error.
  std::vector<Requirement> requirements;
};

// What ParseArgs found besides flags.
struct Parsed {
  bool help = false;                    // --help or -h was given: nothing else is done
  std::vector<std::string> positional;  // arguments that are not flags, in order
};

// Sets the program's flags from `args` (argv without the program name). A usage error is
// INVALID_ARGUMENT with the message to print after the program's name, e.g.
// `--workers "0": want a number from 1 to 256`.
absl::StatusOr<Parsed> ParseArgs(const std::vector<std::string>& args, const Program& program);

// ParseArgs for main(): on --help prints Help() to stdout and exits 0; on a usage error prints
// "NAME: MESSAGE" and where to find the flags to stderr and exits 2. Returns the positional
// arguments.
std::vector<std::string> Parse(int argc, char** argv, const Program& program);

// Prints "NAME: MESSAGE" and the --help hint to stderr, then exits 2: for errors main() finds
// in the positional arguments or in flags taken together.
[[noreturn]] void UsageError(const Program& program, absl::string_view message);

// The usage text, then every flag of the program (all flags not defined inside Abseil) by
// name: its names, default and help text.
std::string Help(const Program& program);

// The name a flag has on the command line: "--state-dir", or "-f" for a one-letter flag.
std::string CommandLineName(absl::string_view abseil_name);

}  // namespace sluice::flags
