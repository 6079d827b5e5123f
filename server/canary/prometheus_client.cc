#include "server/canary/prometheus_client.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

namespace sluice::canary {
namespace {

using google::protobuf::ListValue;
using google::protobuf::Struct;
using google::protobuf::Value;

// Answers larger than this are refused: a single-value check never needs more.
constexpr size_t kMaxResponseBytes = 64 << 20;
// How much of an unexpected answer an error message quotes.
constexpr size_t kSnippetBytes = 200;
// How many series a "more than one series" error lists.
constexpr int kSeriesListed = 3;

std::string ErrnoText(int err) { return std::generic_category().message(err); }

std::string Snippet(absl::string_view text) {
  text = absl::StripAsciiWhitespace(text);
  if (text.size() <= kSnippetBytes) return absl::CHexEscape(text);
  return absl::StrCat(absl::CHexEscape(text.substr(0, kSnippetBytes)), "...");
}

// Owns a file descriptor.
class ScopedFd {
 public:
  explicit ScopedFd(int fd = -1) : fd_(fd) {}
  ~ScopedFd() {
    if (fd_ >= 0) close(fd_);
  }
  ScopedFd(ScopedFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  ScopedFd& operator=(ScopedFd&& other) noexcept {
    if (this != &other) {
      if (fd_ >= 0) close(fd_);
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;

  int get() const { return fd_; }

 private:
  int fd_;
};

// Deadlines are on the monotonic clock: an NTP step must not end or stretch a query.
using Deadline = std::chrono::steady_clock::time_point;
Deadline SteadyNow() { return std::chrono::steady_clock::now(); }

// Milliseconds left until `deadline`, rounded up so that poll never wakes early; 0 when past.
int RemainingMs(Deadline deadline) {
  const absl::Duration left = absl::FromChrono(deadline - SteadyNow());
  if (left <= absl::ZeroDuration()) return 0;
  const int64_t ms = absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1)));
  return ms > 24 * 3600 * 1000 ? 24 * 3600 * 1000 : static_cast<int>(ms);
}

// Waits until `fd` is ready for `events`. Returns false on timeout.
absl::StatusOr<bool> WaitFor(int fd, short events, Deadline deadline) {
  while (true) {
    pollfd p{fd, events, 0};
    const int n = poll(&p, 1, RemainingMs(deadline));
    if (n > 0) return true;
    if (n == 0) {
      if (SteadyNow() >= deadline) return false;
      continue;
    }
    if (errno == EINTR) continue;
    return absl::InternalError(absl::StrCat("poll: ", ErrnoText(errno)));
  }
}

std::string HostPort(const std::string& host, const std::string& port) {
  return absl::StrContains(host, ':') ? absl::StrCat("[", host, "]:", port)
                                      : absl::StrCat(host, ":", port);
}

absl::StatusOr<ScopedFd> Connect(const std::string& host, const std::string& port,
                                 absl::Duration timeout, Deadline deadline) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &found);
  if (rc != 0) {
    const std::string why = rc == EAI_SYSTEM ? ErrnoText(errno) : gai_strerror(rc);
    return absl::UnavailableError(absl::StrCat("cannot resolve ", host, ": ", why));
  }
  std::vector<std::string> failures;
  for (addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    ScopedFd fd(
        socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol));
    if (fd.get() < 0) {
      failures.push_back(absl::StrCat("socket: ", ErrnoText(errno)));
      continue;
    }
    int err = 0;
    if (connect(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0) {
      err = errno;
      if (err == EINPROGRESS || err == EINTR) {
        absl::StatusOr<bool> ready = WaitFor(fd.get(), POLLOUT, deadline);
        if (!ready.ok()) {
          freeaddrinfo(found);
          return ready.status();
        }
        if (!*ready) {
          freeaddrinfo(found);
          return absl::DeadlineExceededError(absl::StrCat("connecting to ", HostPort(host, port),
                                                          " timed out after ",
                                                          absl::FormatDuration(timeout)));
        }
        socklen_t len = sizeof(err);
        if (getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
      }
    }
    if (err == 0) {
      freeaddrinfo(found);
      return fd;
    }
    failures.push_back(ErrnoText(err));
  }
  freeaddrinfo(found);
  return absl::UnavailableError(absl::StrCat("cannot connect to ", HostPort(host, port), ": ",
                                             absl::StrJoin(failures, "; ")));
}

absl::Status SendAll(int fd, absl::string_view data, absl::Duration timeout, Deadline deadline) {
  while (!data.empty()) {
    const ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      absl::StatusOr<bool> ready = WaitFor(fd, POLLOUT, deadline);
      if (!ready.ok()) return ready.status();
      if (!*ready) {
        return absl::DeadlineExceededError(
            absl::StrCat("sending the request timed out after ", absl::FormatDuration(timeout)));
      }
      continue;
    }
    return absl::UnavailableError(absl::StrCat("sending the request failed: ", ErrnoText(errno)));
  }
  return absl::OkStatus();
}

