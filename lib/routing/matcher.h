#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "lib/config/resources.h"
#include "lib/routing/request.h"
#include "re2/re2.h"

namespace sluice::routing {

// One StringMatch compiled once: RE2 regexes must match the whole value, as Envoy's
// safe_regex does.
class StringMatcher {
 public:
  static absl::StatusOr<StringMatcher> Create(const config::StringMatch& match,
                                              bool ignore_case = false);

  config::StringMatch::Kind kind() const { return kind_; }
  const std::string& value() const { return value_; }
  bool Matches(absl::string_view candidate) const;
  // "exact \"/login\"", "prefix \"/api\"", "regex \"...\"", "present".
  std::string Describe() const;

 private:
  config::StringMatch::Kind kind_ = config::StringMatch::Kind::kPresent;
  std::string value_;
  bool ignore_case_ = false;
  std::shared_ptr<const RE2> regex_;  // shared so the matcher stays copyable
};

struct HeaderMatcher {
  std::string name;
  StringMatcher matcher;
  bool invert = false;  // withoutHeaders
};

struct QueryParamMatcher {
  std::string name;
  StringMatcher matcher;
};

// One `match` block of an HTTP route: every condition must hold.
class RouteMatcher {
 public:
  static absl::StatusOr<RouteMatcher> Create(const config::HTTPMatchRequest& match);
  // A match that accepts every request (a rule without `match`).
  static RouteMatcher CatchAll();

  bool Matches(const RequestView& request) const;
  // Like Matches, but says which condition failed first (for Explain).
  bool Explain(const RequestView& request, std::string* reason) const;

  // "uri prefix \"/api\", header end-user exact \"jason\"", or "every request".
  std::string Describe() const;

  // True when this block accepts every request: Istio drops every later route after it.
  bool IsCatchAll() const;
  // The uri condition, if any (prefix rewrites depend on it).
  const std::optional<StringMatcher>& uri() const { return uri_; }
  const std::string& name() const { return name_; }
  // Header names this block reads, for the gateway to send.
  void CollectHeaderNames(std::vector<std::string>& names) const;
  // The match block this was compiled from (empty for CatchAll): the decision table carries
  // it, and Create on it is the only way to rebuild a matcher that matches identically.
  const config::HTTPMatchRequest& source() const { return source_; }

 private:
  config::HTTPMatchRequest source_;
  std::string name_;
  std::optional<StringMatcher> uri_;
  std::optional<StringMatcher> scheme_;
  std::optional<StringMatcher> method_;
  std::optional<StringMatcher> authority_;
  std::vector<HeaderMatcher> headers_;
  std::vector<QueryParamMatcher> query_params_;
  std::optional<uint32_t> port_;
  config::Labels source_labels_;
  std::string source_namespace_;
};

}  // namespace sluice::routing
