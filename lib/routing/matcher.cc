#include "lib/routing/matcher.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "lib/config/service_registry.h"

namespace sluice::routing {

using Kind = config::StringMatch::Kind;

absl::StatusOr<StringMatcher> StringMatcher::Create(const config::StringMatch& match,
                                                    bool ignore_case) {
  StringMatcher m;
  m.kind_ = match.kind;
  m.value_ = match.value;
  // Envoy ignores case_sensitive for safe_regex; Istio's ignoreUriCase has no effect there.
  m.ignore_case_ = ignore_case && match.kind != Kind::kRegex;
  if (match.kind == Kind::kRegex) {
    RE2::Options options;
    options.set_log_errors(false);
    auto re = std::make_shared<RE2>(match.value, options);
    if (!re->ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid regex \"", match.value, "\": ", re->error()));
    }
    m.regex_ = std::move(re);
  }
  return m;
}

bool StringMatcher::Matches(absl::string_view candidate) const {
  switch (kind_) {
    case Kind::kExact:
      return ignore_case_ ? absl::EqualsIgnoreCase(candidate, value_) : candidate == value_;
    case Kind::kPrefix:
      return ignore_case_ ? absl::StartsWithIgnoreCase(candidate, value_)
                          : absl::StartsWith(candidate, value_);
    case Kind::kRegex:
      return RE2::FullMatch(re2::StringPiece(candidate.data(), candidate.size()), *regex_);
    case Kind::kPresent:
      return true;
  }
  return false;
}

std::string StringMatcher::Describe() const {
  switch (kind_) {
    case Kind::kExact:
      return absl::StrCat("exact \"", value_, "\"", ignore_case_ ? " (ignoring case)" : "");
    case Kind::kPrefix:
      return absl::StrCat("prefix \"", value_, "\"", ignore_case_ ? " (ignoring case)" : "");
    case Kind::kRegex:
      return absl::StrCat("regex \"", value_, "\"");
    case Kind::kPresent:
      return "present";
  }
  return "";
}

absl::StatusOr<RouteMatcher> RouteMatcher::Create(const config::HTTPMatchRequest& match) {
  RouteMatcher m;
  m.source_ = match;
  m.name_ = match.name;
  auto compile = [](const std::optional<config::StringMatch>& in, bool ignore_case,
                    std::optional<StringMatcher>& out) -> absl::Status {
    if (!in) return absl::OkStatus();
    absl::StatusOr<StringMatcher> compiled = StringMatcher::Create(*in, ignore_case);
    if (!compiled.ok()) return compiled.status();
    out = *std::move(compiled);
    return absl::OkStatus();
  };
  if (absl::Status s = compile(match.uri, match.ignore_uri_case, m.uri_); !s.ok()) return s;
  if (absl::Status s = compile(match.scheme, false, m.scheme_); !s.ok()) return s;
  if (absl::Status s = compile(match.method, false, m.method_); !s.ok()) return s;
  if (absl::Status s = compile(match.authority, false, m.authority_); !s.ok()) return s;
  for (const auto* list : {&match.headers, &match.without_headers}) {
    const bool invert = list == &match.without_headers;
    for (const config::NamedStringMatch& h : *list) {
      absl::StatusOr<StringMatcher> compiled = StringMatcher::Create(h.match);
      if (!compiled.ok()) return compiled.status();
      m.headers_.push_back(HeaderMatcher{h.name, *std::move(compiled), invert});
    }
  }
  for (const config::NamedStringMatch& q : match.query_params) {
    absl::StatusOr<StringMatcher> compiled = StringMatcher::Create(q.match);
    if (!compiled.ok()) return compiled.status();
    m.query_params_.push_back(QueryParamMatcher{q.name, *std::move(compiled)});
  }
  m.port_ = match.port;
  m.source_labels_ = match.source_labels;
  m.source_namespace_ = match.source_namespace;
  return m;
}

RouteMatcher RouteMatcher::CatchAll() { return RouteMatcher(); }

bool RouteMatcher::IsCatchAll() const {
  if (scheme_ || method_ || authority_ || !headers_.empty() || !query_params_.empty() || port_ ||
      !source_labels_.empty() || !source_namespace_.empty()) {
    return false;
  }
  if (!uri_) return true;
  return (uri_->kind() == Kind::kPrefix && uri_->value() == "/") ||
         (uri_->kind() == Kind::kRegex && uri_->value() == ".*");
}

void RouteMatcher::CollectHeaderNames(std::vector<std::string>& names) const {
  for (const HeaderMatcher& h : headers_) {
    if (std::find(names.begin(), names.end(), h.name) == names.end()) names.push_back(h.name);
  }
}

