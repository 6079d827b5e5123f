// sluicectl: the command-line client. Offline validation uses the config library; every
// other command talks to sluice-server's AdminService.

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/grpcpp.h"
#include "lib/common/flags.h"
#include "lib/common/host_port.h"
#include "lib/common/sizes.h"
#include "lib/common/utf8.h"
#include "lib/routing/snapshot.h"
#include "lib/routing/snapshot_printer.h"
#include "lib/security/tls.h"
#include "server/config/loader.h"
#include "server/routing/snapshot_compiler.h"
#include "sluice/v1/admin.grpc.pb.h"

// Every command's options are flags of the one program: each is read by the commands it
// names, and given to another command it changes nothing.
ABSL_FLAG(std::optional<sluice::HostPort>, server, std::nullopt,
          "HOST:PORT of sluice-server, before or after the command (default: $SLUICE_SERVER, "
          "else 127.0.0.1:7070).");
ABSL_FLAG(std::vector<std::string>, f, {},
          "validate, apply: Istio YAML files or folders; several may follow one -f (-f a.yaml "
          "dir/), and -f may be repeated.");
ABSL_FLAG(bool, describe, false,
          "validate: also print every host's routes, clusters, endpoints and canaries.");
ABSL_FLAG(bool, quiet, false, "validate: print errors only.");
ABSL_FLAG(bool, dry_run, false, "apply: validate on the server and change nothing.");
ABSL_FLAG(sluice::ByteSize, max_apply_bytes, (sluice::ByteSize{16 << 20}),
          "apply: the most YAML sent in one apply, up to 1024m (sluice-server's default "
          "--max-apply-bytes); more is refused here, before sending.");
ABSL_FLAG(std::string, n, "default", "get, delete, canary: the resource's namespace.");
ABSL_FLAG(std::string, o, "",
          "get, apply, explain, endpoints, gateways, canary: json prints the API's answer as "
          "JSON; without it, tables.");
ABSL_FLAG(std::string, host, "", "explain: the request's authority, e.g. reviews:9080 (required).");
ABSL_FLAG(std::string, path, "/", "explain: the request's path.");
ABSL_FLAG(std::string, X, "GET", "explain: the request's method.");
ABSL_FLAG(std::string, scheme, "http", "explain: the request's scheme.");
ABSL_FLAG(std::vector<std::string>, H, {}, "explain: a request header, name:value.");
ABSL_FLAG(std::vector<std::string>, source_label, {},
          "explain: a label of the calling workload, k=v.");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM client certificate for mutual TLS with sluice-server (default: $SLUICE_TLS_CERT).");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls-cert (default: $SLUICE_TLS_KEY).");
ABSL_FLAG(std::string, tls_ca, "",
          "PEM CA bundle that verifies sluice-server's certificate (default: $SLUICE_TLS_CA).");
ABSL_FLAG(std::string, tls_server_name, "",
          "The name the server's certificate must carry when not the host of --server "
          "(default: $SLUICE_TLS_SERVER_NAME).");
ABSL_FLAG(std::string, token_file, "",
          "File holding a bearer token that identifies this client to the server's access "
          "policy, sent over TLS only (default: $SLUICE_TOKEN_FILE).");
ABSL_FLAG(bool, plaintext, false,
          "Talk to a server started with --plaintext (default: $SLUICE_PLAINTEXT=1).");
ABSL_FLAG(uint32_t, limit, 20, "history: how many of the most recent changes to show.");
ABSL_FLAG(bool, watch, false,
          "canary status: print a progress line whenever it changes, until the canary finishes "
          "(Succeeded or Failed) or Ctrl-C.");

namespace {

namespace fs = std::filesystem;

constexpr char kUsage[] = R"(usage: sluicectl [--server HOST:PORT] COMMAND [options]

The server address defaults to $SLUICE_SERVER, else 127.0.0.1:7070. Options and --server go
before or after the command and its operands, as --flag value or --flag=value.

The connection is mutual TLS: --tls-ca, --tls-cert and --tls-key (or $SLUICE_TLS_CA,
$SLUICE_TLS_CERT, $SLUICE_TLS_KEY), optionally --token-file; or --plaintext for a server
started with --plaintext.

commands:
  validate -f PATH... [--describe] [--quiet]
      Check Istio YAML (files or folders) offline, as the server would on apply. Prints
      every problem as file:line: field.path: message and exits 1 on errors; prints a
      summary (hosts, routes, subsets, endpoints) and exits 0 when valid.
      --describe  also print every host's routes, clusters, endpoints and canaries
      --quiet     print errors only
  apply -f PATH... [--dry-run] [--max-apply-bytes SIZE]
      Send files or folders to the server as one change: all of it applies, or none.
      --max-apply-bytes  the most YAML sent in one apply (default 16m, the server's default
                         --max-apply-bytes); more is refused here, before sending
  get [KIND [NAME]] [-n NAMESPACE] [-o json]
      List resources, or print one as YAML. KIND: virtualservice (vs), destinationrule
      (dr), serviceentry (se), workloadentry (we), canary.
  delete KIND NAME [-n NAMESPACE]
      Remove a resource that was applied through the API.
  explain --host HOST [--path PATH] [-X METHOD] [-H name:value]... [--source-label k=v]...
          [-o json]
      Show the decision for a request and why: each rule tried, the weight draw, the fault
      draws, the endpoint choice.
  endpoints [HOST] [-o json]
      Endpoints per cluster (host and subset): health (ejected since/until and why),
      in-flight count, success rate over the last minute, ejection count.
  history [--limit N] [-o json]
      The latest changes (apply, delete, canary actions) and refused attempts: when, who,
      what, versions before and after, outcome; from the server's audit log.
  gateways [-o json]
      Gateway workers on the decision stream: mode (server or local), decision table
      version acknowledged/sent, marked (behind) until a worker installs the server's
      version, how long that version took to reach it, endpoint health changes
      acknowledged/sent, when it last reported attempts, its report and decision counts.
  canary status [NAME] [-n NAMESPACE] [--watch] [-o json]
      Phase, weight, step, failed checks, each metric's last value against its threshold,
      the sequential judge's progress. --watch prints a progress line whenever it changes,
      until the canary finishes (Succeeded or Failed) or Ctrl-C.
  canary promote|rollback|pause|resume|restart NAME [-n NAMESPACE]
  canary set-weight NAME WEIGHT [-n NAMESPACE]
      Manual control: promote sends everything to the canary, rollback nothing; pause holds
      the weights, resume continues; set-weight pauses at WEIGHT (resume continues from the
      next step above it); restart begins the analysis again from 0%.
)";

