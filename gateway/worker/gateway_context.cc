#include "gateway/worker/gateway_context.h"

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace sluice::gateway {

std::unique_ptr<AccessLogWriter> AccessLogWriter::Open(const std::string& path,
                                                       std::string* error) {
  if (path == "-") return std::unique_ptr<AccessLogWriter>(new AccessLogWriter(stdout, false));
  std::FILE* file = std::fopen(path.c_str(), "a");
  if (file == nullptr) {
    *error = absl::StrCat("cannot open access log ", path, ": ", std::strerror(errno));
    return nullptr;
  }
  return std::unique_ptr<AccessLogWriter>(new AccessLogWriter(file, true));
}

AccessLogWriter::~AccessLogWriter() {
  if (owned_) std::fclose(file_);
}

void AccessLogWriter::Write(const std::string& line) {
  absl::MutexLock lock(&mu_);
  std::fwrite(line.data(), 1, line.size(), file_);
  // A line at a time, so that `tail -f` and tests see each request as it ends.
  std::fflush(file_);
}

}  // namespace sluice::gateway
