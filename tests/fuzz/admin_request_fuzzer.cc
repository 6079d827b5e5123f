// libFuzzer target: the admin API's inputs, in-process. The first byte picks a method of
// admin.proto's AdminService, the rest is its request as it would arrive over gRPC; it takes
// the path gRPC gives it (AdminServiceImpl::CallRaw: the raw handler's size check, parse, and
// DescribeUnparsable or the typed method) on an AdminServiceImpl over a real ConfigStore
// whose configuration holds a service, its routes and a Canary (tests/server/api/
// admin_harness.h). Invariants: no crash or sanitizer report; never INTERNAL; bytes protobuf
// refuses are INVALID_ARGUMENT, and FindUnparsable finds a reason exactly for those; and a
// request that is refused leaves the configuration's version as it was.

#include <sanitizer/common_interface_defs.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "google/protobuf/stubs/logging.h"
#include "server/api/request_check.h"
#include "sluice/v1/admin.grpc.pb.h"
#include "sluice/v1/admin.pb.h"
#include "tests/server/api/admin_harness.h"

namespace {

using sluice::api::testing::AdminHarness;

// Said through the sanitizers' report channel, which libFuzzer keeps open under
// -close_fd_mask=2 (the way to run a target whose code logs to stderr).
[[noreturn]] void Fail(const std::string& what) {
  __sanitizer_report_error_summary(
      absl::StrCat("admin_request_fuzzer: invariant broken: ", what).c_str());
  std::abort();
}

// The harness, in a temporary folder created once per process; started again (same folder,
// fresh state) after an input changed the configuration or a canary, so that every input
// starts from the same state and a crash reproduces from its input alone.
AdminHarness& Harness(bool restart) {
  // Destroyed, and its folder removed, when the process ends normally (a crash leaves the
  // folder in /tmp).
  static const std::unique_ptr<AdminHarness> harness =
      std::make_unique<AdminHarness>(AdminHarness::TempDir("fuzz"));
  static bool started = false;
  if (!started || restart) {
    if (const absl::Status status = harness->Start(); !status.ok()) {
      Fail(absl::StrCat("the harness does not start: ", status.ToString()));
    }
    started = true;
  }
  return *harness;
}

}  // namespace

// protobuf logs every string it refuses as not UTF-8: noise at thousands of inputs a second.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static const google::protobuf::ServiceDescriptor* service =
      google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
          sluice::v1::AdminService::service_full_name());
  const google::protobuf::MethodDescriptor* method =
      service->method(data[0] % service->method_count());
  const std::string request(reinterpret_cast<const char*>(data + 1), size - 1);

  AdminHarness& harness = Harness(false);
  const uint64_t version = harness.store().version();
  std::string response;
  const grpc::Status status = harness.admin().CallRaw(method->name(), request, &response);

  if (status.error_code() == grpc::StatusCode::INTERNAL ||
      status.error_code() == grpc::StatusCode::UNKNOWN ||
      status.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
    Fail(absl::StrCat(method->name(), " answered ", status.error_code(), ": ",
                      status.error_message()));
  }
  // The walk that explains a refusal agrees with protobuf on what is refused.
  std::unique_ptr<google::protobuf::Message> parsed(
      google::protobuf::MessageFactory::generated_factory()
          ->GetPrototype(method->input_type())
          ->New());
  const bool parses = parsed->ParseFromString(request);
  const std::optional<std::string> problem =
      sluice::api::FindUnparsable(request, method->input_type());
  if (parses == problem.has_value()) {
    Fail(absl::StrCat(method->input_type()->name(), ": protobuf ",
                      parses ? "parses it, yet FindUnparsable says " : "refuses it, and ",
                      problem.value_or("FindUnparsable finds no reason")));
  }
  if (!parses && (status.error_code() != grpc::StatusCode::INVALID_ARGUMENT ||
                  status.error_message().empty())) {
    Fail(absl::StrCat(method->name(), ": unparsable bytes answered ", status.error_code(), ": ",
                      status.error_message()));
  }
  const uint64_t after = harness.store().version();
  if (!status.ok() && after != version) {
    Fail(absl::StrCat(method->name(), " was refused (", status.error_message(),
                      ") yet the version went from ", version, " to ", after));
  }
  if (method->name() == "Apply" && status.ok()) {
    sluice::v1::ApplyResponse applied;
    if (!applied.ParseFromString(response)) Fail("an ApplyResponse that does not parse");
    if (!applied.applied() && after != version) {
      Fail(absl::StrCat("an Apply not applied changed the version from ", version, " to ", after));
    }
  }
  // Back to the starting state for the next input.
  if (after != version || (method->name() == "CanaryAction" && status.ok())) Harness(true);
  return 0;
}
