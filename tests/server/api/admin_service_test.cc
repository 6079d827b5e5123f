// Tests for AdminServiceImpl's raw request handling (server/api/admin_service.cc) through a
// real in-process gRPC server, called as a client that does not use the .proto could call
// it (grpc::GenericStub, raw bytes): every method of admin.proto refuses bytes protobuf
// cannot parse with INVALID_ARGUMENT naming the request type and the field, not gRPC's
// INTERNAL with no message, and still answers valid requests. CallRaw, the path the fuzzer
// takes, answers the same as the network.

#include "server/api/admin_service.h"

#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "sluice/v1/admin.grpc.pb.h"
#include "sluice/v1/admin.pb.h"
#include "tests/server/api/admin_harness.h"

namespace sluice::api {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::MethodDescriptor;
using google::protobuf::ServiceDescriptor;
using ::testing::HasSubstr;

constexpr char kPlaceholder[] = "PLACEHOLDER-7f3a";

const ServiceDescriptor* AdminService() {
  return google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
      v1::AdminService::service_full_name());
}

// The chains of fields that lead from `type` to each of its string fields, nested messages
// included (down to `depth` levels).
void CollectStringFields(const Descriptor* type, std::vector<const FieldDescriptor*>& chain,
                         std::vector<std::vector<const FieldDescriptor*>>& out, int depth) {
  for (int i = 0; i < type->field_count(); ++i) {
    const FieldDescriptor* field = type->field(i);
    chain.push_back(field);
    if (field->type() == FieldDescriptor::TYPE_STRING) {
      out.push_back(chain);
    } else if (field->type() == FieldDescriptor::TYPE_MESSAGE && depth > 0) {
      CollectStringFields(field->message_type(), chain, out, depth - 1);
    }
    chain.pop_back();
  }
}

// The path DescribeUnparsable gives the field at the end of `chain`: "GetRequest.ref.name".
std::string PathOf(const Descriptor* type, const std::vector<const FieldDescriptor*>& chain) {
  std::string path = type->name();
  for (const FieldDescriptor* field : chain) {
    absl::StrAppend(&path, ".", field->name(), field->is_repeated() ? "[0]" : "");
  }
  return path;
}

// A message of `message`'s type with only the string at the end of `chain` set (to the
// placeholder), serialized, then patched so that the string starts with a byte that is not
// UTF-8: what protobuf would not serialize for us.
std::string WithInvalidUtf8(Message& message, const std::vector<const FieldDescriptor*>& chain) {
  Message* at = &message;
  for (size_t i = 0; i + 1 < chain.size(); ++i) {
    const google::protobuf::Reflection* r = at->GetReflection();
    at = chain[i]->is_repeated() ? r->AddMessage(at, chain[i]) : r->MutableMessage(at, chain[i]);
  }
  const FieldDescriptor* last = chain.back();
  if (last->is_repeated()) {
    at->GetReflection()->AddString(at, last, kPlaceholder);
  } else {
    at->GetReflection()->SetString(at, last, kPlaceholder);
  }
  std::string bytes = message.SerializeAsString();
  const size_t found = bytes.find(kPlaceholder);
  EXPECT_NE(found, std::string::npos);
  if (found != std::string::npos) bytes[found] = '\xff';
  return bytes;
}

class AdminServiceTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_NO_FATAL_FAILURE(StartServer(16 << 20)); }

  void StartServer(uint64_t max_apply_bytes) {
    server_.reset();
    harness_ = std::make_unique<testing::AdminHarness>(
        testing::AdminHarness::TempDir(
            ::testing::UnitTest::GetInstance()->current_test_info()->name()),
        max_apply_bytes);
    const absl::Status started = harness_->Start();
    ASSERT_TRUE(started.ok()) << started;
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&harness_->admin());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_NE(port, 0);
    channel_ =
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials());
  }

  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
    server_.reset();
    harness_.reset();
  }

  // Calls AdminService method `method` with `request` as raw bytes; fills `response` with
  // the raw answer. Also makes the same call through CallRaw and expects the same answer.
  grpc::Status Call(const std::string& method, const std::string& request,
                    std::string* response = nullptr) {
    grpc::GenericStub stub(channel_);
    grpc::Slice slice(request);
    grpc::ByteBuffer send(&slice, 1);
    grpc::ByteBuffer received;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    std::promise<grpc::Status> done;
    stub.UnaryCall(&context, absl::StrCat("/sluice.v1.AdminService/", method), grpc::StubOptions(),
                   &send, &received,
                   [&done](grpc::Status status) { done.set_value(std::move(status)); });
    const grpc::Status status = done.get_future().get();
    std::string bytes;
    if (status.ok()) {
      std::vector<grpc::Slice> slices;
      EXPECT_TRUE(received.Dump(&slices).ok());
      for (const grpc::Slice& s : slices) {
        bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
      }
    }
    if (response != nullptr) *response = bytes;

    // Methods that change nothing when they fail answer the same again in-process.
    std::string raw_response;
    const grpc::Status raw = harness_->admin().CallRaw(method, request, &raw_response);
    if (!status.ok()) {
      EXPECT_EQ(raw.error_code(), status.error_code()) << method;
      EXPECT_EQ(raw.error_message(), status.error_message()) << method;
    }
    return status;
  }

  std::unique_ptr<testing::AdminHarness> harness_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_F(AdminServiceTest, EveryMethodRefusesBytesThatAreNoProtobufNamingTheRequestType) {
  const uint64_t version = harness_->store().version();
  const ServiceDescriptor* service = AdminService();
  ASSERT_NE(service, nullptr);
  ASSERT_GE(service->method_count(), 9);
  for (int i = 0; i < service->method_count(); ++i) {
    const MethodDescriptor* method = service->method(i);
    SCOPED_TRACE(method->name());
    const grpc::Status status = Call(method->name(), "\xff\xff\xff\xff not a protobuf message");
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
    EXPECT_EQ(status.error_message(), absl::StrCat("malformed ", method->input_type()->name(),
                                                   ": not a protobuf message (27 bytes)"));
  }
  EXPECT_EQ(harness_->store().version(), version);
}

TEST_F(AdminServiceTest, EveryMethodRefusesAStringThatIsNotUtf8NamingTheField) {
  const uint64_t version = harness_->store().version();
  const ServiceDescriptor* service = AdminService();
  int tested = 0;
  for (int i = 0; i < service->method_count(); ++i) {
    const MethodDescriptor* method = service->method(i);
    const Descriptor* type = method->input_type();
    std::vector<const FieldDescriptor*> chain;
    std::vector<std::vector<const FieldDescriptor*>> fields;
    CollectStringFields(type, chain, fields, 3);
    if (fields.empty()) {
      // Nothing in it can be anything but protobuf; only these two requests are so.
      EXPECT_THAT(type->name(), ::testing::AnyOf("ListGatewaysRequest", "HistoryRequest"));
      continue;
    }
    for (const std::vector<const FieldDescriptor*>& field : fields) {
      const std::string path = PathOf(type, field);
      SCOPED_TRACE(absl::StrCat(method->name(), " ", path));
      std::unique_ptr<Message> request(
          google::protobuf::MessageFactory::generated_factory()->GetPrototype(type)->New());
      const std::string bytes = WithInvalidUtf8(*request, field);
      ASSERT_FALSE(request->ParseFromString(bytes)) << "protobuf accepts the patched bytes";
      const grpc::Status status = Call(method->name(), bytes);
      EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
      EXPECT_THAT(status.error_message(), HasSubstr(path));
      EXPECT_THAT(status.error_message(), HasSubstr("not valid UTF-8 (byte 0xff at offset 0)"));
      ++tested;
    }
  }
  // Every string of every request: Apply's 2, Get's and Delete's 3, Explain's 9, ...
  EXPECT_GE(tested, 25);
  EXPECT_EQ(harness_->store().version(), version);
}

