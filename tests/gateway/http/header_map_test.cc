#include "gateway/http/header_map.h"

#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::gateway::http {
namespace {

using ::testing::ElementsAre;
using ::testing::Optional;
using ::testing::Pair;

std::vector<std::pair<std::string, std::string>> Fields(const HeaderMap& map) {
  std::vector<std::pair<std::string, std::string>> fields;
  map.ForEach([&](absl::string_view name, absl::string_view value) {
    fields.emplace_back(std::string(name), std::string(value));
  });
  return fields;
}

TEST(HeaderMapTest, KeepsOrderAndTheNamesAsReceived) {
  HeaderMap map;
  map.Add("Host", "shop");
  map.Add("X-Trace", "a");
  map.Add("x-trace", "b");
  EXPECT_THAT(Fields(map),
              ElementsAre(Pair("Host", "shop"), Pair("X-Trace", "a"), Pair("x-trace", "b")));
  EXPECT_EQ(map.size(), 3u);
  EXPECT_EQ(map.byte_size(), std::string("Hostshop").size() + 8 + 8);
}

TEST(HeaderMapTest, NamesCompareCaseInsensitively) {
  HeaderMap map;
  map.Add("Content-Type", "text/plain");
  map.Add("X-Trace", "a");
  map.Add("x-TRACE", "b");
  EXPECT_THAT(map.Get("content-type"), Optional(absl::string_view("text/plain")));
  EXPECT_THAT(map.Get("X-TRACE"), Optional(absl::string_view("a")));  // the first
  EXPECT_EQ(map.Count("x-trace"), 2u);
  EXPECT_EQ(map.Get("missing"), std::nullopt);
  EXPECT_EQ(map.Count("missing"), 0u);
}

TEST(HeaderMapTest, SetReplacesEveryFieldOfThatName) {
  HeaderMap map;
  map.Add("Via", "1");
  map.Add("Host", "old");
  map.Add("via", "2");
  map.Set("VIA", "3");
  EXPECT_THAT(Fields(map), ElementsAre(Pair("Host", "old"), Pair("VIA", "3")));
  EXPECT_EQ(map.size(), 2u);
}

TEST(HeaderMapTest, RemoveCountsAndTombstones) {
  HeaderMap map;
  map.Add("A", "1");
  map.Add("B", "2");
  map.Add("a", "3");
  EXPECT_EQ(map.Remove("a"), 2u);
  EXPECT_EQ(map.Remove("a"), 0u);
  EXPECT_EQ(map.size(), 1u);
  EXPECT_FALSE(map.empty());
  EXPECT_EQ(map.byte_size(), 2u);
  EXPECT_THAT(Fields(map), ElementsAre(Pair("B", "2")));
  EXPECT_EQ(map.Remove("B"), 1u);
  EXPECT_TRUE(map.empty());
}

TEST(HeaderMapTest, AddAndSetMayUseTheMapsOwnBytes) {
  HeaderMap map;
  map.Add("X-Forwarded-Host", "shop.example:8080");
  // Grows the storage while the value being copied still points into it.
  for (int i = 0; i < 50; ++i) map.Add(*map.Get("x-forwarded-host"), *map.Get("x-forwarded-host"));
  EXPECT_EQ(map.Count("x-forwarded-host"), 1u);
  EXPECT_EQ(map.Count("shop.example:8080"), 50u);
  map.Set("Host", *map.Get("x-forwarded-host"));
  EXPECT_THAT(map.Get("host"), Optional(absl::string_view("shop.example:8080")));
}

TEST(HeaderMapTest, ClearKeepsCapacity) {
  HeaderMap map;
  for (int i = 0; i < 20; ++i) map.Add("X-Field-" + std::to_string(i), std::string(30, 'v'));
  const size_t capacity = map.capacity_bytes();
  map.Clear();
  EXPECT_TRUE(map.empty());
  EXPECT_EQ(map.Get("x-field-1"), std::nullopt);
  EXPECT_EQ(map.capacity_bytes(), capacity);
  for (int i = 0; i < 20; ++i) map.Add("X-Field-" + std::to_string(i), std::string(30, 'w'));
  EXPECT_EQ(map.capacity_bytes(), capacity);
}

TEST(HeaderMapTest, IncrementalBuildingJoinsPiecesAndTrimsTheValue) {
  HeaderMap map;
  map.StartField();
  map.AppendToName("Cont");
  map.AppendToName("ent-Type");
  map.AppendToValue("text/");
  map.AppendToValue("plain \t ");
  map.FinishValue();
  map.StartField();
  map.AppendToName("X-Empty");
  map.FinishValue();
  map.Add("After", "ok");
  EXPECT_THAT(Fields(map), ElementsAre(Pair("Content-Type", "text/plain"), Pair("X-Empty", ""),
                                       Pair("After", "ok")));
}

TEST(HeaderMapTest, EqualityIgnoresTombstones) {
  HeaderMap a;
  a.Add("A", "1");
  a.Add("Gone", "x");
  a.Add("B", "2");
  a.Remove("gone");
  HeaderMap b;
  b.Add("A", "1");
  b.Add("B", "2");
  EXPECT_EQ(a, b);
  b.Add("C", "3");
  EXPECT_FALSE(a == b);
  HeaderMap c;
  c.Add("a", "1");
  c.Add("B", "2");
  EXPECT_FALSE(a == c);  // names compare byte for byte here
}

}  // namespace
}  // namespace sluice::gateway::http
