#include "lib/common/host_port.h"

#include <optional>
#include <string>

#include "absl/flags/marshalling.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice {
namespace {

using ::testing::HasSubstr;

TEST(ParseHostPort, TakesNamesIPv4AndBracketedIPv6) {
  struct Row {
    const char* text;
    HostPort want;
  };
  for (const Row& row :
       {Row{"127.0.0.1:7070", {"127.0.0.1", 7070}}, Row{"localhost:7070", {"localhost", 7070}},
        Row{"sluice-server.sluice.svc:7070", {"sluice-server.sluice.svc", 7070}},
        Row{"0.0.0.0:0", {"0.0.0.0", 0}}, Row{"[::1]:7070", {"::1", 7070}},
        Row{"[::]:65535", {"::", 65535}}, Row{"[fe80::1%lo]:80", {"fe80::1%lo", 80}}}) {
    SCOPED_TRACE(row.text);
    absl::StatusOr<HostPort> parsed = ParseHostPort(row.text);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, row.want);
  }
}

TEST(ParseHostPort, RefusesWhatIsNotHostColonPort) {
  struct Row {
    const char* text;
    const char* why;
  };
  for (const Row& row :
       {Row{"127.0.0.1", "no port"}, Row{"localhost:", "no port"}, Row{"", "no port"},
        Row{":7070", "empty host"}, Row{"[]:7070", "empty host"}, Row{"::1:7070", "needs brackets"},
        Row{"::1", "needs brackets"}, Row{"[::1]", "no port after the ']'"},
        Row{"[::1]7070", "no port after the ']'"}, Row{"[::1:7070", "no ']'"},
        Row{"[127.0.0.1]:80", "not IPv6"}, Row{"127.0.0.1:65536", "not a number from 0 to 65535"},
        Row{"127.0.0.1:99999999999", "not a number from 0 to 65535"},
        Row{"127.0.0.1:-1", "not a number from 0 to 65535"},
        Row{"127.0.0.1:+80", "not a number from 0 to 65535"},
        Row{"127.0.0.1: 80", "not a number from 0 to 65535"},
        Row{"127.0.0.1:http", "not a number from 0 to 65535"}}) {
    SCOPED_TRACE(row.text);
    absl::StatusOr<HostPort> parsed = ParseHostPort(row.text);
    ASSERT_FALSE(parsed.ok()) << parsed->ToString();
    EXPECT_THAT(parsed.status().message(), HasSubstr(row.why));
  }
}

TEST(HostPort, PrintsIPv6InBrackets) {
  EXPECT_EQ((HostPort{"127.0.0.1", 7070}).ToString(), "127.0.0.1:7070");
  EXPECT_EQ((HostPort{"localhost", 0}).ToString(), "localhost:0");
  EXPECT_EQ((HostPort{"::1", 7070}).ToString(), "[::1]:7070");
}

// Through Abseil's flag marshalling, as ABSL_FLAG(sluice::HostPort, ...) reads and prints it.
TEST(HostPortFlag, ParsesAndUnparsesThroughAbseil) {
  for (const char* text : {"127.0.0.1:7070", "localhost:9464", "[::1]:7070", "[::]:0"}) {
    SCOPED_TRACE(text);
    HostPort value;
    std::string error;
    ASSERT_TRUE(absl::ParseFlag(text, &value, &error)) << error;
    EXPECT_EQ(absl::UnparseFlag(value), text);
  }
  HostPort value;
  std::string error;
  EXPECT_FALSE(absl::ParseFlag("::1:7070", &value, &error));
  EXPECT_EQ(error,
            "want HOST:PORT such as 127.0.0.1:7070 or [::1]:7070 (an IPv6 address needs "
            "brackets)");
}

TEST(HostPortFlag, OptionalIsEmptyOrAnAddress) {
  std::optional<HostPort> value;
  std::string error;
  ASSERT_TRUE(absl::ParseFlag("[::1]:7070", &value, &error)) << error;
  ASSERT_TRUE(value.has_value());
  EXPECT_EQ(value->host, "::1");
  EXPECT_EQ(absl::UnparseFlag(value), "[::1]:7070");
  ASSERT_TRUE(absl::ParseFlag("", &value, &error)) << error;
  EXPECT_FALSE(value.has_value());
  EXPECT_FALSE(absl::ParseFlag("7070", &value, &error));
}

TEST(HostPortList, ParsesCommaSeparatedReplicasAndUnparsesTheSame) {
  for (const char* text : {"127.0.0.1:7070", "10.0.0.1:7070,10.0.0.2:7071", "[::1]:1,[::2]:2",
                           "sluice-server.sluice.svc:7070"}) {
    SCOPED_TRACE(text);
    HostPortList value;
    std::string error;
    ASSERT_TRUE(absl::ParseFlag(text, &value, &error)) << error;
    EXPECT_EQ(absl::UnparseFlag(value), text);
  }
  HostPortList value;
  std::string error;
  EXPECT_FALSE(absl::ParseFlag("10.0.0.1:7070,", &value, &error));
  EXPECT_THAT(error, ::testing::HasSubstr("(an empty entry)"));
  EXPECT_FALSE(absl::ParseFlag("10.0.0.1:7070,::1:7070", &value, &error));
  EXPECT_THAT(error, ::testing::HasSubstr("an IPv6 address needs brackets"));
}

TEST(HostPortList, GrpcTargetListsAddressesOfOneFamilyOrTakesOneName) {
  const auto target = [](const char* text) {
    HostPortList list;
    std::string error;
    EXPECT_TRUE(absl::ParseFlag(text, &list, &error)) << error;
    return GrpcTarget(list);
  };
  EXPECT_EQ(*target("sluice-server.sluice.svc:7070"), "sluice-server.sluice.svc:7070");
  EXPECT_EQ(*target("127.0.0.1:1,127.0.0.2:2"), "ipv4:127.0.0.1:1,127.0.0.2:2");
  EXPECT_EQ(*target("[::1]:1,[::2]:2"), "ipv6:[::1]:1,[::2]:2");
  for (const char* mixed : {"127.0.0.1:1,[::1]:2", "127.0.0.1:1,localhost:2"}) {
    const absl::StatusOr<std::string> refused = target(mixed);
    ASSERT_FALSE(refused.ok()) << mixed;
    EXPECT_THAT(std::string(refused.status().message()),
                ::testing::HasSubstr("give the name once"));
  }
}

}  // namespace
}  // namespace sluice