TEST_F(AdminServiceTest, NamesTheFieldPathExactly) {
  v1::GetRequest get;
  get.mutable_ref()->set_kind("ServiceEntry");
  get.mutable_ref()->set_name(kPlaceholder);
  std::string bytes = get.SerializeAsString();
  bytes[bytes.find(kPlaceholder) + 2] = '\xfe';
  grpc::Status status = Call("Get", bytes);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), "GetRequest.ref.name: not valid UTF-8 (byte 0xfe at offset 2)");

  v1::DecideRequest explain;
  explain.set_authority("shop");
  explain.add_headers()->set_name("end-user");
  explain.add_headers()->set_name("x-tenant");
  explain.mutable_headers(1)->set_value(kPlaceholder);
  bytes = explain.SerializeAsString();
  bytes[bytes.find(kPlaceholder)] = '\xc0';
  status = Call("Explain", bytes);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(),
            "DecideRequest.headers[1].value: not valid UTF-8 (byte 0xc0 at offset 0)");
}

// Apply says more: the file the YAML came from and the line, with the field's path.
TEST_F(AdminServiceTest, ApplyNamesTheFileAndTheLine) {
  const double errors = harness_->metrics().apply_errors_api.Value();
  v1::ApplyRequest request;
  v1::ApplyFile* ok = request.add_files();
  ok->set_name("ok.yaml");
  ok->set_yaml("kind: ServiceEntry\n");
  v1::ApplyFile* bad = request.add_files();
  bad->set_name("bad.yaml");
  bad->set_yaml(absl::StrCat("apiVersion: networking.istio.io/v1\nkind: ", kPlaceholder, "\n"));
  std::string bytes = request.SerializeAsString();
  bytes[bytes.find(kPlaceholder) + 1] = '\xff';
  const grpc::Status status = Call("Apply", bytes);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(),
            "bad.yaml:2: not valid UTF-8 (byte 0xff at offset 42); YAML must be UTF-8 "
            "(ApplyRequest.files[1].yaml)");
  // Once through gRPC, once through CallRaw.
  EXPECT_EQ(harness_->metrics().apply_errors_api.Value(), errors + 2);
}

