#include "lib/common/flags.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <map>
#include <optional>

#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"

namespace sluice::flags {
namespace {

// Abseil's own flags (--flagfile and the like, when their library is linked) are not the
// program's: they are neither accepted nor listed.
bool IsProgramFlag(const absl::CommandLineFlag& flag) {
  return !absl::StrContains(flag.Filename(), "absl/");
}

// "state-dir" -> "state_dir"; an alias -> the flag it names.
std::string AbseilName(absl::string_view command_line_name, const Program& program) {
  std::string name = absl::StrReplaceAll(command_line_name, {{"-", "_"}});
  for (const auto& [alias, target] : program.aliases) {
    if (name == alias) return target;
  }
  return name;
}

absl::CommandLineFlag* Find(const std::string& name) {
  absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
  return flag != nullptr && IsProgramFlag(*flag) ? flag : nullptr;
}

template <typename T>
bool Contains(const std::vector<T*>& list, const void* item) {
  return std::any_of(list.begin(), list.end(),
                     [item](const T* f) { return &absl::GetFlagReflectionHandle(*f) == item; });
}

const Requirement* RequirementOf(const absl::CommandLineFlag& flag, const Program& program) {
  for (const Requirement& r : program.requirements) {
    if (r.flag == &flag) return &r;
  }
  return nullptr;
}

// What a value of the flag's type looks like, for a value its parser refused without saying.
std::string WantByType(const absl::CommandLineFlag& flag) {
  if (flag.IsOfType<bool>()) return "want true or false";
  if (flag.IsOfType<absl::Duration>()) return "want a duration such as 250ms, 1s, 2m or 1h30m";
  if (flag.IsOfType<double>()) return "want a number";
  if (flag.IsOfType<int>() || flag.IsOfType<int64_t>() || flag.IsOfType<uint32_t>() ||
      flag.IsOfType<uint64_t>()) {
    return "want a whole number";
  }
  return "not a valid value";
}

absl::Status BadValue(const absl::CommandLineFlag& flag, absl::string_view value,
                      std::string abseil_error, const Program& program) {
  std::string why;
  if (const Requirement* r = RequirementOf(flag, program)) {
    why = absl::StrCat("want ", r->want);
  } else {
    // Abseil says "Illegal value 'V' specified for flag 'N'; WHY", WHY being what the type's
    // AbslParseFlag said, if anything: only WHY is news, and N is not the command line's name.
    absl::string_view detail = abseil_error;
    if (absl::ConsumePrefix(&detail, absl::StrCat("Illegal value '", value,
                                                  "' specified for flag '", flag.Name(), "'"))) {
      absl::ConsumePrefix(&detail, "; ");
    }
    why = detail.empty() ? WantByType(flag) : std::string(detail);
  }
  return absl::InvalidArgumentError(
      absl::StrCat(CommandLineName(flag.Name()), " \"", value, "\": ", why));
}

// Splits text into lines of at most `width` characters (longer words stay whole).
std::vector<std::string> Wrap(absl::string_view text, size_t width) {
  std::vector<std::string> lines;
  std::string line;
  for (absl::string_view word : absl::StrSplit(text, ' ', absl::SkipEmpty())) {
    if (!line.empty() && line.size() + 1 + word.size() > width) {
      lines.push_back(std::move(line));
      line.clear();
    }
    absl::StrAppend(&line, line.empty() ? "" : " ", word);
  }
  if (!line.empty()) lines.push_back(std::move(line));
  return lines;
}

}  // namespace

std::string CommandLineName(absl::string_view abseil_name) {
  if (abseil_name.size() == 1) return absl::StrCat("-", abseil_name);
  return absl::StrCat("--", absl::StrReplaceAll(abseil_name, {{"_", "-"}}));
}

absl::StatusOr<Parsed> ParseArgs(const std::vector<std::string>& args, const Program& program) {
  Parsed parsed;
  // Help wins wherever it is, whatever else is wrong.
  for (const std::string& arg : args) {
    if (arg == "--") break;
    if (arg == "-h" || arg == "--help" || arg == "-help" || arg == "--helpfull") {
      parsed.help = true;
      return parsed;
    }
  }
  // Values of repeated flags, set once every argument is read.
  std::map<absl::CommandLineFlag*, std::vector<std::string>> lists;
  // What each flag was given last, for messages about requirements.
  std::map<const absl::CommandLineFlag*, std::string> given;
  for (size_t i = 0; i < args.size(); ++i) {
    absl::string_view arg = args[i];
    // As Abseil: "-" alone and anything not starting with '-' are positional; "--" ends the
    // flags.
    if (arg == "--") {
      parsed.positional.insert(parsed.positional.end(), args.begin() + i + 1, args.end());
      break;
    }
    if (!absl::ConsumePrefix(&arg, "-") || arg.empty()) {
      parsed.positional.push_back(args[i]);
      continue;
    }
    absl::ConsumePrefix(&arg, "-");
    const size_t eq = arg.find('=');
    const bool has_value = eq != absl::string_view::npos;
    const absl::string_view written_name = arg.substr(0, eq);
    std::string value = has_value ? std::string(arg.substr(eq + 1)) : "";
    if (written_name == "help" || written_name == "h" || written_name == "helpfull") {
      parsed.help = true;
      return parsed;
    }

    const std::string name = AbseilName(written_name, program);
    absl::CommandLineFlag* flag = Find(name);
    bool negative = false;
    if (flag == nullptr) {
      // --noflag (and --no-flag) for a boolean.
      absl::string_view rest = written_name;
      if (absl::ConsumePrefix(&rest, "no")) {
        if (!absl::ConsumePrefix(&rest, "-")) absl::ConsumePrefix(&rest, "_");
        absl::CommandLineFlag* positive = Find(AbseilName(rest, program));
        if (positive != nullptr && positive->IsOfType<bool>()) {
          flag = positive;
          negative = true;
        }
      }
    }
    if (flag == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag ", args[i]));
    }
    const std::string shown = CommandLineName(flag->Name());
    if (flag->IsOfType<bool>()) {
      if (negative && has_value) {
        return absl::InvalidArgumentError(
            absl::StrCat(args[i], " takes no value: write ", shown, "=", value));
      }
      if (!has_value) value = negative ? "false" : "true";
    } else if (!has_value) {
      if (i + 1 >= args.size()) return absl::InvalidArgumentError(shown + " needs a value");
      value = args[++i];
    }
    given[flag] = value;

    if (const void* handle = flag;
        Contains(program.repeated, handle) || Contains(program.take_following, handle)) {
      std::vector<std::string>& values = lists[flag];
      values.push_back(value);
      if (Contains(program.take_following, handle)) {
        while (i + 1 < args.size() && !absl::StartsWith(args[i + 1], "-")) {
          values.push_back(args[++i]);
        }
      }
      continue;
    }
    if (std::string error; !flag->ParseFrom(value, &error)) {
      return BadValue(*flag, value, std::move(error), program);
    }
  }
  for (auto& [flag, values] : lists) {
    // Written through the typed flag: ParseFrom would split each value at its commas.
    for (ListFlag* list : program.repeated) {
      if (&absl::GetFlagReflectionHandle(*list) == flag) absl::SetFlag(list, values);
    }
    for (ListFlag* list : program.take_following) {
      if (&absl::GetFlagReflectionHandle(*list) == flag) absl::SetFlag(list, values);
    }
  }
  for (const Requirement& r : program.requirements) {
    if (r.ok()) continue;
    const auto it = given.find(r.flag);
    if (it == given.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat(CommandLineName(r.flag->Name()), " is required: want ", r.want));
    }
    return absl::InvalidArgumentError(
        absl::StrCat(CommandLineName(r.flag->Name()), " \"", it->second, "\": want ", r.want));
  }
  return parsed;
}

