#include "server/store/etcd_client.h"

#include <grpcpp/grpcpp.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"
#include "lib/common/log.h"

namespace sluice::store {
namespace {

constexpr absl::string_view kScheme = "etcd://";

absl::StatusCode CodeOf(grpc::StatusCode code) { return static_cast<absl::StatusCode>(code); }

EtcdKeyValue FromProto(const mvccpb::KeyValue& kv) {
  return EtcdKeyValue{kv.key(), kv.value(), kv.mod_revision(), kv.lease()};
}

}  // namespace

std::string EtcdLocation::ToString() const {
  return absl::StrCat(kScheme, endpoints.ToString(), absl::StripSuffix(prefix, "/"));
}

absl::StatusOr<EtcdLocation> ParseEtcdLocation(absl::string_view url) {
  auto fail = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", url, "\": ", why,
                     "; want etcd://HOST:PORT[,HOST:PORT...]/PREFIX such as "
                     "etcd://127.0.0.1:2379/sluice"));
  };
  absl::string_view rest = url;
  if (!absl::ConsumePrefix(&rest, kScheme)) return fail("not an etcd:// address");
  const size_t slash = rest.find('/');
  if (slash == absl::string_view::npos) return fail("no /PREFIX");
  EtcdLocation location;
  std::string error;
  if (!AbslParseFlag(rest.substr(0, slash), &location.endpoints, &error)) return fail(error);
  absl::string_view prefix = absl::StripSuffix(rest.substr(slash), "/");
  if (prefix.empty() || prefix == "/") {
    // Keys at etcd's root would mix with whatever else the cluster holds.
    return fail("the PREFIX is empty");
  }
  location.prefix = absl::StrCat(prefix, "/");
  return location;
}

