#include "gateway/http/headers.h"

#include <optional>
#include <set>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "re2/re2.h"

namespace sluice::gateway {
namespace {

using http::HeaderMap;

std::string Get(const HeaderMap& h, absl::string_view name) {
  std::optional<absl::string_view> value = h.Get(name);
  return value.has_value() ? std::string(*value) : "<absent>";
}

TEST(HeadersTest, HopByHopHeadersAndThoseConnectionNamesAreStripped) {
  HeaderMap h;
  h.Set("Connection", "keep-alive, X-Trace-Hop");
  h.Set("x-trace-hop", "1");
  h.Set("Keep-Alive", "timeout=5");
  h.Set("Transfer-Encoding", "chunked");
  h.Set("Upgrade", "websocket");
  h.Set("TE", "trailers");
  h.Set("proxy-connection", "keep-alive");
  h.Set("x-kept", "yes");
  StripHopByHop(h);
  for (const char* gone : {"connection", "x-trace-hop", "keep-alive", "transfer-encoding",
                           "upgrade", "te", "proxy-connection"}) {
    EXPECT_EQ(Get(h, gone), "<absent>") << gone;
  }
  EXPECT_EQ(Get(h, "x-kept"), "yes");
}

TEST(HeadersTest, ClientsCannotSteerRetriesOrTimeouts) {
  HeaderMap h;
  h.Set("x-envoy-retry-on", "5xx");
  h.Set("x-envoy-max-retries", "100");
  h.Set("x-envoy-upstream-rq-timeout-ms", "1");
  h.Set("x-envoy-attempt-count", "7");
  h.Set("x-app", "kept");
  StripInternalRequestHeaders(h);
  EXPECT_EQ(Get(h, "x-envoy-retry-on"), "<absent>");
  EXPECT_EQ(Get(h, "x-envoy-max-retries"), "<absent>");
  EXPECT_EQ(Get(h, "x-envoy-upstream-rq-timeout-ms"), "<absent>");
  EXPECT_EQ(Get(h, "x-envoy-attempt-count"), "<absent>");
  EXPECT_EQ(Get(h, "x-app"), "kept");
}

TEST(HeadersTest, ForwardingHeaders) {
  HeaderMap h;
  h.Set("Host", "reviews:9080");
  h.Set("x-forwarded-for", "10.1.2.3");
  SetForwardingHeaders(h, {"127.0.0.1", "req-1", 2, "reviews.internal", "/v1/reviews"});
  EXPECT_EQ(Get(h, "x-request-id"), "req-1");
  EXPECT_EQ(Get(h, "x-forwarded-for"), "10.1.2.3, 127.0.0.1");
  EXPECT_EQ(Get(h, "x-forwarded-proto"), "http");
  EXPECT_EQ(Get(h, "x-envoy-attempt-count"), "2");
  EXPECT_EQ(Get(h, "host"), "reviews.internal");
  EXPECT_EQ(Get(h, "x-envoy-original-path"), "/v1/reviews");

  HeaderMap plain;
  plain.Set("Host", "ratings");
  SetForwardingHeaders(plain, {"127.0.0.1", "req-2", 1, "", ""});
  EXPECT_EQ(Get(plain, "host"), "ratings");
  EXPECT_EQ(Get(plain, "x-forwarded-for"), "127.0.0.1");
  EXPECT_EQ(Get(plain, "x-envoy-original-path"), "<absent>");
}

TEST(HeadersTest, SetReplacesAddAppendsRemoveDeletes) {
  HeaderMap h;
  h.Set("x-version", "old");
  h.Set("x-drop", "1");
  h.Add("x-multi", "a");
  v1::HeaderMutation m;
  auto* s = m.add_set();
  s->set_name("x-version");
  s->set_value("v2");
  auto* a = m.add_add();
  a->set_name("x-multi");
  a->set_value("b");
  m.add_remove("x-drop");
  ApplyHeaderMutation(h, m);
  EXPECT_EQ(Get(h, "x-version"), "v2");
  EXPECT_EQ(Get(h, "x-drop"), "<absent>");
  EXPECT_EQ(h.Count("x-multi"), 2u);
}

TEST(HeadersTest, RequestIdsAreVersion4UuidsAndUnique) {
  absl::BitGen gen;
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    const std::string id = NewRequestId(gen);
    ASSERT_TRUE(
        RE2::FullMatch(id, "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"))
        << id;
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 1000u);
}

// A generator that returns the given words in turn: the id's every digit is then known.
class FixedWords {
 public:
  using result_type = uint64_t;
  explicit FixedWords(std::vector<uint64_t> words) : words_(std::move(words)) {}
  static constexpr result_type min() { return 0; }
  static constexpr result_type max() { return ~result_type{0}; }
  result_type operator()() { return words_[next_++ % words_.size()]; }

 private:
  std::vector<uint64_t> words_;
  size_t next_ = 0;
};

TEST(HeadersTest, RequestIdDigitsComeFromTheRandomBitsWithVersionAndVariantSet) {
  FixedWords words({0x0123456789abcdefULL, 0xfedcba9876543210ULL});
  EXPECT_EQ(NewRequestId(words), "01234567-89ab-4def-bedc-ba9876543210");
  FixedWords zeros({0});
  EXPECT_EQ(NewRequestId(zeros), "00000000-0000-4000-8000-000000000000");
  FixedWords ones({~0ULL});
  EXPECT_EQ(NewRequestId(ones), "ffffffff-ffff-4fff-bfff-ffffffffffff");
}

TEST(HeadersTest, ARequestIdWrittenOverAStringReplacesItInItsBuffer) {
  std::string id = "an older and much longer request id than a UUID's 36 characters";
  const char* buffer = id.data();
  FixedWords words({0x0123456789abcdefULL, 0xfedcba9876543210ULL});
  NewRequestId(words, id);
  EXPECT_EQ(id, "01234567-89ab-4def-bedc-ba9876543210");
  EXPECT_EQ(id.data(), buffer);  // no new allocation
}

}  // namespace
}  // namespace sluice::gateway
