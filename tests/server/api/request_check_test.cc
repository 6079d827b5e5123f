// Tests for FindUnparsable and DescribeUnparsable (server/api/request_check.cc): for bytes
// protobuf refuses, the field path and the reason, through nested, repeated, map and packed
// fields; for bytes protobuf accepts, nothing. Every case also asks protobuf itself, so the
// walk and the generated parser cannot disagree unnoticed.

#include "server/api/request_check.h"

#include <cstdint>
#include <optional>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sluice/v1/admin.pb.h"
#include "sluice/v1/decision.pb.h"
#include "sluice/v1/table.pb.h"

namespace sluice::api {
namespace {

using ::testing::HasSubstr;
using ::testing::Optional;

// `message` serialized with the byte at `offset` of `placeholder` (a value set in one of
// its string fields, found exactly once in the bytes) replaced by `bad`: a message protobuf
// would refuse to serialize, built without its help.
std::string Patched(const google::protobuf::Message& message, const std::string& placeholder,
                    size_t offset = 0, char bad = '\xff') {
  std::string bytes = message.SerializeAsString();
  const size_t at = bytes.find(placeholder);
  EXPECT_NE(at, std::string::npos) << placeholder;
  EXPECT_EQ(bytes.find(placeholder, at + 1), std::string::npos) << placeholder;
  if (at != std::string::npos) bytes[at + offset] = bad;
  return bytes;
}

// A length-delimited field, written by hand.
std::string Field(int number, const std::string& bytes) {
  std::string out;
  for (uint32_t v = static_cast<uint32_t>(number) << 3 | 2; true; v >>= 7) {
    if (v < 0x80) {
      out.push_back(static_cast<char>(v));
      break;
    }
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
  }
  out.push_back(static_cast<char>(bytes.size()));  // short fields only
  out.append(bytes);
  return out;
}

// The walk's finding, after checking that protobuf refuses the bytes too.
template <typename Message>
std::optional<std::string> Refused(const std::string& bytes) {
  Message parsed;
  EXPECT_FALSE(parsed.ParseFromString(bytes)) << "protobuf accepts them";
  return FindUnparsable(bytes, Message::descriptor());
}

template <typename Message>
void ExpectAccepted(const std::string& bytes) {
  Message parsed;
  EXPECT_TRUE(parsed.ParseFromString(bytes)) << "protobuf refuses them";
  EXPECT_EQ(FindUnparsable(bytes, Message::descriptor()), std::nullopt);
}

TEST(FindUnparsableTest, AcceptsWhatProtobufAccepts) {
  v1::DecideRequest request;
  request.set_authority("shop");
  request.set_path("/caf\xc3\xa9");  // UTF-8 beyond ASCII
  request.add_headers()->set_name("end-user");
  (*request.mutable_source_labels())["app"] = "web";
  ExpectAccepted<v1::DecideRequest>(request.SerializeAsString());
  ExpectAccepted<v1::ListGatewaysRequest>("");
}

TEST(FindUnparsableTest, BytesThatAreNoProtobufMessage) {
  const std::string bytes = "\xff\xff\xff\xff not a protobuf message";
  EXPECT_THAT(Refused<v1::GetRequest>(bytes),
              Optional(std::string("malformed GetRequest: not a protobuf message (27 bytes)")));
  // A length that runs past the end.
  EXPECT_THAT(Refused<v1::ListRequest>("\x0a\x05kin"),
              Optional(HasSubstr("malformed ListRequest: not a protobuf message")));
}

// io::CodedInputStream (and so UnknownFieldSet::ParseFromString) takes tags of up to 10
// bytes; generated parsers refuse more than 5. The fuzzer found this one.
TEST(FindUnparsableTest, ATagLongerThanFiveBytesIsNoProtobufMessage) {
  const std::string bytes = Field(2, "shop") + std::string(9, '\xe8') + "\x09\x09";
  EXPECT_THAT(Refused<v1::GetRequest>(bytes),
              Optional(std::string("malformed GetRequest: not a protobuf message (17 bytes)")));
  EXPECT_THAT(
      Refused<v1::ApplyRequest>(Field(1, Field(1, "a.yaml") + std::string(6, '\x88') + "\x01\x00")),
      Optional(HasSubstr("ApplyRequest.files[0]: malformed ApplyFile: not a protobuf "
                         "message")));
}

TEST(FindUnparsableTest, NamesANestedStringField) {
  v1::GetRequest request;
  request.mutable_ref()->set_kind("VirtualService");
  request.mutable_ref()->set_name("PLACEHOLDER");
  EXPECT_THAT(
      Refused<v1::GetRequest>(Patched(request, "PLACEHOLDER", 3)),
      Optional(std::string("GetRequest.ref.name: not valid UTF-8 (byte 0xff at offset 3)")));
}

TEST(FindUnparsableTest, NamesTheElementOfARepeatedField) {
  v1::ApplyRequest request;
  for (const char* name : {"a.yaml", "b.yaml", "PLACEHOLDER"}) {
    v1::ApplyFile* file = request.add_files();
    file->set_name(name);
    file->set_yaml("kind: ServiceEntry\n");
  }
  EXPECT_THAT(
      Refused<v1::ApplyRequest>(Patched(request, "PLACEHOLDER")),
      Optional(std::string("ApplyRequest.files[2].name: not valid UTF-8 (byte 0xff at offset 0)")));
}

TEST(FindUnparsableTest, NamesRepeatedFieldsInsideRepeatedFields) {
  v1::CanaryStates states;
  states.add_canaries()->set_name("first");
  v1::CanaryState* second = states.add_canaries();
  second->set_name("second");
  for (const char* detail : {"ok", "ok", "PLACEHOLDER"}) {
    second->add_last_checks()->set_detail(detail);
  }
  EXPECT_THAT(Refused<v1::CanaryStates>(Patched(states, "PLACEHOLDER", 5, '\xc0')),
              Optional(std::string("CanaryStates.canaries[1].last_checks[2].detail: not valid "
                                   "UTF-8 (byte 0xc0 at offset 5)")));
}

TEST(FindUnparsableTest, NamesARepeatedStringDeepInADecisionTable) {
  v1::DecisionTable table;
  v1::TableVirtualHost* host = table.add_virtual_hosts();
  host->set_name("shop.default.svc.cluster.local");
  host->add_routes()->set_name("first");
  v1::TableMatch* match = host->add_routes()->add_matches();
  match->add_gateways("mesh");
  match->add_gateways("PLACEHOLDER");
  EXPECT_THAT(Refused<v1::DecisionTable>(Patched(table, "PLACEHOLDER")),
              Optional(std::string("DecisionTable.virtual_hosts[0].routes[1].matches[0]."
                                   "gateways[1]: not valid UTF-8 (byte 0xff at offset 0)")));
}

TEST(FindUnparsableTest, NamesAMapEntry) {
  v1::DecideRequest request;
  (*request.mutable_source_labels())["app"] = "PLACEHOLDER";
  EXPECT_THAT(Refused<v1::DecideRequest>(Patched(request, "PLACEHOLDER")),
              Optional(HasSubstr("DecideRequest.source_labels[0].value: not valid UTF-8")));
}

TEST(FindUnparsableTest, NamesANestedMessageThatIsNoMessage) {
  const std::string file = Field(1, "a.yaml");
  const std::string bytes = Field(1, file) + Field(1, "\x0a\x09short");
  EXPECT_THAT(Refused<v1::ApplyRequest>(bytes),
              Optional(std::string("ApplyRequest.files[1]: malformed ApplyFile: not a protobuf "
                                   "message (7 bytes)")));
}

TEST(FindUnparsableTest, NamesAPackedFieldWithATruncatedValue) {
  // CanaryState.step_weights (10, repeated int32): 5, then a varint cut short.
  const std::string state = Field(1, "shop") + Field(10, "\x05\x80");
  EXPECT_THAT(Refused<v1::CanaryStates>(Field(1, state)),
              Optional(std::string("CanaryStates.canaries[0].step_weights: malformed packed "
                                   "int32 values (2 bytes)")));
  // Whole values are fine, packed or not.
  ExpectAccepted<v1::CanaryStates>(Field(1, Field(10, "\x05\x80\x01")));
  ExpectAccepted<v1::CanaryStates>(Field(1, std::string("\x50\x05", 2)));
}

TEST(FindUnparsableTest, NamesAPackedFixedWidthFieldOfAWrongLength) {
  // CanaryState.failure_judge (23, repeated double): 9 bytes are no whole number of doubles.
  const std::string state = Field(23, std::string(9, '\0'));
  EXPECT_THAT(Refused<v1::CanaryStates>(Field(1, state)),
              Optional(std::string("CanaryStates.canaries[0].failure_judge: malformed packed "
                                   "double values (9 bytes)")));
  ExpectAccepted<v1::CanaryStates>(Field(1, Field(23, std::string(16, '\0'))));
}

TEST(FindUnparsableTest, IgnoresWhatProtobufKeepsAsUnknownFields) {
  // A field number the message lacks, holding bytes that are not UTF-8.
  ExpectAccepted<v1::GetRequest>(Field(15, "\xff\xfe"));
  // GetRequest.ref (a message) as a varint: protobuf keeps it as an unknown field.
  ExpectAccepted<v1::GetRequest>(std::string("\x08\x01", 2));
  // ResourceRef.name (a string) as a varint, inside a sound GetRequest.
  ExpectAccepted<v1::GetRequest>(Field(1, std::string("\x18\x07", 2)));
  // A singular scalar sent length-delimited, contents that are no varint included.
  ExpectAccepted<v1::CanaryActionRequest>(Field(4, "\xff"));
}

TEST(DescribeUnparsableTest, SaysWhatTheWalkFinds) {
  v1::CanaryStatusRequest request;
  request.set_name("PLACEHOLDER");
  EXPECT_EQ(
      DescribeUnparsable(Patched(request, "PLACEHOLDER", 1), v1::CanaryStatusRequest::descriptor()),
      "CanaryStatusRequest.name: not valid UTF-8 (byte 0xff at offset 1)");
}

TEST(DescribeUnparsableTest, NamesTheTypeWhenTheWalkFindsNothing) {
  // Bytes protobuf accepts: nothing for the walk to find. The text still names the type.
  EXPECT_EQ(DescribeUnparsable("", v1::GetRequest::descriptor()),
            "malformed GetRequest: it does not parse as sluice.v1.GetRequest");
}

}  // namespace
}  // namespace sluice::api
