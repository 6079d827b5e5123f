#include "lib/routing/request.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "lib/config/host_names.h"

namespace sluice::routing {

RequestView::RequestView(const RequestAttributes& request) : request_(request) {
  absl::string_view path = request.path;
  const size_t q = path.find('?');
  path_without_query_ = path.substr(0, q);
  if (q != absl::string_view::npos) query_ = path.substr(q + 1);
  // A fragment never reaches a server, but be strict about what we match against.
  const size_t hash = query_.find('#');
  if (hash != absl::string_view::npos) query_ = query_.substr(0, hash);

  host_ = config::StripPort(request.authority);
  port_ = request.scheme == "https" ? 443 : 80;
  if (request.port != 0) {
    port_ = request.port;
  } else if (host_.size() < request.authority.size()) {
    uint32_t parsed = 0;
    absl::string_view rest = absl::string_view(request.authority).substr(host_.size());
    if (!rest.empty() && rest.front() == ':' && absl::SimpleAtoi(rest.substr(1), &parsed)) {
      port_ = parsed;
    }
  }
}

std::optional<absl::string_view> RequestView::Header(absl::string_view name,
                                                     std::string* scratch) const {
  const std::pair<std::string, std::string>* first = nullptr;
  bool several = false;
  for (const auto& header : request_.headers) {
    if (header.first != name) continue;
    if (first == nullptr) {
      first = &header;
    } else {
      several = true;
      break;
    }
  }
  if (first == nullptr) return std::nullopt;
  if (!several) return absl::string_view(first->second);
  scratch->clear();
  bool first_value = true;
  for (const auto& [key, value] : request_.headers) {
    if (key != name) continue;
    if (!first_value) scratch->push_back(',');
    scratch->append(value);
    first_value = false;
  }
  return absl::string_view(*scratch);
}

std::optional<absl::string_view> RequestView::QueryParam(absl::string_view name) const {
  if (query_.empty()) return std::nullopt;
  for (absl::string_view pair : absl::StrSplit(query_, '&')) {
    const size_t eq = pair.find('=');
    absl::string_view key = pair.substr(0, eq);
    if (key != name) continue;
    return eq == absl::string_view::npos ? absl::string_view() : pair.substr(eq + 1);
  }
  return std::nullopt;
}

}  // namespace sluice::routing