// The framing of an HTTP/1.x response, from its status line and headers.
struct ResponseHead {
  int status_code = 0;
  size_t body_start = 0;  // Offset of the body in the raw response.
  bool chunked = false;
  std::optional<uint64_t> content_length;
};

// nullopt while `raw` does not yet hold the whole head.
absl::StatusOr<std::optional<ResponseHead>> ParseHead(absl::string_view raw) {
  const size_t end = raw.find("\r\n\r\n");
  if (end == absl::string_view::npos) {
    if (raw.size() > 64 * 1024) return absl::InternalError("response headers too long");
    return std::nullopt;
  }
  ResponseHead head;
  head.body_start = end + 4;
  std::vector<absl::string_view> lines = absl::StrSplit(raw.substr(0, end), "\r\n");
  // "HTTP/1.1 200 OK"
  absl::string_view status_line = lines[0];
  if (!absl::ConsumePrefix(&status_line, "HTTP/1.") || status_line.size() < 5 ||
      status_line[1] != ' ' || !absl::SimpleAtoi(status_line.substr(2, 3), &head.status_code) ||
      (status_line.size() > 5 && status_line[5] != ' ')) {
    return absl::InternalError(absl::StrCat("not an HTTP response: ", Snippet(lines[0])));
  }
  for (size_t i = 1; i < lines.size(); ++i) {
    const size_t colon = lines[i].find(':');
    if (colon == absl::string_view::npos) continue;
    const absl::string_view name = absl::StripAsciiWhitespace(lines[i].substr(0, colon));
    const absl::string_view value = absl::StripAsciiWhitespace(lines[i].substr(colon + 1));
    if (absl::EqualsIgnoreCase(name, "Transfer-Encoding")) {
      // "chunked" is always the last coding when present.
      head.chunked = absl::EndsWithIgnoreCase(value, "chunked");
    } else if (absl::EqualsIgnoreCase(name, "Content-Length")) {
      uint64_t length = 0;
      if (!absl::SimpleAtoi(value, &length)) {
        return absl::InternalError(absl::StrCat("bad Content-Length: ", Snippet(value)));
      }
      head.content_length = length;
    }
  }
  return head;
}

// Decodes a chunked body. nullopt while `data` does not yet hold the terminating chunk (and, when
// `eof` is false, the blank line after the trailers).
absl::StatusOr<std::optional<std::string>> DecodeChunked(absl::string_view data, bool eof) {
  std::string body;
  size_t pos = 0;
  while (true) {
    const size_t line_end = data.find("\r\n", pos);
    if (line_end == absl::string_view::npos) return std::nullopt;
    absl::string_view size_text = data.substr(pos, line_end - pos);
    size_text = size_text.substr(0, size_text.find(';'));  // Chunk extensions.
    size_text = absl::StripAsciiWhitespace(size_text);
    uint64_t size = 0;
    if (size_text.empty() || size_text.size() > 15 || !absl::SimpleHexAtoi(size_text, &size)) {
      return absl::InternalError(
          absl::StrCat("bad chunk size in chunked answer: ", Snippet(size_text)));
    }
    pos = line_end + 2;
    if (size == 0) {
      // Trailers, if any, end with a blank line.
      if (data.substr(pos, 2) == "\r\n" || data.find("\r\n\r\n", pos) != absl::string_view::npos ||
          eof) {
        return body;
      }
      return std::nullopt;
    }
    if (data.size() - pos < size + 2) return std::nullopt;
    if (data.substr(pos + size, 2) != "\r\n") {
      return absl::InternalError("chunk not followed by CRLF in chunked answer");
    }
    absl::StrAppend(&body, data.substr(pos, size));
    pos += size + 2;
  }
}

