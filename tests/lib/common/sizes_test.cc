#include "lib/common/sizes.h"

#include <string>

#include "absl/flags/marshalling.h"
#include "gtest/gtest.h"

namespace sluice {
namespace {

TEST(ParseBytes, TakesBinaryMultiples) {
  EXPECT_EQ(ParseBytes("65536"), uint64_t{65536});
  EXPECT_EQ(ParseBytes("64k"), uint64_t{64 * 1024});
  EXPECT_FALSE(ParseBytes("64KiB")) << "only k, ki, m and mi";
  EXPECT_EQ(ParseBytes("64Ki"), uint64_t{64 * 1024});
  EXPECT_EQ(ParseBytes("16m"), uint64_t{16} << 20);
  EXPECT_EQ(ParseBytes("16M"), uint64_t{16} << 20);
  EXPECT_EQ(ParseBytes("0"), uint64_t{0});
  EXPECT_FALSE(ParseBytes(""));
  EXPECT_FALSE(ParseBytes("k"));
  EXPECT_FALSE(ParseBytes("-1"));
  EXPECT_FALSE(ParseBytes("1g"));
  EXPECT_FALSE(ParseBytes("1.5m"));
  EXPECT_FALSE(ParseBytes("18446744073709551615k")) << "past 2^64";
}

// ByteSize as ABSL_FLAG(sluice::ByteSize, ...) reads and prints it: through Abseil's
// marshalling, which finds AbslParseFlag and AbslUnparseFlag by argument-dependent lookup.
TEST(ByteSizeFlag, ReadsWhatParseBytesReads) {
  struct Row {
    const char* text;
    uint64_t bytes;
  };
  for (const Row& row : {Row{"60k", 60 * 1024}, Row{"16m", uint64_t{16} << 20}, Row{"1024", 1024},
                         Row{"1000", 1000}, Row{"0", 0}}) {
    SCOPED_TRACE(row.text);
    ByteSize size;
    std::string error;
    ASSERT_TRUE(absl::ParseFlag(row.text, &size, &error)) << error;
    EXPECT_EQ(size.bytes, row.bytes);
  }
}

TEST(ByteSizeFlag, SaysWhatIsWanted) {
  for (const char* text : {"", "12x", "1g", "-5", "1.5m"}) {
    SCOPED_TRACE(text);
    ByteSize size;
    std::string error;
    EXPECT_FALSE(absl::ParseFlag(text, &size, &error));
    EXPECT_EQ(error, "want a size in bytes such as 65536, 64k or 16m");
  }
}

TEST(ByteSizeFlag, PrintsTheShortestFormThatReadsBack) {
  EXPECT_EQ(absl::UnparseFlag(ByteSize{uint64_t{16} << 20}), "16m");
  EXPECT_EQ(absl::UnparseFlag(ByteSize{60 * 1024}), "60k");
  EXPECT_EQ(absl::UnparseFlag(ByteSize{1024 * 1024 + 1024}), "1025k");
  EXPECT_EQ(absl::UnparseFlag(ByteSize{1000}), "1000");
  EXPECT_EQ(absl::UnparseFlag(ByteSize{0}), "0");
  for (uint64_t bytes : {uint64_t{0}, uint64_t{1}, uint64_t{1023}, uint64_t{1024},
                         uint64_t{65536 + 1}, uint64_t{1} << 30, uint64_t{1} << 40}) {
    SCOPED_TRACE(bytes);
    ByteSize back;
    std::string error;
    ASSERT_TRUE(absl::ParseFlag(absl::UnparseFlag(ByteSize{bytes}), &back, &error)) << error;
    EXPECT_EQ(back.bytes, bytes);
  }
}

}  // namespace
}  // namespace sluice
