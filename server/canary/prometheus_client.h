#pragma once

#include <map>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace sluice::canary {

// Instant PromQL queries against a Prometheus server's HTTP API (GET /api/v1/query).
//
// Each Query opens its own HTTP/1.1 connection (Connection: close) and waits at most `timeout`
// for the whole exchange, DNS lookup excepted. The client holds no mutable state, so one
// instance may be used from many threads at once.
class PrometheusClient {
 public:
  // base_url like "http://127.0.0.1:9090" or "http://host:9090/prefix" (a trailing slash is
  // dropped). Only http is supported: an https URL is an error.
  static absl::StatusOr<PrometheusClient> Create(const std::string& base_url,
                                                 absl::Duration timeout = absl::Seconds(5));

  // The query's single value: a scalar, or a vector with exactly one sample.
  // std::nullopt when there is no evidence: an empty vector, or NaN/Inf (e.g. 0/0 from rate()
  // with no traffic).
  // Errors name the server URL and the query:
  //   InvalidArgument   Prometheus rejected the query (HTTP 400/422, with its own "error" text),
  //                     or it returned several series, a range vector or a string;
  //   Unavailable       the connection failed (refused, reset, name not resolved) or the server
  //                     answered 503;
  //   DeadlineExceeded  no complete answer within the timeout;
  //   Internal          the answer was not the JSON the API documents.
  absl::StatusOr<std::optional<double>> Query(const std::string& promql) const;

  const std::string& base_url() const { return base_url_; }

 private:
  PrometheusClient(std::string base_url, std::string host, std::string port,
                   std::string host_header, std::string path_prefix, absl::Duration timeout);

  std::string base_url_;     // As given, without a trailing slash.
  std::string host_;         // Name or address, without IPv6 brackets.
  std::string port_;         // Decimal.
  std::string host_header_;  // The URL's authority, for the Host header.
  std::string path_prefix_;  // "" or "/prefix", without a trailing slash.
  absl::Duration timeout_;
};

// Flagger-style query templates: replaces {{ name }} (spaces optional) with variables[name].
// An unknown variable, an empty {{ }} or an unclosed {{ is an error naming it; text without
// "{{" is returned unchanged (single braces, as in PromQL label matchers, are left alone).
// Substituted values are inserted verbatim, not escaped.
absl::StatusOr<std::string> RenderQueryTemplate(
    const std::string& text, const std::map<std::string, std::string>& variables);

}  // namespace sluice::canary
