#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "lib/config/resources.h"

namespace sluice::routing {

// What a gateway tells the server about one request: enough to match every rule kind.
struct RequestAttributes {
  std::string authority;  // Host header, possibly with a port
  std::string method = "GET";
  std::string path = "/";  // with query string
  std::string scheme = "http";
  // Lower-case names; a name may repeat (values are joined with ',' for matching, as Envoy).
  std::vector<std::pair<std::string, std::string>> headers;
  config::Labels source_labels;
  std::string source_namespace;
  uint32_t port = 0;  // 0: taken from the authority, else 80 (443 for https)
};

// Pieces of a request that matchers need, computed once per request without allocating.
class RequestView {
 public:
  explicit RequestView(const RequestAttributes& request);

  const RequestAttributes& request() const { return request_; }
  absl::string_view path_without_query() const { return path_without_query_; }
  absl::string_view host() const { return host_; }  // authority without port
  uint32_t port() const { return port_; }

  // Every value of header `name` joined with ','; nullopt when absent. A single value is
  // returned in place; several are joined into `*scratch`, which must outlive the result.
  std::optional<absl::string_view> Header(absl::string_view name, std::string* scratch) const;
  // First occurrence of query parameter `name` (empty for `?name`); nullopt when absent.
  std::optional<absl::string_view> QueryParam(absl::string_view name) const;

 private:
  const RequestAttributes& request_;
  absl::string_view path_without_query_;
  absl::string_view query_;
  absl::string_view host_;
  uint32_t port_ = 80;
};

}  // namespace sluice::routing