sluice::flags::Program FlagsProgram() {
  sluice::flags::Program program;
  program.name = "sluicectl";
  program.usage = kUsage;
  program.take_following = {&FLAGS_f};
  program.repeated = {&FLAGS_H, &FLAGS_source_label};
  program.aliases = {{"filename", "f"}, {"namespace", "n"}, {"output", "o"},
                     {"method", "X"},   {"header", "H"},    {"q", "quiet"}};
  program.requirements = {
      sluice::flags::Require(
          FLAGS_max_apply_bytes, "a size up to 1024m",
          [](sluice::ByteSize s) { return s.bytes > 0 && s.bytes <= uint64_t{1024} << 20; }),
      sluice::flags::Require(FLAGS_o, "json, or nothing for tables",
                             [](const std::string& o) { return o.empty() || o == "json"; }),
  };
  return program;
}

// 0: the help on stdout. Else (a usage error, already described): where to read more.
int Usage(int code) {
  if (code == 0) {
    std::cout << sluice::flags::Help(FlagsProgram());
  } else {
    std::cerr << "(`sluicectl --help` lists every command and option)\n";
  }
  return code;
}

bool Json() { return absl::GetFlag(FLAGS_o) == "json"; }

// Exit codes: 0 done, 1 rejected or not found, 2 usage, 3 server unreachable.
int RpcFailure(const grpc::Status& status) {
  const char* kind =
      status.error_code() == grpc::StatusCode::PERMISSION_DENIED ? "permission denied: "
      : status.error_code() == grpc::StatusCode::UNAUTHENTICATED ? "not authenticated: "
                                                                 : "";
  std::cerr << "sluicectl: " << kind << status.error_message() << "\n";
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE ||
      status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    return 3;
  }
  return status.error_code() == grpc::StatusCode::INVALID_ARGUMENT ? 2 : 1;
}

std::string ToJson(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, options);
  return out;
}

// A command's operands: the arguments after its name that are not flags.
struct Args {
  std::vector<std::string> positional;
};

int Validate() {
  const std::vector<std::string> paths = absl::GetFlag(FLAGS_f);
  if (paths.empty()) {
    std::cerr << "sluicectl validate: give at least one -f PATH\n";
    return Usage(2);
  }
  const bool quiet = absl::GetFlag(FLAGS_quiet);
  sluice::config::LoadResult loaded = sluice::config::LoadPaths(paths);
  absl::StatusOr<std::shared_ptr<const sluice::routing::Snapshot>> snapshot;
  if (loaded.ok()) {
    snapshot = sluice::routing::CompileSnapshot(std::move(loaded.config), 1, &loaded.diagnostics);
    if (!snapshot.ok()) loaded.diagnostics.Error({}, "", std::string(snapshot.status().message()));
  }
  for (const sluice::config::Diagnostic& d : loaded.diagnostics.all()) {
    if (quiet && d.severity != sluice::config::Severity::kError) continue;
    std::cerr << d.ToString() << "\n";
  }
  if (loaded.diagnostics.HasErrors()) {
    std::cerr << loaded.diagnostics.error_count() << " error(s); nothing would be applied\n";
    return 1;
  }
  if (absl::GetFlag(FLAGS_describe)) {
    std::cout << sluice::routing::DescribeSnapshot(**snapshot);
  } else {
    std::cout << "valid: " << sluice::routing::FormatSummary(sluice::routing::Summarize(**snapshot))
              << "\n";
  }
  return 0;
}

// Answers (a resource's YAML, an apply's diagnostics) may be larger than gRPC's 4 MiB default.
constexpr int kMaxAnswerBytes = 64 << 20;

grpc::ChannelArguments ChannelLimits(uint64_t max_send_bytes) {
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(static_cast<int>(max_send_bytes));
  args.SetMaxReceiveMessageSize(kMaxAnswerBytes);
  return args;
}