struct HttpResponse {
  int status_code = 0;
  std::string body;
};

// The response in `raw`, or nullopt while it is incomplete and the connection still open.
absl::StatusOr<std::optional<HttpResponse>> ParseResponse(absl::string_view raw, bool eof) {
  absl::StatusOr<std::optional<ResponseHead>> head = ParseHead(raw);
  if (!head.ok()) return head.status();
  if (!head->has_value()) {
    if (!eof) return std::nullopt;
    if (raw.empty())
      return absl::UnavailableError("the server closed the connection without answering");
    return absl::InternalError(
        absl::StrCat("connection closed in the middle of the response headers: ", Snippet(raw)));
  }
  HttpResponse response;
  response.status_code = (*head)->status_code;
  const absl::string_view rest = raw.substr((*head)->body_start);
  if ((*head)->chunked) {
    absl::StatusOr<std::optional<std::string>> body = DecodeChunked(rest, eof);
    if (!body.ok()) return body.status();
    if (!body->has_value()) {
      if (!eof) return std::nullopt;
      return absl::InternalError("connection closed in the middle of a chunked answer");
    }
    response.body = std::move(**body);
  } else if ((*head)->content_length.has_value()) {
    const uint64_t length = *(*head)->content_length;
    if (rest.size() < length) {
      if (!eof) return std::nullopt;
      return absl::InternalError(absl::StrCat("connection closed after ", rest.size(), " of ",
                                              length, " bytes of the answer"));
    }
    response.body = std::string(rest.substr(0, length));
  } else {
    if (!eof) return std::nullopt;
    response.body = std::string(rest);
  }
  return response;
}

// One GET, on a connection of its own.
absl::StatusOr<HttpResponse> HttpGet(const std::string& host, const std::string& port,
                                     const std::string& host_header, const std::string& target,
                                     absl::Duration timeout) {
  const Deadline deadline = SteadyNow() + absl::ToChronoNanoseconds(timeout);
  absl::StatusOr<ScopedFd> fd = Connect(host, port, timeout, deadline);
  if (!fd.ok()) return fd.status();
  const std::string request =
      absl::StrCat("GET ", target, " HTTP/1.1\r\nHost: ", host_header,
                   "\r\nAccept: application/json\r\nUser-Agent: sluice-canary\r\n"
                   "Connection: close\r\n\r\n");
  if (absl::Status sent = SendAll(fd->get(), request, timeout, deadline); !sent.ok()) return sent;

  std::string raw;
  char buffer[16 * 1024];
  std::optional<ResponseHead> head;
  bool eof = false;
  while (!eof) {
    absl::StatusOr<bool> ready = WaitFor(fd->get(), POLLIN, deadline);
    if (!ready.ok()) return ready.status();
    if (!*ready) {
      return absl::DeadlineExceededError(
          absl::StrCat("no complete answer within ", absl::FormatDuration(timeout),
                       raw.empty() ? "" : absl::StrCat(" (", raw.size(), " bytes received)")));
    }
    const ssize_t n = recv(fd->get(), buffer, sizeof(buffer), 0);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      return absl::UnavailableError(absl::StrCat("reading the answer failed: ", ErrnoText(errno)));
    }
    if (n == 0) {
      eof = true;
      break;
    }
    raw.append(buffer, static_cast<size_t>(n));
    if (raw.size() > kMaxResponseBytes) {
      return absl::ResourceExhaustedError(
          absl::StrCat("answer larger than ", kMaxResponseBytes >> 20, " MiB"));
    }
    // Stop as soon as the response is whole, should the server keep the connection open. Only
    // cheap checks here; the body is decoded once it looks complete.
    if (!head.has_value()) {
      absl::StatusOr<std::optional<ResponseHead>> parsed = ParseHead(raw);
      if (!parsed.ok()) return parsed.status();
      head = *parsed;
    }
    if (!head.has_value()) continue;
    const bool looks_complete = head->chunked
                                    ? absl::EndsWith(raw, "0\r\n\r\n")
                                    : head->content_length.has_value() &&
                                          raw.size() - head->body_start >= *head->content_length;
    if (looks_complete) {
      absl::StatusOr<std::optional<HttpResponse>> done = ParseResponse(raw, /*eof=*/false);
      if (!done.ok()) return done.status();
      if (done->has_value()) return std::move(**done);
    }
  }
  absl::StatusOr<std::optional<HttpResponse>> done = ParseResponse(raw, /*eof=*/true);
  if (!done.ok()) return done.status();
  return std::move(**done);
}

