#include "lib/config/duration.h"

#include "gtest/gtest.h"

namespace sluice::config {
namespace {

TEST(ParseDuration, AcceptsGoDurationSyntax) {
  struct Row {
    const char* text;
    absl::Duration want;
  };
  for (const Row& row : {Row{"10s", absl::Seconds(10)}, Row{"0.5s", absl::Milliseconds(500)},
                         Row{"250ms", absl::Milliseconds(250)}, Row{"3m", absl::Minutes(3)},
                         Row{"1h30m", absl::Minutes(90)}, Row{"1m30s", absl::Seconds(90)},
                         Row{"1.5s", absl::Milliseconds(1500)}, Row{"0", absl::ZeroDuration()}}) {
    SCOPED_TRACE(row.text);
    absl::StatusOr<absl::Duration> d = ParseDuration(row.text);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(*d, row.want);
  }
}

TEST(ParseDuration, RejectsNegativeInfiniteAndUnitless) {
  for (const char* text : {"-1s", "+1s", "inf", "10", "1 s", "s", "", "1d", "abc"}) {
    SCOPED_TRACE(text);
    EXPECT_FALSE(ParseDuration(text).ok());
  }
}

TEST(CheckIstioDuration, RequiresAtLeastOneWholeMillisecond) {
  EXPECT_EQ(CheckIstioDuration(absl::Milliseconds(1)), "");
  EXPECT_EQ(CheckIstioDuration(absl::Seconds(5)), "");
  EXPECT_EQ(CheckIstioDuration(absl::ZeroDuration()), "must be at least 1ms");
  EXPECT_EQ(CheckIstioDuration(absl::Microseconds(999)), "must be at least 1ms");
  EXPECT_EQ(CheckIstioDuration(absl::Microseconds(1500)), "must be a whole number of milliseconds");
  EXPECT_EQ(CheckIstioDuration(absl::Seconds(2) + absl::Nanoseconds(5)),
            "must be a whole number of milliseconds");
}

}  // namespace
}  // namespace sluice::config