class Client {
 public:
  // `token`: a bearer token for every call ("" for none).
  Client(const std::string& address, uint64_t max_send_bytes,
         const sluice::security::Transport& transport,
         std::shared_ptr<grpc::ChannelCredentials> credentials, std::string token)
      : max_send_bytes_(max_send_bytes),
        token_(std::move(token)),
        stub_(sluice::v1::AdminService::NewStub(grpc::CreateCustomChannel(
            address, std::move(credentials), ChannelArgs(max_send_bytes, transport)))) {}

  std::unique_ptr<grpc::ClientContext> Context() const {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    if (!token_.empty()) ctx->AddMetadata("authorization", absl::StrCat("Bearer ", token_));
    return ctx;
  }
  sluice::v1::AdminService::Stub& stub() { return *stub_; }
  uint64_t max_send_bytes() const { return max_send_bytes_; }

 private:
  static grpc::ChannelArguments ChannelArgs(uint64_t max_send_bytes,
                                            const sluice::security::Transport& transport) {
    grpc::ChannelArguments args = ChannelLimits(max_send_bytes);
    sluice::security::AddServerNameOverride(transport, args);
    return args;
  }

  uint64_t max_send_bytes_;
  std::string token_;
  std::unique_ptr<sluice::v1::AdminService::Stub> stub_;
};

// The sizes in gRPC's RESOURCE_EXHAUSTED for a message over a limit: "Received message
// larger than max (N vs. M)" from the server, "Sent message larger than max (N vs. M)" from
// this side.
std::optional<std::pair<uint64_t, uint64_t>> OversizeMessage(const grpc::Status& status) {
  if (status.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED) return std::nullopt;
  // error_message() returns a copy: keep it, the view below points into it.
  const std::string message = status.error_message();
  absl::string_view text = message;
  const size_t at = text.find("larger than max (");
  if (at == absl::string_view::npos) return std::nullopt;
  text.remove_prefix(at + std::strlen("larger than max ("));
  const std::vector<absl::string_view> sizes =
      absl::StrSplit(text.substr(0, text.find(')')), " vs. ");
  uint64_t size = 0, limit = 0;
  if (sizes.size() != 2 || !absl::SimpleAtoi(sizes[0], &size) ||
      !absl::SimpleAtoi(sizes[1], &limit)) {
    return std::nullopt;
  }
  return std::make_pair(size, limit);
}

// "19.1 MiB of YAML exceeds the server's limit of 16 MiB (--max-apply-bytes)", as
// sluice-server says it too.
std::string TooLarge(uint64_t size, uint64_t limit) {
  return absl::StrCat(sluice::FormatBytes(size), " of YAML exceeds the server's limit of ",
                      sluice::FormatBytes(limit), " (--max-apply-bytes)");
}

int ApplyTooLarge(const std::string& message) {
  std::cerr << "sluicectl apply: " << message << "\n"
            << "  split it into several applies, or raise the limit: sluice-server "
               "--max-apply-bytes, and --max-apply-bytes here\n";
  return 1;
}

int Apply(Client& client) {
  const std::vector<std::string> paths = absl::GetFlag(FLAGS_f);
  if (paths.empty()) {
    std::cerr << "sluicectl apply: give at least one -f PATH\n";
    return Usage(2);
  }
  sluice::v1::ApplyRequest request;
  request.set_dry_run(absl::GetFlag(FLAGS_dry_run));
  for (const std::string& path : paths) {
    std::vector<std::string> files;
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
      for (const auto& e : fs::recursive_directory_iterator(path)) {
        const std::string ext = e.path().extension().string();
        if (e.is_regular_file() && (ext == ".yaml" || ext == ".yml")) {
          files.push_back(e.path().string());
        }
      }
      std::sort(files.begin(), files.end());
    } else {
      files.push_back(path);
    }
    for (const std::string& file : files) {
      std::ifstream in(file, std::ios::binary);
      if (!in) {
        std::cerr << "sluicectl apply: cannot read " << file << "\n";
        return 1;
      }
      std::stringstream text;
      text << in.rdbuf();
      std::string yaml = text.str();
      // The API's strings are UTF-8 (and so is YAML): say where this file is not.
      if (const std::optional<sluice::InvalidUtf8> bad = sluice::FindInvalidUtf8(yaml)) {
        std::cerr << "sluicectl apply: " << file << ":" << bad->line << ": " << bad->ToString()
                  << "; YAML must be UTF-8\n";
        return 1;
      }
      sluice::v1::ApplyFile* f = request.add_files();
      f->set_name(file);
      f->set_yaml(std::move(yaml));
    }
  }
  // Refused here rather than by gRPC, which would only say "Sent message larger than max".
  if (request.ByteSizeLong() > client.max_send_bytes()) {
    return ApplyTooLarge(TooLarge(request.ByteSizeLong(), client.max_send_bytes()));
  }
  sluice::v1::ApplyResponse response;
  grpc::Status status = client.stub().Apply(client.Context().get(), request, &response);
  if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
    // sluice-server's own refusal names its limit already; gRPC's (a limit of a proxy in
    // between, or of this side) is put in the same words.
    if (absl::StrContains(status.error_message(), "(--max-apply-bytes)")) {
      return ApplyTooLarge(status.error_message());
    }
    if (const auto oversize = OversizeMessage(status)) {
      return ApplyTooLarge(TooLarge(oversize->first, oversize->second));
    }
  }
  if (status.error_code() == grpc::StatusCode::INVALID_ARGUMENT) {
    std::cerr << "sluicectl apply: " << status.error_message() << "\n";
    return 1;  // the server refused this input: rejected, not a usage error
  }
  if (!status.ok()) return RpcFailure(status);
  for (const sluice::v1::Diagnostic& d : response.diagnostics()) std::cerr << d.text() << "\n";
  if (Json()) {
    std::cout << ToJson(response) << "\n";
  } else if (request.dry_run()) {
    const bool ok = std::none_of(response.diagnostics().begin(), response.diagnostics().end(),
                                 [](const auto& d) { return d.severity() == d.ERROR; });
    std::cout << (ok ? "valid (dry run): would become version " : "rejected (dry run); version ")
              << response.version() << "\n";
  } else if (response.applied()) {
    for (const std::string& key : response.changed()) std::cout << key << " applied\n";
    std::cout << "configuration version " << response.version() << "\n";
  } else {
    std::cerr << "rejected: nothing changed; version " << response.version() << " keeps serving\n";
  }
  const bool rejected = !response.applied() && !request.dry_run();
  const bool dry_run_errors =
      request.dry_run() && std::any_of(response.diagnostics().begin(), response.diagnostics().end(),
                                       [](const auto& d) { return d.severity() == d.ERROR; });
  return rejected || dry_run_errors ? 1 : 0;
}