TEST_F(AdminServiceTest, ValidRequestsStillWork) {
  const uint64_t version = harness_->store().version();
  std::string out;

  v1::ApplyRequest apply;
  v1::ApplyFile* file = apply.add_files();
  file->set_name("details.yaml");
  file->set_yaml(R"(apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: details}
spec:
  hosts: [details]
  ports: [{number: 9080, name: http}]
)");
  apply.set_dry_run(true);  // CallRaw repeats the call: a dry run changes nothing
  ASSERT_TRUE(Call("Apply", apply.SerializeAsString(), &out).ok());
  v1::ApplyResponse applied;
  ASSERT_TRUE(applied.ParseFromString(out));
  EXPECT_EQ(applied.diagnostics_size(), 0) << applied.DebugString();
  EXPECT_THAT(applied.changed(), ::testing::ElementsAre("ServiceEntry/default/details"));
  EXPECT_EQ(harness_->store().version(), version);

  v1::GetRequest get;
  get.mutable_ref()->set_kind("ServiceEntry");
  get.mutable_ref()->set_name("ratings");
  ASSERT_TRUE(Call("Get", get.SerializeAsString(), &out).ok());
  v1::GetResponse got;
  ASSERT_TRUE(got.ParseFromString(out));
  EXPECT_EQ(got.resource().source(), "applied");
  EXPECT_THAT(got.resource().yaml(), HasSubstr("ratings"));
  // An error the typed method finds still reaches the client as before.
  get.mutable_ref()->set_name("nowhere");
  EXPECT_EQ(Call("Get", get.SerializeAsString()).error_code(), grpc::StatusCode::NOT_FOUND);

  v1::ListRequest list;
  list.set_kind("ServiceEntry");
  ASSERT_TRUE(Call("List", list.SerializeAsString(), &out).ok());
  v1::ListResponse listed;
  ASSERT_TRUE(listed.ParseFromString(out));
  EXPECT_EQ(listed.resources_size(), 2);

  v1::DecideRequest explain;
  explain.set_authority("shop");
  explain.set_path("/");
  v1::Header* user = explain.add_headers();
  user->set_name("end-user");
  user->set_value("jason");
  ASSERT_TRUE(Call("Explain", explain.SerializeAsString(), &out).ok());
  v1::ExplainResponse explained;
  ASSERT_TRUE(explained.ParseFromString(out));
  EXPECT_EQ(explained.decision().subset(), "v3") << explained.summary();

  v1::ListEndpointsRequest endpoints;
  endpoints.set_host("shop");
  ASSERT_TRUE(Call("ListEndpoints", endpoints.SerializeAsString(), &out).ok());
  v1::ListEndpointsResponse listed_endpoints;
  ASSERT_TRUE(listed_endpoints.ParseFromString(out));
  EXPECT_GE(listed_endpoints.clusters_size(), 3);

  ASSERT_TRUE(Call("CanaryStatus", "", &out).ok());
  v1::CanaryStatusResponse canaries;
  ASSERT_TRUE(canaries.ParseFromString(out));
  ASSERT_EQ(canaries.canaries_size(), 1);
  EXPECT_EQ(canaries.canaries(0).name(), "shop");

  v1::CanaryActionRequest action;
  action.set_name("nothing");
  action.set_action("pause");
  EXPECT_EQ(Call("CanaryAction", action.SerializeAsString()).error_code(),
            grpc::StatusCode::NOT_FOUND);

  ASSERT_TRUE(Call("ListGateways", "", &out).ok());
  v1::ListGatewaysResponse gateways;
  ASSERT_TRUE(gateways.ParseFromString(out));
  EXPECT_EQ(gateways.streams_size(), 0);

  // A known field with another wire type is an unknown field to protobuf, not an error:
  // GetRequest.ref as a varint leaves an empty ref, which Get itself refuses.
  const grpc::Status status = Call("Get", std::string("\x08\x01", 2));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("unknown kind"));

  // Delete last: CallRaw repeats it, and the repeat finds nothing to delete.
  v1::DeleteRequest del;
  del.mutable_ref()->set_kind("ServiceEntry");
  del.mutable_ref()->set_name("ratings");
  ASSERT_TRUE(Call("Delete", del.SerializeAsString(), &out).ok());
  v1::DeleteResponse deleted;
  ASSERT_TRUE(deleted.ParseFromString(out));
  EXPECT_EQ(deleted.version(), version + 1);
  EXPECT_EQ(harness_->store().version(), version + 1);
}

// The size limit holds for every method now, not Apply's alone: nothing else bounds what
// the server receives (server/main.cc).
TEST_F(AdminServiceTest, RequestsOverTheLimitAreRefusedUnparsed) {
  ASSERT_NO_FATAL_FAILURE(StartServer(1024));
  v1::GetRequest get;
  get.mutable_ref()->set_kind("ServiceEntry");
  get.mutable_ref()->set_name(std::string(2000, 'x'));
  grpc::Status status = Call("Get", get.SerializeAsString());
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status.error_message(),
              HasSubstr("of Get request exceeds the server's limit of 1 KiB (--max-apply-bytes)"));

  v1::ApplyRequest apply;
  apply.add_files()->set_yaml(std::string(2000, '#'));
  status = Call("Apply", apply.SerializeAsString());
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status.error_message(),
              HasSubstr("of YAML exceeds the server's limit of 1 KiB (--max-apply-bytes)"));
}

TEST_F(AdminServiceTest, CallRawRefusesAMethodItDoesNotKnow) {
  std::string out;
  const grpc::Status status = harness_->admin().CallRaw("Nothing", "", &out);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_THAT(status.error_message(), HasSubstr("Nothing"));
}

}  // namespace
}  // namespace sluice::api
