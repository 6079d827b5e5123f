#include "server/api/request_check.h"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/empty.pb.h"
#include "google/protobuf/unknown_field_set.h"
#include "lib/common/utf8.h"

namespace sluice::api {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::FileDescriptor;
using google::protobuf::UnknownField;
using google::protobuf::UnknownFieldSet;

// Whether `bytes` are whole varints back to back, as protobuf reads a packed repeated field
// of a varint type: at most 10 bytes each, the last one without the continuation bit.
bool WholeVarints(absl::string_view bytes) {
  size_t length = 0;  // of the varint being read
  for (const char c : bytes) {
    if (++length > 10) return false;
    if ((static_cast<uint8_t>(c) & 0x80) == 0) length = 0;
  }
  return length == 0;
}

// protobuf's default recursion limit (io::CodedInputStream's).
constexpr int kMaxDepth = 100;

// The element size of a packed field of fixed-width type, 0 for varint types.
size_t FixedWidth(FieldDescriptor::Type type) {
  switch (type) {
    case FieldDescriptor::TYPE_FIXED32:
    case FieldDescriptor::TYPE_SFIXED32:
    case FieldDescriptor::TYPE_FLOAT:
      return 4;
    case FieldDescriptor::TYPE_FIXED64:
    case FieldDescriptor::TYPE_SFIXED64:
    case FieldDescriptor::TYPE_DOUBLE:
      return 8;
    default:
      return 0;
  }
}

// The first field of `fields` (a message of `type`, at `path`) that protobuf would refuse.
// A known field on the wire with another wire type than its own is not an error: protobuf
// keeps it as an unknown field, as it does fields of numbers `type` lacks, and checks neither.
std::optional<std::string> FindInFields(const UnknownFieldSet& fields, const Descriptor* type,
                                        const std::string& path, int depth) {
  // Occurrences so far of each repeated field, for the index in the path.
  absl::flat_hash_map<int, int> seen;
  for (int i = 0; i < fields.field_count(); ++i) {
    const UnknownField& wire = fields.field(i);
    const FieldDescriptor* field = type->FindFieldByNumber(wire.number());
    if (field == nullptr || wire.type() != UnknownField::TYPE_LENGTH_DELIMITED) continue;
    std::string where = absl::StrCat(path, ".", field->name());
    const absl::string_view bytes = wire.length_delimited();
    switch (field->type()) {
      case FieldDescriptor::TYPE_BYTES:
        break;
      case FieldDescriptor::TYPE_STRING: {
        if (field->is_repeated()) absl::StrAppend(&where, "[", seen[wire.number()]++, "]");
        // proto3 strings must be UTF-8 and protobuf refuses the whole message otherwise;
        // proto2 strings are not checked.
        if (field->file()->syntax() != FileDescriptor::SYNTAX_PROTO3) break;
        if (const std::optional<InvalidUtf8> bad = FindInvalidUtf8(bytes)) {
          return absl::StrCat(where, ": ", bad->ToString());
        }
        break;
      }
      case FieldDescriptor::TYPE_MESSAGE: {
        if (field->is_repeated()) absl::StrAppend(&where, "[", seen[wire.number()]++, "]");
        UnknownFieldSet inner;
        if (!ParseFields(bytes, inner)) {
          return absl::StrCat(where, ": malformed ", field->message_type()->name(),
                              ": not a protobuf message (", bytes.size(), " bytes)");
        }
        // Protobuf refuses messages nested deeper than its recursion limit; past it the
        // walk gives up rather than risk the stack on a recursive message type.
        if (depth >= kMaxDepth) break;
        if (std::optional<std::string> problem =
                FindInFields(inner, field->message_type(), where, depth + 1)) {
          return problem;
        }
        break;
      }
      case FieldDescriptor::TYPE_GROUP:
        break;  // proto2 only; a length-delimited one is an unknown field
      default:
        // A scalar: length-delimited on the wire only as a packed repeated field, whose
        // contents must be whole values. A singular one is kept as an unknown field.
        if (!field->is_repeated()) break;
        if (const size_t width = FixedWidth(field->type());
            width != 0 ? bytes.size() % width != 0 : !WholeVarints(bytes)) {
          return absl::StrCat(where, ": malformed packed ", field->type_name(), " values (",
                              bytes.size(), " bytes)");
        }
        break;
    }
  }
  return std::nullopt;
}

}  // namespace

bool ParseFields(absl::string_view bytes, UnknownFieldSet& fields) {
  // Not UnknownFieldSet::ParseFromArray: it reads with io::CodedInputStream, which takes
  // tags of up to 10 bytes where generated code refuses more than 5. Every field of Empty is
  // an unknown one, read by the generated parser's own code.
  google::protobuf::Empty message;
  if (!message.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) return false;
  fields.Clear();
  fields.Swap(message.GetReflection()->MutableUnknownFields(&message));
  return true;
}

std::optional<std::string> FindUnparsable(absl::string_view bytes, const Descriptor* type) {
  UnknownFieldSet fields;
  if (!ParseFields(bytes, fields)) {
    return absl::StrCat("malformed ", type->name(), ": not a protobuf message (", bytes.size(),
                        " bytes)");
  }
  return FindInFields(fields, type, type->name(), 0);
}

std::string DescribeUnparsable(const std::string& bytes, const Descriptor* type) {
  if (std::optional<std::string> problem = FindUnparsable(bytes, type)) return *problem;
  return absl::StrCat("malformed ", type->name(), ": it does not parse as ", type->full_name());
}

}  // namespace sluice::api