std::string PrefixRangeEnd(absl::string_view prefix) {
  std::string end(prefix);
  // The first key after every key with the prefix: the last byte that can grow, grown.
  while (!end.empty()) {
    if (static_cast<unsigned char>(end.back()) < 0xff) {
      end.back() = static_cast<char>(end.back() + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key
}

struct EtcdClient::Stubs {
  std::unique_ptr<etcdserverpb::KV::Stub> kv;
  std::unique_ptr<etcdserverpb::Watch::Stub> watch;
  std::unique_ptr<etcdserverpb::Lease::Stub> lease;
};

absl::StatusOr<std::unique_ptr<EtcdClient>> EtcdClient::Create(const EtcdLocation& location,
                                                               Options options) {
  absl::StatusOr<std::string> target = GrpcTarget(location.endpoints);
  if (!target.ok()) return target.status();
  grpc::ChannelArguments args;
  // Several members (listed, or one DNS name with several addresses, as a Kubernetes headless
  // Service has): a connection to each, so a call after one dies goes to a live one.
  args.SetLoadBalancingPolicyName("round_robin");
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  // A whole prefix comes in one answer: no 4 MiB cap (etcd's own client has none either).
  args.SetMaxReceiveMessageSize(-1);
  // A member that froze or was cut off is noticed by the watch within ~15 s (etcd refuses
  // pings more often than every 5 s: its --grpc-keepalive-min-time).
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  // etcd's own clients say who they are; so does this one, in etcd's logs.
  args.SetString(GRPC_ARG_PRIMARY_USER_AGENT_STRING, "sluice-server");
  auto channel = grpc::CreateCustomChannel(*target, grpc::InsecureChannelCredentials(), args);
  return std::unique_ptr<EtcdClient>(new EtcdClient(location, options, std::move(channel)));
}

EtcdClient::EtcdClient(EtcdLocation location, Options options,
                       std::shared_ptr<grpc::Channel> channel)
    : location_(std::move(location)),
      options_(options),
      channel_(std::move(channel)),
      stubs_(std::make_unique<Stubs>()) {
  stubs_->kv = etcdserverpb::KV::NewStub(channel_);
  stubs_->watch = etcdserverpb::Watch::NewStub(channel_);
  stubs_->lease = etcdserverpb::Lease::NewStub(channel_);
}

EtcdClient::~EtcdClient() = default;

absl::Status EtcdClient::Error(const char* what, int code, const std::string& message) const {
  const auto grpc_code = static_cast<grpc::StatusCode>(code);
  std::string why = message;
  if (grpc_code == grpc::StatusCode::DEADLINE_EXCEEDED) {
    why = absl::StrCat("no answer within ", absl::FormatDuration(options_.timeout),
                       " (is a majority of its members up?)");
  }
  return absl::Status(CodeOf(grpc_code), absl::StrCat("etcd at ", location_.endpoints.ToString(),
                                                      ": ", what, " failed: ", why));
}

namespace {

void SetDeadline(grpc::ClientContext& context, absl::Duration timeout) {
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

}  // namespace

absl::StatusOr<EtcdClient::Range> EtcdClient::Read(absl::string_view key,
                                                   absl::string_view range_end) {
  grpc::ClientContext context;
  SetDeadline(context, options_.timeout);
  etcdserverpb::RangeRequest request;
  request.set_key(std::string(key));
  request.set_range_end(std::string(range_end));  // empty: the key alone
  etcdserverpb::RangeResponse response;
  grpc::Status status = stubs_->kv->Range(&context, request, &response);
  if (!status.ok()) return Error("reading", status.error_code(), status.error_message());
  Range range;
  range.revision = response.header().revision();
  for (const mvccpb::KeyValue& kv : response.kvs()) range.kvs.push_back(FromProto(kv));
  return range;
}

absl::StatusOr<EtcdClient::Range> EtcdClient::GetPrefix(absl::string_view prefix) {
  return Read(prefix, PrefixRangeEnd(prefix));
}

absl::StatusOr<EtcdClient::Range> EtcdClient::Get(absl::string_view key) { return Read(key, ""); }

absl::StatusOr<EtcdClient::TxnResult> EtcdClient::CompareAndWrite(
    absl::string_view key, int64_t mod_revision, const std::vector<EtcdWrite>& writes) {
  etcdserverpb::TxnRequest request;
  etcdserverpb::Compare* compare = request.add_compare();
  compare->set_key(std::string(key));
  compare->set_target(etcdserverpb::Compare::MOD);
  compare->set_result(etcdserverpb::Compare::EQUAL);
  compare->set_mod_revision(mod_revision);  // 0: the key does not exist
  for (const EtcdWrite& write : writes) {
    etcdserverpb::RequestOp* op = request.add_success();
    if (write.is_delete) {
      op->mutable_request_delete_range()->set_key(write.key);
    } else {
      etcdserverpb::PutRequest* put = op->mutable_request_put();
      put->set_key(write.key);
      put->set_value(write.value);
      put->set_lease(write.lease);
    }
  }
  grpc::ClientContext context;
  SetDeadline(context, options_.timeout);
  etcdserverpb::TxnResponse response;
  grpc::Status status = stubs_->kv->Txn(&context, request, &response);
  if (!status.ok()) return Error("writing", status.error_code(), status.error_message());
  return TxnResult{response.succeeded(), response.header().revision()};
}

absl::StatusOr<int64_t> EtcdClient::Put(absl::string_view key, absl::string_view value,
                                        int64_t lease) {
  grpc::ClientContext context;
  SetDeadline(context, options_.timeout);
  etcdserverpb::PutRequest request;
  request.set_key(std::string(key));
  request.set_value(std::string(value));
  request.set_lease(lease);
  etcdserverpb::PutResponse response;
  grpc::Status status = stubs_->kv->Put(&context, request, &response);
  if (!status.ok()) return Error("writing", status.error_code(), status.error_message());
  return response.header().revision();
}

absl::StatusOr<int64_t> EtcdClient::GrantLease(absl::Duration ttl) {
  grpc::ClientContext context;
  SetDeadline(context, options_.timeout);
  etcdserverpb::LeaseGrantRequest request;
  request.set_ttl(std::max<int64_t>(1, absl::ToInt64Seconds(absl::Ceil(ttl, absl::Seconds(1)))));
  etcdserverpb::LeaseGrantResponse response;
  grpc::Status status = stubs_->lease->LeaseGrant(&context, request, &response);
  if (!status.ok()) return Error("granting a lease", status.error_code(), status.error_message());
  if (!response.error().empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("etcd at ", location_.endpoints.ToString(), ": ", response.error()));
  }
  return response.id();
}

absl::Status EtcdClient::KeepAlive(int64_t lease) {
  grpc::ClientContext context;
  SetDeadline(context, options_.timeout);
  auto stream = stubs_->lease->LeaseKeepAlive(&context);
  etcdserverpb::LeaseKeepAliveRequest request;
  request.set_id(lease);
  etcdserverpb::LeaseKeepAliveResponse response;
  if (!stream->Write(request) || !stream->Read(&response)) {
    stream->WritesDone();
    grpc::Status status = stream->Finish();
    return Error("refreshing a lease",
                 status.ok() ? grpc::StatusCode::UNAVAILABLE : status.error_code(),
                 status.error_message());
  }
  stream->WritesDone();
  context.TryCancel();  // one refresh: the stream has done its work
  (void)stream->Finish();
  if (response.ttl() <= 0) {
    return absl::NotFoundError(absl::StrCat("etcd lease ", lease, " has expired"));
  }
  return absl::OkStatus();
}

absl::Status EtcdClient::RevokeLease(int64_t lease) {
  grpc::ClientContext context;
  SetDeadline(context, options_.timeout);
  etcdserverpb::LeaseRevokeRequest request;
  request.set_id(lease);
  etcdserverpb::LeaseRevokeResponse response;
  grpc::Status status = stubs_->lease->LeaseRevoke(&context, request, &response);
  if (!status.ok()) return Error("revoking a lease", status.error_code(), status.error_message());
  return absl::OkStatus();
}

std::unique_ptr<EtcdClient::Watch> EtcdClient::WatchPrefix(std::string prefix,
                                                           int64_t after_revision,
                                                           std::function<void(int64_t)> on_change) {
  std::unique_ptr<Watch> watch(new Watch());
  watch->client_ = this;
  watch->prefix_ = std::move(prefix);
  watch->next_revision_ = after_revision + 1;
  watch->on_change_ = std::move(on_change);
  watch->thread_ = std::thread([w = watch.get()] { w->Run(); });
  return watch;
}

EtcdClient::Watch::~Watch() {
  {
    MutexLock lock(&mu_);
    stopping_ = true;
    if (context_ != nullptr) context_->TryCancel();
  }
  if (thread_.joinable()) thread_.join();
}

void EtcdClient::Watch::Run() {
  absl::Duration backoff = absl::Milliseconds(100);
  bool reported = false;
  for (;;) {
    grpc::ClientContext context;
    {
      MutexLock lock(&mu_);
      if (stopping_) return;
      context_ = &context;
    }
    auto stream = client_->stubs_->watch->Watch(&context);
    etcdserverpb::WatchRequest request;
    etcdserverpb::WatchCreateRequest* create = request.mutable_create_request();
    create->set_key(prefix_);
    create->set_range_end(PrefixRangeEnd(prefix_));
    create->set_start_revision(next_revision_);
    bool healthy = stream->Write(request);
    etcdserverpb::WatchResponse response;
    while (healthy && stream->Read(&response)) {
      if (reported) {
        LogInfo("etcd watch of ", prefix_, " resumed at revision ", next_revision_);
        reported = false;
      }
      backoff = absl::Milliseconds(100);
      if (response.compact_revision() != 0) {
        // The revisions this watch had not seen yet are gone: read everything afresh.
        LogWarning("etcd compacted past revision ", next_revision_, "; reading ", prefix_,
                   " again");
        next_revision_ = response.header().revision() + 1;
        on_change_(response.header().revision());
        break;
      }
      if (response.canceled()) break;
      if (response.events_size() == 0) continue;  // created, or progress
      const int64_t revision = response.events(response.events_size() - 1).kv().mod_revision();
      next_revision_ = revision + 1;
      on_change_(revision);
    }
    {
      MutexLock lock(&mu_);
      context_ = nullptr;
      if (stopping_) return;
    }
    context.TryCancel();
    grpc::Status status = stream->Finish();
    if (!reported) {
      LogWarning("etcd watch of ", prefix_, " broke (", status.error_message(),
                 "); retrying from revision ", next_revision_);
      reported = true;
    }
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Seconds(1));
  }
}

}  // namespace sluice::store