std::string RouteMatcher::Describe() const {
  std::vector<std::string> parts;
  if (uri_) parts.push_back(absl::StrCat("uri ", uri_->Describe()));
  if (method_) parts.push_back(absl::StrCat("method ", method_->Describe()));
  if (authority_) parts.push_back(absl::StrCat("authority ", authority_->Describe()));
  if (scheme_) parts.push_back(absl::StrCat("scheme ", scheme_->Describe()));
  if (port_) parts.push_back(absl::StrCat("port ", *port_));
  for (const HeaderMatcher& h : headers_) {
    parts.push_back(
        absl::StrCat(h.invert ? "without header " : "header ", h.name, " ", h.matcher.Describe()));
  }
  for (const QueryParamMatcher& q : query_params_) {
    parts.push_back(absl::StrCat("query ", q.name, " ", q.matcher.Describe()));
  }
  for (const auto& [k, v] : source_labels_) parts.push_back(absl::StrCat("source ", k, "=", v));
  if (!source_namespace_.empty()) {
    parts.push_back(absl::StrCat("source namespace ", source_namespace_));
  }
  return parts.empty() ? "every request" : absl::StrJoin(parts, ", ");
}

bool RouteMatcher::Matches(const RequestView& request) const { return Explain(request, nullptr); }

bool RouteMatcher::Explain(const RequestView& request, std::string* reason) const {
  // Reasons are built only when asked for: on the request path a failed condition must
  // cost a comparison, not a string.
  auto fail = [reason](auto&& describe) {
    if (reason != nullptr) *reason = describe();
    return false;
  };
  const RequestAttributes& r = request.request();
  if (uri_) {
    // Exact and regex compare the path without its query; prefix compares the raw path.
    const absl::string_view candidate =
        uri_->kind() == Kind::kPrefix ? absl::string_view(r.path) : request.path_without_query();
    if (!uri_->Matches(candidate)) {
      return fail([&] {
        return absl::StrCat("uri ", uri_->Describe(), " does not match \"", candidate, "\"");
      });
    }
  }
  if (method_ && !method_->Matches(r.method)) {
    return fail([&] {
      return absl::StrCat("method ", method_->Describe(), " does not match \"", r.method, "\"");
    });
  }
  if (authority_ && !authority_->Matches(r.authority)) {
    return fail([&] {
      return absl::StrCat("authority ", authority_->Describe(), " does not match \"", r.authority,
                          "\"");
    });
  }
  if (scheme_ && !scheme_->Matches(r.scheme)) {
    return fail([&] {
      return absl::StrCat("scheme ", scheme_->Describe(), " does not match \"", r.scheme, "\"");
    });
  }
  if (port_ && *port_ != request.port()) {
    return fail([&] { return absl::StrCat("port ", *port_, " does not match ", request.port()); });
  }
  std::string joined;  // only used when a header appears more than once
  for (const HeaderMatcher& h : headers_) {
    const std::optional<absl::string_view> value = request.Header(h.name, &joined);
    if (!h.invert) {
      if (!value) return fail([&] { return absl::StrCat("header ", h.name, " is absent"); });
      if (!h.matcher.Matches(*value)) {
        return fail([&] {
          return absl::StrCat("header ", h.name, " ", h.matcher.Describe(), " does not match \"",
                              *value, "\"");
        });
      }
      continue;
    }
    // withoutHeaders: Envoy inverts the match and treats a missing header as "" (a
    // presence-style entry matches exactly when the header is absent).
    const bool matched = h.matcher.kind() == Kind::kPresent
                             ? value.has_value()
                             : h.matcher.Matches(value.value_or(absl::string_view()));
    if (matched) {
      return fail([&] {
        return absl::StrCat("withoutHeaders ", h.name, " ", h.matcher.Describe(), " matches \"",
                            value.value_or(absl::string_view()), "\"");
      });
    }
  }
  for (const QueryParamMatcher& q : query_params_) {
    const std::optional<absl::string_view> value = request.QueryParam(q.name);
    if (!value) return fail([&] { return absl::StrCat("query parameter ", q.name, " is absent"); });
    if (!q.matcher.Matches(*value)) {
      return fail([&] {
        return absl::StrCat("query parameter ", q.name, " ", q.matcher.Describe(),
                            " does not match \"", *value, "\"");
      });
    }
  }
  if (!config::LabelsMatch(source_labels_, r.source_labels)) {
    return fail(
        [] { return std::string("source labels do not include every sourceLabels entry"); });
  }
  if (!source_namespace_.empty() && source_namespace_ != r.source_namespace) {
    return fail([&] {
      return absl::StrCat("source namespace \"", r.source_namespace, "\" is not \"",
                          source_namespace_, "\"");
    });
  }
  return true;
}

}  // namespace sluice::routing