std::string CanonicalKind(std::string kind) {
  kind = absl::AsciiStrToLower(kind);
  if (kind == "vs" || kind == "virtualservice" || kind == "virtualservices")
    return "VirtualService";
  if (kind == "dr" || kind == "destinationrule" || kind == "destinationrules")
    return "DestinationRule";
  if (kind == "se" || kind == "serviceentry" || kind == "serviceentries") return "ServiceEntry";
  if (kind == "we" || kind == "workloadentry" || kind == "workloadentries") return "WorkloadEntry";
  if (kind == "canary" || kind == "canaries") return "Canary";
  return "";
}

int Get(Client& client, const Args& args) {
  std::string kind;
  if (!args.positional.empty()) {
    kind = CanonicalKind(args.positional[0]);
    if (kind.empty()) {
      std::cerr << "sluicectl get: unknown kind \"" << args.positional[0] << "\"\n";
      return Usage(2);
    }
  }
  const bool json = Json();
  if (args.positional.size() >= 2) {
    sluice::v1::GetRequest request;
    request.mutable_ref()->set_kind(kind);
    request.mutable_ref()->set_name(args.positional[1]);
    request.mutable_ref()->set_namespace_(absl::GetFlag(FLAGS_n));
    sluice::v1::GetResponse response;
    grpc::Status status = client.stub().Get(client.Context().get(), request, &response);
    if (!status.ok()) return RpcFailure(status);
    if (json) {
      std::cout << ToJson(response) << "\n";
    } else {
      std::cout << "# source: " << response.resource().source() << "\n"
                << response.resource().yaml() << "\n";
    }
    return 0;
  }
  sluice::v1::ListRequest request;
  request.set_kind(kind);
  sluice::v1::ListResponse response;
  grpc::Status status = client.stub().List(client.Context().get(), request, &response);
  if (!status.ok()) return RpcFailure(status);
  if (json) {
    std::cout << ToJson(response) << "\n";
    return 0;
  }
  std::printf("%-16s %-12s %-28s %s\n", "KIND", "NAMESPACE", "NAME", "SOURCE");
  for (const sluice::v1::Resource& r : response.resources()) {
    std::printf("%-16s %-12s %-28s %s\n", r.ref().kind().c_str(), r.ref().namespace_().c_str(),
                r.ref().name().c_str(), r.source().c_str());
  }
  std::printf("configuration version %llu\n", static_cast<unsigned long long>(response.version()));
  return 0;
}

int Delete(Client& client, const Args& args) {
  if (args.positional.size() != 2 || CanonicalKind(args.positional[0]).empty()) {
    std::cerr << "sluicectl delete: give KIND NAME\n";
    return Usage(2);
  }
  sluice::v1::DeleteRequest request;
  request.mutable_ref()->set_kind(CanonicalKind(args.positional[0]));
  request.mutable_ref()->set_name(args.positional[1]);
  request.mutable_ref()->set_namespace_(absl::GetFlag(FLAGS_n));
  sluice::v1::DeleteResponse response;
  grpc::Status status = client.stub().Delete(client.Context().get(), request, &response);
  if (!status.ok()) return RpcFailure(status);
  std::cout << request.ref().kind() << "/" << request.ref().namespace_() << "/"
            << request.ref().name() << " deleted; configuration version " << response.version()
            << "\n";
  return 0;
}

std::string FormatEndpoint(const sluice::v1::Endpoint& e) {
  return absl::StrCat(e.address(), ":", e.port());
}

