#include "lib/config/diagnostics.h"

#include "absl/strings/str_cat.h"

namespace sluice::config {

std::string Diagnostic::ToString() const {
  std::string out = where.file.empty() ? std::string("<input>") : where.file;
  if (where.line > 0) absl::StrAppend(&out, ":", where.line);
  out += ": ";
  switch (severity) {
    case Severity::kError:
      break;
    case Severity::kWarning:
      out += "warning: ";
      break;
    case Severity::kNotice:
      out += "notice: ";
      break;
  }
  if (!field_path.empty()) absl::StrAppend(&out, field_path, ": ");
  out += message;
  return out;
}

void Diagnostics::Add(Severity severity, SourceLocation where, absl::string_view field_path,
                      absl::string_view message) {
  if (severity == Severity::kError) ++error_count_;
  all_.push_back(
      Diagnostic{severity, std::move(where), std::string(field_path), std::string(message)});
}

void Diagnostics::Append(const Diagnostics& other) {
  for (const Diagnostic& d : other.all_) Add(d.severity, d.where, d.field_path, d.message);
}

std::vector<Diagnostic> Diagnostics::Filter(Severity severity) const {
  std::vector<Diagnostic> out;
  for (const Diagnostic& d : all_) {
    if (d.severity == severity) out.push_back(d);
  }
  return out;
}

std::string Diagnostics::ToString() const {
  std::string out;
  for (const Diagnostic& d : all_) absl::StrAppend(&out, d.ToString(), "\n");
  return out;
}

}  // namespace sluice::config