std::vector<std::string> Parse(int argc, char** argv, const Program& program) {
  // Once per process, as Abseil allows; Help() prints program.usage itself.
  static const bool usage_set = [&program] {
    absl::SetProgramUsageMessage(program.usage);
    return true;
  }();
  (void)usage_set;
  absl::StatusOr<Parsed> parsed = ParseArgs({argv + std::min(argc, 1), argv + argc}, program);
  if (!parsed.ok()) UsageError(program, parsed.status().message());
  if (parsed->help) {
    std::cout << Help(program);
    std::exit(0);
  }
  return std::move(parsed->positional);
}

void UsageError(const Program& program, absl::string_view message) {
  std::cerr << program.name << ": " << message << "\n"
            << "(`" << program.name << " --help` lists every flag)\n";
  std::exit(2);
}

std::string Help(const Program& program) {
  std::vector<const absl::CommandLineFlag*> flags;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (IsProgramFlag(*flag)) flags.push_back(flag);
  }
  // One-letter flags sort by their letter, among the others: -f between --drain-timeout and
  // --idle-timeout.
  std::sort(flags.begin(), flags.end(), [](const auto* a, const auto* b) {
    return absl::AsciiStrToLower(a->Name()) < absl::AsciiStrToLower(b->Name());
  });
  std::string out = program.usage;
  if (!absl::EndsWith(out, "\n")) out += "\n";
  absl::StrAppend(&out,
                  "\nflags (--flag value or --flag=value; booleans --flag, --noflag or "
                  "--flag=false):\n");
  for (const absl::CommandLineFlag* flag : flags) {
    std::vector<std::string> names = {CommandLineName(flag->Name())};
    for (const auto& [alias, target] : program.aliases) {
      if (target == flag->Name()) names.push_back(CommandLineName(alias));
    }
    const void* handle = flag;
    const bool repeated =
        Contains(program.repeated, handle) || Contains(program.take_following, handle);
    const std::string default_value = flag->DefaultValue();
    absl::StrAppend(&out, "  ", absl::StrJoin(names, ", "),
                    "  default: ", default_value.empty() ? "none" : default_value,
                    repeated ? " (repeatable)" : "", "\n");
    for (const std::string& line : Wrap(flag->Help(), 86)) {
      absl::StrAppend(&out, "      ", line, "\n");
    }
  }
  absl::StrAppend(&out, "  -h, --help\n      print this and exit\n");
  return out;
}

}  // namespace sluice::flags