int Explain(Client& client) {
  sluice::v1::DecideRequest request;
  request.set_authority(absl::GetFlag(FLAGS_host));
  request.set_path(absl::GetFlag(FLAGS_path));
  request.set_method(absl::GetFlag(FLAGS_X));
  request.set_scheme(absl::GetFlag(FLAGS_scheme));
  if (request.authority().empty()) {
    std::cerr << "sluicectl explain: --host is required\n";
    return Usage(2);
  }
  for (const std::string& h : absl::GetFlag(FLAGS_H)) {
    const size_t colon = h.find(':');
    if (colon == std::string::npos) {
      std::cerr << "sluicectl explain: -H takes name:value, got \"" << h << "\"\n";
      return 2;
    }
    sluice::v1::Header* header = request.add_headers();
    header->set_name(absl::AsciiStrToLower(absl::StripAsciiWhitespace(h.substr(0, colon))));
    header->set_value(std::string(absl::StripAsciiWhitespace(h.substr(colon + 1))));
  }
  for (const std::string& l : absl::GetFlag(FLAGS_source_label)) {
    std::vector<std::string> kv = absl::StrSplit(l, absl::MaxSplits('=', 1));
    if (kv.size() == 2) (*request.mutable_source_labels())[kv[0]] = kv[1];
  }
  sluice::v1::ExplainResponse response;
  grpc::Status status = client.stub().Explain(client.Context().get(), request, &response);
  if (!status.ok()) return RpcFailure(status);
  if (Json()) {
    std::cout << ToJson(response) << "\n";
    return 0;
  }
  const sluice::v1::Decision& d = response.decision();
  std::cout << "request      " << request.method() << " " << request.authority() << request.path()
            << "\n";
  std::cout << "host         " << response.virtual_host() << "\n";
  for (const sluice::v1::ExplainStep& s : response.steps()) {
    std::cout << "  " << (s.matched() ? "match " : "no    ") << s.route() << ": " << s.match()
              << (s.matched() ? "" : absl::StrCat("  (", s.reason(), ")")) << "\n";
  }
  if (!response.weight_draw().empty())
    std::cout << "weights      " << response.weight_draw() << "\n";
  if (!response.fault_draw().empty()) std::cout << "faults       " << response.fault_draw() << "\n";
  if (!response.endpoint_choice().empty()) {
    std::cout << "endpoint     " << response.endpoint_choice() << "\n";
  }
  if (!d.details().route_name().empty()) {
    std::cout << "route        " << d.details().route_name() << "\n";
  }
  if (!d.host().empty()) {
    std::cout << "destination  " << d.host() << (d.subset().empty() ? "" : " subset ") << d.subset()
              << "\n";
  }
  if (d.details().has_endpoint()) {
    std::vector<std::string> alternates;
    for (const auto& a : d.details().alternates()) alternates.push_back(FormatEndpoint(a));
    std::cout << "upstream     " << FormatEndpoint(d.details().endpoint())
              << (alternates.empty()
                      ? ""
                      : absl::StrCat("  (retries: ", absl::StrJoin(alternates, ", "), ")"))
              << "\n";
  }
  if (d.details().timeout_ms() > 0) {
    std::cout << "timeout      " << d.details().timeout_ms() << "ms\n";
  }
  std::cout << "decision     " << response.summary() << "\n";
  std::cout << "config       version " << d.config_version() << "\n";
  return 0;
}

int Endpoints(Client& client, const Args& args) {
  sluice::v1::ListEndpointsRequest request;
  if (!args.positional.empty()) request.set_host(args.positional[0]);
  sluice::v1::ListEndpointsResponse response;
  grpc::Status status = client.stub().ListEndpoints(client.Context().get(), request, &response);
  if (!status.ok()) return RpcFailure(status);
  if (Json()) {
    std::cout << ToJson(response) << "\n";
    return 0;
  }
  const absl::Time now = absl::Now();
  for (const sluice::v1::ClusterEndpoints& c : response.clusters()) {
    std::cout << c.cluster() << "  (" << c.load_balancer();
    if (c.outlier_detection()) {
      std::cout << "; outlier detection: " << c.ejected() << " of " << c.endpoints_size()
                << " ejected";
      if (c.ejection_overflows() > 0) {
        std::cout << ", " << c.ejection_overflows() << " overflow(s)";
      }
      std::cout << "; min health " << c.min_health_percent() << "%";
    }
    std::cout << ")\n";
    std::printf("  %-24s %-8s %-9s %-16s %-9s %s\n", "ENDPOINT", "HEALTH", "IN-FLIGHT",
                "SUCCESS(1m)", "EJECTIONS", "LABELS");
    for (const sluice::v1::EndpointState& e : c.endpoints()) {
      std::vector<std::string> labels;
      for (const auto& [k, v] : e.labels()) labels.push_back(absl::StrCat(k, "=", v));
      std::sort(labels.begin(), labels.end());
      const std::string success =
          e.recent_attempts() == 0
              ? std::string("-")
              : absl::StrFormat(
                    "%.1f%% of %d",
                    100.0 * (e.recent_attempts() - e.recent_failures()) / e.recent_attempts(),
                    e.recent_attempts());
      std::printf("  %-24s %-8s %-9d %-16s %-9u %s\n",
                  absl::StrCat(e.address(), ":", e.port()).c_str(), e.health().c_str(),
                  e.in_flight(), success.c_str(), e.ejections(),
                  absl::StrJoin(labels, ",").c_str());
      if (e.health() == "ejected" && e.ejected_since_unix_ms() > 0) {
        const absl::Time since = absl::FromUnixMillis(e.ejected_since_unix_ms());
        const absl::Time until = absl::FromUnixMillis(e.ejected_until_unix_ms());
        std::printf(
            "      %s since %s (%s ago); back at the first interval tick after %s%s\n",
            e.ejection_reason().c_str(),
            absl::FormatTime("%H:%M:%E3S", since, absl::UTCTimeZone()).c_str(),
            absl::FormatDuration(absl::Trunc(now - since, absl::Milliseconds(100))).c_str(),
            absl::FormatTime("%H:%M:%E3S", until, absl::UTCTimeZone()).c_str(),
            until > now
                ? absl::StrCat(
                      " (in ",
                      absl::FormatDuration(absl::Trunc(until - now, absl::Milliseconds(100))), ")")
                      .c_str()
                : "");
      }
    }
  }
  return 0;
}