// RFC 3986: everything outside the unreserved characters is percent-encoded.
std::string UrlEncode(absl::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size() * 3);
  for (const char c : text) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (absl::ascii_isalnum(u) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 0xF]);
    }
  }
  return out;
}

// The status code for an answer Prometheus marked "error", from its errorType (see
// prometheus/web/api/v1) or, failing that, the HTTP status.
absl::StatusCode CodeForPrometheusError(absl::string_view error_type, int http_status) {
  if (error_type == "bad_data" || error_type == "execution") {
    return absl::StatusCode::kInvalidArgument;
  }
  if (error_type == "timeout") return absl::StatusCode::kDeadlineExceeded;
  if (error_type == "canceled") return absl::StatusCode::kCancelled;
  if (error_type == "unavailable") return absl::StatusCode::kUnavailable;
  if (error_type == "not_found") return absl::StatusCode::kNotFound;
  if (error_type == "internal") return absl::StatusCode::kInternal;
  if (http_status == 400 || http_status == 422) return absl::StatusCode::kInvalidArgument;
  if (http_status == 503) return absl::StatusCode::kUnavailable;
  return absl::StatusCode::kUnknown;
}

// The status code for a non-JSON answer with a non-2xx HTTP status.
absl::StatusCode CodeForHttpStatus(int http_status) {
  switch (http_status) {
    case 401:
      return absl::StatusCode::kUnauthenticated;
    case 403:
      return absl::StatusCode::kPermissionDenied;
    case 404:
      return absl::StatusCode::kNotFound;
    case 408:
    case 504:
      return absl::StatusCode::kDeadlineExceeded;
    case 429:
      return absl::StatusCode::kResourceExhausted;
    case 502:
    case 503:
      return absl::StatusCode::kUnavailable;
    default:
      return http_status >= 400 && http_status < 500 ? absl::StatusCode::kInvalidArgument
                                                     : absl::StatusCode::kInternal;
  }
}

const Value* Field(const Struct& s, const std::string& name) {
  const auto it = s.fields().find(name);
  return it == s.fields().end() ? nullptr : &it->second;
}

std::string StringField(const Struct& s, const std::string& name) {
  const Value* v = Field(s, name);
  return v != nullptr && v->kind_case() == Value::kStringValue ? v->string_value() : "";
}

// A sample's [timestamp, "value"] pair: the value, or nullopt for NaN and infinities.
absl::StatusOr<std::optional<double>> SampleValue(const Value* pair) {
  if (pair == nullptr || pair->kind_case() != Value::kListValue ||
      pair->list_value().values_size() != 2 ||
      pair->list_value().values(1).kind_case() != Value::kStringValue) {
    return absl::InternalError("malformed answer: a sample is not a [timestamp, \"value\"] pair");
  }
  const std::string& text = pair->list_value().values(1).string_value();
  if (text == "NaN" || text == "+Inf" || text == "-Inf" || text == "Inf") return std::nullopt;
  double value = 0;
  if (!absl::SimpleAtod(text, &value)) {
    return absl::InternalError(
        absl::StrCat("malformed answer: sample value \"", Snippet(text), "\" is not a number"));
  }
  if (!std::isfinite(value)) return std::nullopt;
  return value;
}

// {a="x", b="y"}, for error messages.
std::string FormatLabels(const Value& sample) {
  if (sample.kind_case() != Value::kStructValue) return "{?}";
  const Value* metric = Field(sample.struct_value(), "metric");
  if (metric == nullptr || metric->kind_case() != Value::kStructValue) return "{}";
  // Struct fields are a hash map: sort for a stable message.
  std::map<std::string, std::string> labels;
  for (const auto& [name, value] : metric->struct_value().fields()) {
    labels[name] = value.kind_case() == Value::kStringValue ? value.string_value() : "?";
  }
  return absl::StrCat("{",
                      absl::StrJoin(labels, ", ",
                                    [](std::string* out, const auto& label) {
                                      absl::StrAppend(out, label.first, "=\"",
                                                      absl::CEscape(label.second), "\"");
                                    }),
                      "}");
}

