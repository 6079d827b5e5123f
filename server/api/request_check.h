#pragma once

// Why protobuf refuses a request's bytes, said so that a person can fix the client. gRPC's
// generated handlers answer such a request INTERNAL with no message; the admin service
// parses its requests itself and answers INVALID_ARGUMENT with these descriptions.

#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/unknown_field_set.h"

namespace sluice::api {

// What in `bytes` keeps them from parsing as a message of `type`, with the field's path
// from `type`: "GetRequest.ref.name: not valid UTF-8 (byte 0xff at offset 3)",
// "ApplyRequest.files[2]: malformed ApplyFile: not a protobuf message (5 bytes)", or
// "malformed GetRequest: not a protobuf message (12 bytes)"; nullopt when protobuf parses
// them. It walks the wire format guided by the descriptor, since the generated parser only
// says no.
std::optional<std::string> FindUnparsable(absl::string_view bytes,
                                          const google::protobuf::Descriptor* type);

// The fields of `bytes` as protobuf's generated parsers read them, none of them interpreted;
// false when that reading fails (the bytes are no protobuf message to any type).
bool ParseFields(absl::string_view bytes, google::protobuf::UnknownFieldSet& fields);

// FindUnparsable's text for bytes protobuf refuses as `type`; should the walk find no reason
// (a check protobuf makes that it does not know), a generic one naming the type.
std::string DescribeUnparsable(const std::string& bytes, const google::protobuf::Descriptor* type);

}  // namespace sluice::api