// "2s ago", "5m ago", "3h ago"; "-" for never.
std::string FormatAge(int64_t unix_ms, absl::Time now) {
  if (unix_ms <= 0) return "-";
  const int64_t seconds =
      std::max<int64_t>(0, absl::ToInt64Seconds(now - absl::FromUnixMillis(unix_ms)));
  if (seconds < 120) return absl::StrCat(seconds, "s ago");
  if (seconds < 2 * 3600) return absl::StrCat(seconds / 60, "m ago");
  return absl::StrCat(seconds / 3600, "h ago");
}

// Columns padded to their widest cell, two spaces apart; the last column unpadded.
void PrintTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    widths.resize(std::max(widths.size(), row.size()), 0);
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      absl::StrAppend(&line, row[i]);
      if (i + 1 < row.size()) line.append(widths[i] - row[i].size() + 2, ' ');
    }
    std::cout << line << "\n";
  }
}

int History(Client& client) {
  sluice::v1::HistoryRequest request;
  request.set_limit(absl::GetFlag(FLAGS_limit));
  sluice::v1::HistoryResponse response;
  grpc::Status status = client.stub().History(client.Context().get(), request, &response);
  if (!status.ok()) return RpcFailure(status);
  if (Json()) {
    std::cout << ToJson(response) << "\n";
    return 0;
  }
  if (response.entries_size() == 0) {
    std::cout << "no changes recorded (the server keeps them with --audit-log, or in memory "
                 "since it started)\n";
    return 0;
  }
  std::vector<std::vector<std::string>> rows = {
      {"TIME", "IDENTITY", "ACTION", "OUTCOME", "VERSION", "RESOURCES", "DETAIL"}};
  for (const sluice::v1::AuditEntry& e : response.entries()) {
    rows.push_back({e.time(), e.identity(), e.action(), e.outcome(),
                    e.version_before() == e.version_after()
                        ? absl::StrCat(e.version_after())
                        : absl::StrCat(e.version_before(), "->", e.version_after()),
                    e.resources().empty() ? "-" : absl::StrJoin(e.resources(), ","),
                    e.detail().empty() ? "-" : e.detail()});
  }
  PrintTable(rows);
  return 0;
}

int Gateways(Client& client) {
  sluice::v1::ListGatewaysRequest request;
  sluice::v1::ListGatewaysResponse response;
  grpc::Status status = client.stub().ListGateways(client.Context().get(), request, &response);
  if (!status.ok()) return RpcFailure(status);
  if (Json()) {
    std::cout << ToJson(response) << "\n";
    return 0;
  }
  std::cout << "server version " << response.server_version() << ", " << response.streams_size()
            << " gateway worker" << (response.streams_size() == 1 ? "" : "s") << "\n";
  if (response.streams_size() == 0) return 0;
  struct Row {
    std::string name, peer, mode, version, propagation, changes, last_report, reports, decisions;
  };
  std::vector<Row> rows;
  rows.push_back({"NAME", "PEER", "MODE", "VERSION", "PROPAGATION", "CHANGES", "LAST REPORT",
                  "REPORTS", "DECISIONS"});
  const absl::Time now = absl::Now();
  for (const sluice::v1::GatewayStream& s : response.streams()) {
    Row row;
    row.name = s.name().empty() ? "-" : s.name();
    row.peer = s.peer().empty() ? "-" : s.peer();
    row.mode = s.mode() == sluice::v1::DECISION_MODE_LOCAL ? "local" : "server";
    row.version = absl::StrCat(s.table_version_acked(), "/", s.table_version_sent());
    if (s.table_version_acked() < response.server_version()) row.version += " (behind)";
    // Unknown until the worker acknowledges a table, or when that version is too old.
    row.propagation = s.table_version_acked() == 0 || s.propagation_us() < 0
                          ? "-"
                          : absl::StrFormat("%.1fms", s.propagation_us() / 1000.0);
    row.changes = absl::StrCat(s.endpoint_changes_acked(), "/", s.endpoint_changes_sent());
    row.last_report = FormatAge(s.last_report_unix_ms(), now);
    row.reports = absl::StrCat(s.reports());
    row.decisions = absl::StrCat(s.decisions());
    rows.push_back(std::move(row));
  }
  std::vector<std::vector<std::string>> table;
  for (const Row& r : rows) {
    table.push_back({r.name, r.peer, r.mode, r.version, r.propagation, r.changes, r.last_report,
                     r.reports, r.decisions});
  }
  PrintTable(table);
  return 0;
}