// Interprets an answer of the query API.
absl::StatusOr<std::optional<double>> Interpret(const HttpResponse& response) {
  Struct root;
  const auto parsed = google::protobuf::util::JsonStringToMessage(response.body, &root);
  if (!parsed.ok() || response.body.empty()) {
    if (response.status_code < 200 || response.status_code >= 300) {
      return absl::Status(
          CodeForHttpStatus(response.status_code),
          absl::StrCat("HTTP ", response.status_code, ": ", Snippet(response.body)));
    }
    return absl::InternalError(absl::StrCat("malformed answer (HTTP ", response.status_code,
                                            ", not JSON): ", Snippet(response.body)));
  }
  const std::string status = StringField(root, "status");
  if (status == "error") {
    const std::string error_type = StringField(root, "errorType");
    std::string error = StringField(root, "error");
    if (error.empty()) error = "(no error text)";
    return absl::Status(CodeForPrometheusError(error_type, response.status_code),
                        absl::StrCat("HTTP ", response.status_code, ", ",
                                     error_type.empty() ? "error" : error_type, ": ", error));
  }
  if (status != "success") {
    return absl::InternalError(absl::StrCat("malformed answer (HTTP ", response.status_code,
                                            ", status \"", Snippet(status),
                                            "\"): ", Snippet(response.body)));
  }
  if (response.status_code < 200 || response.status_code >= 300) {
    return absl::Status(CodeForHttpStatus(response.status_code),
                        absl::StrCat("HTTP ", response.status_code, ": ", Snippet(response.body)));
  }
  const Value* data = Field(root, "data");
  if (data == nullptr || data->kind_case() != Value::kStructValue) {
    return absl::InternalError("malformed answer: no \"data\" object");
  }
  const std::string result_type = StringField(data->struct_value(), "resultType");
  const Value* result = Field(data->struct_value(), "result");
  if (result_type == "scalar") return SampleValue(result);
  if (result_type == "vector") {
    if (result == nullptr || result->kind_case() != Value::kListValue) {
      return absl::InternalError("malformed answer: vector result is not a list");
    }
    const ListValue& samples = result->list_value();
    if (samples.values_size() == 0) return std::nullopt;
    if (samples.values_size() > 1) {
      std::vector<std::string> listed;
      for (int i = 0; i < samples.values_size() && i < kSeriesListed; ++i) {
        listed.push_back(FormatLabels(samples.values(i)));
      }
      return absl::InvalidArgumentError(absl::StrCat(
          "returned ", samples.values_size(),
          " series; a check needs one: aggregate it, e.g. sum(...) (series: ",
          absl::StrJoin(listed, ", "), samples.values_size() > kSeriesListed ? ", ..." : "", ")"));
    }
    const Value& sample = samples.values(0);
    if (sample.kind_case() != Value::kStructValue) {
      return absl::InternalError("malformed answer: a vector sample is not an object");
    }
    const Value* value = Field(sample.struct_value(), "value");
    if (value == nullptr && Field(sample.struct_value(), "histogram") != nullptr) {
      return absl::InvalidArgumentError(
          "returned a native histogram sample; a check needs a number, e.g. "
          "histogram_quantile(0.99, ...) or histogram_count(...)");
    }
    return SampleValue(value);
  }
  if (result_type == "matrix") {
    return absl::InvalidArgumentError(
        "returned a range vector; a check needs an instant value, e.g. rate(x[1m]) rather than "
        "x[1m]");
  }
  if (result_type == "string") {
    return absl::InvalidArgumentError("returned a string; a check needs a number");
  }
  return absl::InternalError(
      absl::StrCat("malformed answer: unknown resultType \"", Snippet(result_type), "\""));
}

}  // namespace

