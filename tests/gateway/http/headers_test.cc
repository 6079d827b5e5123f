#include "gateway/http/headers.h"

#include <set>

#include "absl/random/random.h"
#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "re2/re2.h"

namespace sluice::gateway {
namespace {

using net::http::field;
using net::http::fields;

std::string Get(const fields& h, absl::string_view name) {
  auto it = h.find(boost::beast::string_view(name.data(), name.size()));
  return it == h.end() ? "<absent>" : std::string(it->value());
}

TEST(HeadersTest, HopByHopHeadersAndThoseConnectionNamesAreStripped) {
  fields h;
  h.set(field::connection, "keep-alive, X-Trace-Hop");
  h.set("x-trace-hop", "1");
  h.set(field::keep_alive, "timeout=5");
  h.set(field::transfer_encoding, "chunked");
  h.set(field::upgrade, "websocket");
  h.set(field::te, "trailers");
  h.set("proxy-connection", "keep-alive");
  h.set("x-kept", "yes");
  StripHopByHop(h);
  for (const char* gone : {"connection", "x-trace-hop", "keep-alive", "transfer-encoding",
                           "upgrade", "te", "proxy-connection"}) {
    EXPECT_EQ(Get(h, gone), "<absent>") << gone;
  }
  EXPECT_EQ(Get(h, "x-kept"), "yes");
}

TEST(HeadersTest, ClientsCannotSteerRetriesOrTimeouts) {
  fields h;
  h.set("x-envoy-retry-on", "5xx");
  h.set("x-envoy-max-retries", "100");
  h.set("x-envoy-upstream-rq-timeout-ms", "1");
  h.set("x-envoy-attempt-count", "7");
  h.set("x-app", "kept");
  StripInternalRequestHeaders(h);
  EXPECT_EQ(Get(h, "x-envoy-retry-on"), "<absent>");
  EXPECT_EQ(Get(h, "x-envoy-max-retries"), "<absent>");
  EXPECT_EQ(Get(h, "x-envoy-upstream-rq-timeout-ms"), "<absent>");
  EXPECT_EQ(Get(h, "x-envoy-attempt-count"), "<absent>");
  EXPECT_EQ(Get(h, "x-app"), "kept");
}

TEST(HeadersTest, ForwardingHeaders) {
  fields h;
  h.set(field::host, "reviews:9080");
  h.set("x-forwarded-for", "10.1.2.3");
  SetForwardingHeaders(h, {"127.0.0.1", "req-1", 2, "reviews.internal", "/v1/reviews"});
  EXPECT_EQ(Get(h, "x-request-id"), "req-1");
  EXPECT_EQ(Get(h, "x-forwarded-for"), "10.1.2.3, 127.0.0.1");
  EXPECT_EQ(Get(h, "x-forwarded-proto"), "http");
  EXPECT_EQ(Get(h, "x-envoy-attempt-count"), "2");
  EXPECT_EQ(Get(h, "host"), "reviews.internal");
  EXPECT_EQ(Get(h, "x-envoy-original-path"), "/v1/reviews");

  fields plain;
  plain.set(field::host, "ratings");
  SetForwardingHeaders(plain, {"127.0.0.1", "req-2", 1, "", ""});
  EXPECT_EQ(Get(plain, "host"), "ratings");
  EXPECT_EQ(Get(plain, "x-forwarded-for"), "127.0.0.1");
  EXPECT_EQ(Get(plain, "x-envoy-original-path"), "<absent>");
}

TEST(HeadersTest, SetReplacesAddAppendsRemoveDeletes) {
  fields h;
  h.set("x-version", "old");
  h.set("x-drop", "1");
  h.insert("x-multi", "a");
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
  EXPECT_EQ(h.count("x-multi"), 2u);
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

}  // namespace
}  // namespace sluice::gateway