std::string FormatCheck(const sluice::v1::CanaryCheck& c) {
  const std::string value = c.has_value() ? absl::StrFormat("%.4g", c.value()) : "-";
  std::string line = absl::StrCat(c.name(), " ", value, " (", c.threshold(), ") ", c.outcome());
  if (!c.detail().empty()) absl::StrAppend(&line, ": ", c.detail());
  return line;
}

// One line that fits a terminal: what a watcher needs to see change.
std::string ProgressLine(const sluice::v1::CanaryState& c, int64_t now_ms) {
  std::string bar;
  for (int i = 0; i < 20; ++i) bar += i < c.weight() / 5 ? '#' : '.';
  std::string line = absl::StrCat(c.namespace_(), "/", c.name(), " [", bar, "] ", c.weight(), "% ",
                                  c.phase(), " failed ", c.failed_checks(), "/", c.threshold());
  for (const auto& check : c.last_checks()) {
    absl::StrAppend(&line, " | ", check.name(), " ",
                    check.has_value() ? absl::StrFormat("%.4g", check.value()) : "-", " ",
                    check.outcome());
  }
  if (c.judge() == "sequential") {
    absl::StrAppend(&line, absl::StrFormat(" | judge %.0f%%", 100 * c.judge_progress()));
  }
  if (c.next_check_unix_ms() > 0) {
    absl::StrAppend(
        &line, " | next check in ",
        absl::StrFormat("%.1fs", std::max<int64_t>(0, c.next_check_unix_ms() - now_ms) / 1000.0));
  }
  return line;
}

void PrintCanary(const sluice::v1::CanaryState& c, int64_t now_ms) {
  std::vector<std::string> steps;
  for (int32_t w : c.step_weights()) steps.push_back(absl::StrCat(w));
  std::cout << "canary       " << c.namespace_() << "/" << c.name() << "\n";
  std::cout << "host         " << c.host() << ": " << c.stable_subset() << " (stable) -> "
            << c.canary_subset() << " (canary)\n";
  std::cout << "phase        " << c.phase() << "\n";
  std::cout << "weight       " << c.weight() << "% to " << c.canary_subset() << ", steps "
            << absl::StrJoin(steps, ",") << "\n";
  std::cout << "checks       " << c.checks_passed() << " passed, " << c.checks_failed()
            << " failed, " << c.checks_no_evidence() << " without evidence; failed "
            << c.failed_checks() << " of threshold " << c.threshold() << "\n";
  std::cout << "judge        " << c.judge();
  if (c.judge() == "sequential") {
    std::cout << absl::StrFormat(" (%.0f%% of the way to a rollback)", 100 * c.judge_progress());
  }
  std::cout << "\n";
  for (const auto& check : c.last_checks())
    std::cout << "metric       " << FormatCheck(check) << "\n";
  if (c.next_check_unix_ms() > 0) {
    std::cout << absl::StrFormat("next check   in %.1fs (every %.1fs)\n",
                                 std::max<int64_t>(0, c.next_check_unix_ms() - now_ms) / 1000.0,
                                 c.interval_ms() / 1000.0);
  }
  std::cout << "last         " << c.message() << "\n";
}