absl::StatusOr<PrometheusClient> PrometheusClient::Create(const std::string& base_url,
                                                          absl::Duration timeout) {
  const auto invalid = [&base_url](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid Prometheus URL \"", base_url, "\": ", why));
  };
  if (timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("Prometheus timeout must be positive, got ", absl::FormatDuration(timeout)));
  }
  absl::string_view rest = base_url;
  if (absl::StartsWithIgnoreCase(rest, "https://")) {
    return invalid("https is not supported, only http:// (use a plain-HTTP address or proxy)");
  }
  if (!absl::StartsWithIgnoreCase(rest, "http://")) {
    return invalid("expected http://host:port[/prefix]");
  }
  rest.remove_prefix(7);
  if (rest.find_first_of("?#") != absl::string_view::npos) {
    return invalid("a query string or fragment is not allowed");
  }
  const size_t slash = rest.find('/');
  const absl::string_view authority = rest.substr(0, slash);
  absl::string_view path =
      slash == absl::string_view::npos ? absl::string_view() : rest.substr(slash);
  while (absl::ConsumeSuffix(&path, "/")) {
  }
  if (authority.empty()) return invalid("no host");
  if (absl::StrContains(authority, '@')) return invalid("user information is not supported");
  if (path.find_first_of(" \t\r\n") != absl::string_view::npos) {
    return invalid("the path has whitespace");
  }

  absl::string_view host;
  absl::string_view port;
  if (authority[0] == '[') {
    const size_t close = authority.find(']');
    if (close == absl::string_view::npos) return invalid("unclosed [ in the host");
    host = authority.substr(1, close - 1);
    absl::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (!absl::ConsumePrefix(&after, ":")) return invalid("junk after ]");
      port = after;
      if (port.empty()) return invalid("empty port");
    }
  } else {
    const size_t colon = authority.find(':');
    host = authority.substr(0, colon);
    if (colon != absl::string_view::npos) {
      port = authority.substr(colon + 1);
      if (port.empty()) return invalid("empty port");
    }
  }
  if (host.empty()) return invalid("no host");
  if (host.find_first_of(" \t\r\n/") != absl::string_view::npos) return invalid("bad host");
  int port_number = 80;
  if (!port.empty() && (!absl::SimpleAtoi(port, &port_number) || port_number < 1 ||
                        port_number > 65535 || !absl::ascii_isdigit(port[0]))) {
    return invalid(absl::StrCat("bad port \"", port, "\""));
  }

  std::string trimmed_url = base_url;
  while (absl::EndsWith(trimmed_url, "/")) trimmed_url.pop_back();
  return PrometheusClient(std::move(trimmed_url), std::string(host), absl::StrCat(port_number),
                          std::string(authority), std::string(path), timeout);
}

PrometheusClient::PrometheusClient(std::string base_url, std::string host, std::string port,
                                   std::string host_header, std::string path_prefix,
                                   absl::Duration timeout)
    : base_url_(std::move(base_url)),
      host_(std::move(host)),
      port_(std::move(port)),
      host_header_(std::move(host_header)),
      path_prefix_(std::move(path_prefix)),
      timeout_(timeout) {}

absl::StatusOr<std::optional<double>> PrometheusClient::Query(const std::string& promql) const {
  const auto annotate = [&](const absl::Status& status) {
    return absl::Status(status.code(), absl::StrCat("Prometheus query `", promql, "` at ",
                                                    base_url_, ": ", status.message()));
  };
  const std::string target = absl::StrCat(path_prefix_, "/api/v1/query?query=", UrlEncode(promql));
  absl::StatusOr<HttpResponse> response = HttpGet(host_, port_, host_header_, target, timeout_);
  if (!response.ok()) return annotate(response.status());
  absl::StatusOr<std::optional<double>> value = Interpret(*response);
  if (!value.ok()) return annotate(value.status());
  return value;
}

absl::StatusOr<std::string> RenderQueryTemplate(
    const std::string& text, const std::map<std::string, std::string>& variables) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (true) {
    const size_t open = text.find("{{", pos);
    if (open == std::string::npos) {
      out.append(text, pos, std::string::npos);
      return out;
    }
    const size_t close = text.find("}}", open + 2);
    if (close == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("query template: \"{{\" at offset ", open,
                                                     " has no closing \"}}\": ", text));
    }
    const absl::string_view name =
        absl::StripAsciiWhitespace(absl::string_view(text).substr(open + 2, close - open - 2));
    if (name.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("query template: empty {{ }} at offset ", open, ": ", text));
    }
    const auto it = variables.find(std::string(name));
    if (it == variables.end()) {
      std::vector<std::string> known;
      for (const auto& [known_name, value] : variables) known.push_back(known_name);
      return absl::InvalidArgumentError(
          absl::StrCat("query template: unknown variable \"", name,
                       "\" (known: ", known.empty() ? "none" : absl::StrJoin(known, ", "), ")"));
    }
    out.append(text, pos, open - pos);
    out.append(it->second);
    pos = close + 2;
  }
}

}  // namespace sluice::canary
