#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/string_view.h"

namespace sluice::config {

// Where a configuration value came from. `line` is 1-based; 0 means unknown.
struct SourceLocation {
  std::string file;
  int line = 0;
};

enum class Severity { kError, kWarning, kNotice };

// One finding about a configuration: an error rejects the whole change, a warning flags a
// legal but surprising setting, a notice says what sluice skipped and why.
struct Diagnostic {
  Severity severity = Severity::kError;
  SourceLocation where;
  // Full path of the field inside its document, e.g. `spec.http[0].retries.perTryTimeout`.
  // Empty for findings about a whole document or file.
  std::string field_path;
  std::string message;

  // `file:line: field.path: message` for errors; warnings and notices insert their severity
  // after the location (`file:line: warning: field.path: message`).
  std::string ToString() const;
};

// Collects findings in the order they were made.
class Diagnostics {
 public:
  void Add(Severity severity, SourceLocation where, absl::string_view field_path,
           absl::string_view message);
  void Error(SourceLocation where, absl::string_view field_path, absl::string_view message) {
    Add(Severity::kError, std::move(where), field_path, message);
  }
  void Warning(SourceLocation where, absl::string_view field_path, absl::string_view message) {
    Add(Severity::kWarning, std::move(where), field_path, message);
  }
  void Notice(SourceLocation where, absl::string_view field_path, absl::string_view message) {
    Add(Severity::kNotice, std::move(where), field_path, message);
  }
  void Append(const Diagnostics& other);

  bool HasErrors() const { return error_count_ > 0; }
  int error_count() const { return error_count_; }
  const std::vector<Diagnostic>& all() const { return all_; }
  std::vector<Diagnostic> Filter(Severity severity) const;
  // Every finding, one per line.
  std::string ToString() const;

 private:
  std::vector<Diagnostic> all_;
  int error_count_ = 0;
};

}  // namespace sluice::config