int Canary(Client& client, const Args& args) {
  if (args.positional.empty()) {
    std::cerr << "sluicectl canary: give status, promote, rollback, pause, resume, restart or "
                 "set-weight\n";
    return 2;
  }
  const std::string& verb = args.positional[0];
  const std::string name = args.positional.size() > 1 ? args.positional[1] : "";
  const std::string ns = absl::GetFlag(FLAGS_n);
  const bool json = Json();
  if (verb == "status") {
    sluice::v1::CanaryStatusRequest request;
    request.set_name(name);
    request.set_namespace_(ns);
    const bool watch = absl::GetFlag(FLAGS_watch);
    std::string last_line;
    while (true) {
      sluice::v1::CanaryStatusResponse response;
      grpc::Status status = client.stub().CanaryStatus(client.Context().get(), request, &response);
      if (!status.ok()) return RpcFailure(status);
      if (!watch) {
        if (json) {
          std::cout << ToJson(response) << "\n";
        } else {
          if (!response.leader().empty()) {
            // Replicas: actions go to the leader; say who that is.
            std::cout << "controllers  " << response.leader()
                      << (response.answered_by_leader() ? " (this replica)" : "") << "\n\n";
          }
          if (response.canaries_size() == 0) std::cout << "no canaries\n";
        }
        for (int i = 0; i < response.canaries_size() && !json; ++i) {
          if (i > 0) std::cout << "\n";
          PrintCanary(response.canaries(i), response.now_unix_ms());
        }
        return 0;
      }
      // --watch: a line per change (every line is kept, so a log of the rollout remains).
      bool running = false;
      std::vector<std::string> lines;
      for (const auto& c : response.canaries()) {
        lines.push_back(ProgressLine(c, response.now_unix_ms()));
        running = running || (c.phase() != "Succeeded" && c.phase() != "Failed");
      }
      std::string joined = absl::StrJoin(lines, "\n");
      // The countdown changes every redraw; compare without it.
      std::string key = joined;
      for (size_t at; (at = key.find(" | next check in ")) != std::string::npos;) {
        key.erase(at, key.find('\n', at) == std::string::npos ? std::string::npos
                                                              : key.find('\n', at) - at);
      }
      if (key != last_line) {
        std::cout << absl::FormatTime("%H:%M:%S ", absl::Now(), absl::LocalTimeZone()) << joined
                  << std::endl;
        last_line = key;
      }
      if (!running) return 0;
      absl::SleepFor(absl::Milliseconds(200));
    }
  }
  if (name.empty()) {
    std::cerr << "sluicectl canary " << verb << ": give the Canary's NAME\n";
    return 2;
  }
  sluice::v1::CanaryActionRequest request;
  request.set_name(name);
  request.set_namespace_(ns);
  request.set_action(verb);
  if (verb == "set-weight") {
    int weight = -1;
    if (args.positional.size() < 3 || !absl::SimpleAtoi(args.positional[2], &weight)) {
      std::cerr << "sluicectl canary set-weight: give NAME and a WEIGHT from 0 to 100\n";
      return 2;
    }
    request.set_weight(weight);
  }
  sluice::v1::CanaryStatusResponse response;
  grpc::Status status = client.stub().CanaryAction(client.Context().get(), request, &response);
  if (!status.ok()) return RpcFailure(status);
  if (json) {
    std::cout << ToJson(response) << "\n";
  } else {
    for (const auto& c : response.canaries()) {
      std::cout << c.namespace_() << "/" << c.name() << ": " << c.phase() << " at " << c.weight()
                << "%: " << c.message() << "\n";
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const sluice::flags::Program program = FlagsProgram();
  std::vector<std::string> positional = sluice::flags::Parse(argc, argv, program);
  if (positional.empty()) {
    std::cerr << sluice::flags::Help(program);
    return 2;
  }
  const std::string command = positional.front();
  const Args args{{positional.begin() + 1, positional.end()}};
  if (command == "help") return Usage(0);
  if (command == "validate") return Validate();
  // --server, else $SLUICE_SERVER, read as strictly as the flag.
  sluice::HostPort server{"127.0.0.1", 7070};
  if (const std::optional<sluice::HostPort> flag = absl::GetFlag(FLAGS_server)) {
    server = *flag;
  } else if (const char* env = std::getenv("SLUICE_SERVER"); env != nullptr && *env != '\0') {
    absl::StatusOr<sluice::HostPort> parsed = sluice::ParseHostPort(env);
    if (!parsed.ok()) {
      sluice::flags::UsageError(
          program,
          absl::StrCat("$SLUICE_SERVER \"", env, "\": ", sluice::HostPortWant(parsed.status())));
    }
    server = *parsed;
  }
  // Each connection flag falls back to its environment variable, as --server does.
  const auto flag_or_env = [](const absl::Flag<std::string>& flag, const char* env) {
    std::string value = absl::GetFlag(flag);
    if (value.empty()) {
      if (const char* e = std::getenv(env); e != nullptr) value = e;
    }
    return value;
  };
  const char* plaintext_env = std::getenv("SLUICE_PLAINTEXT");
  const bool plaintext = absl::GetFlag(FLAGS_plaintext) ||
                         (plaintext_env != nullptr && std::string(plaintext_env) == "1");
  absl::StatusOr<sluice::security::Transport> transport = sluice::security::ChooseTransport(
      sluice::security::Side::kClient, plaintext,
      {.cert = flag_or_env(FLAGS_tls_cert, "SLUICE_TLS_CERT"),
       .key = flag_or_env(FLAGS_tls_key, "SLUICE_TLS_KEY"),
       .ca = flag_or_env(FLAGS_tls_ca, "SLUICE_TLS_CA"),
       .server_name = flag_or_env(FLAGS_tls_server_name, "SLUICE_TLS_SERVER_NAME")});
  if (!transport.ok()) sluice::flags::UsageError(program, transport.status().message());
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      sluice::security::ChannelCredentials(*transport);
  if (!credentials.ok()) {
    std::cerr << "sluicectl: " << credentials.status().message() << "\n";
    return 2;
  }
  std::string token;
  if (const std::string token_file = flag_or_env(FLAGS_token_file, "SLUICE_TOKEN_FILE");
      !token_file.empty()) {
    if (transport->plaintext) {
      sluice::flags::UsageError(program,
                                "--token-file: a token is sent over TLS only, not --plaintext");
    }
    std::ifstream in(token_file);
    std::stringstream text;
    text << in.rdbuf();
    token = std::string(absl::StripAsciiWhitespace(text.str()));
    // The token's bytes stay out of every message.
    if (!in.good() && !in.eof()) {
      std::cerr << "sluicectl: --token-file " << token_file << ": cannot read it\n";
      return 2;
    }
    if (token.empty()) {
      std::cerr << "sluicectl: --token-file " << token_file << " is empty\n";
      return 2;
    }
  }
  // gRPC's target syntax: an IPv6 address in brackets.
  Client client(server.ToString(), absl::GetFlag(FLAGS_max_apply_bytes).bytes, *transport,
                *std::move(credentials), std::move(token));
  if (command == "apply") return Apply(client);
  if (command == "get") return Get(client, args);
  if (command == "delete") return Delete(client, args);
  if (command == "explain") return Explain(client);
  if (command == "endpoints") return Endpoints(client, args);
  if (command == "gateways") return Gateways(client);
  if (command == "history") return History(client);
  if (command == "canary") return Canary(client, args);
  std::cerr << "sluicectl: unknown command \"" << command << "\"\n";
  return Usage(2);
}
