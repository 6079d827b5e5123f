#include "lib/config/host_names.h"

#include "gtest/gtest.h"

namespace sluice::config {
namespace {

TEST(ResolveHost, QualifiesShortNamesWithTheResourceNamespace) {
  EXPECT_EQ(ResolveHost("reviews", "default"), "reviews.default.svc.cluster.local");
  EXPECT_EQ(ResolveHost("reviews", "shop"), "reviews.shop.svc.cluster.local");
  EXPECT_EQ(ResolveHost("Reviews", ""), "reviews.default.svc.cluster.local");
}

TEST(ResolveHost, KeepsQualifiedNamesWildcardsAndAddresses) {
  EXPECT_EQ(ResolveHost("reviews.prod.svc.cluster.local", "default"),
            "reviews.prod.svc.cluster.local");
  EXPECT_EQ(ResolveHost("www.googleapis.com", "default"), "www.googleapis.com");
  EXPECT_EQ(ResolveHost("*", "default"), "*");
  EXPECT_EQ(ResolveHost("*.example.com", "default"), "*.example.com");
  EXPECT_EQ(ResolveHost("10.0.0.1", "default"), "10.0.0.1");
}

TEST(StripPort, RemovesOnlyANumericPortSuffix) {
  EXPECT_EQ(StripPort("reviews:9080"), "reviews");
  EXPECT_EQ(StripPort("reviews"), "reviews");
  EXPECT_EQ(StripPort("[::1]:8080"), "[::1]");
  EXPECT_EQ(StripPort("::1"), "::1");
}

TEST(CheckHostName, AcceptsDomainsWildcardsAndAddresses) {
  EXPECT_EQ(CheckHostName("reviews", false), "");
  EXPECT_EQ(CheckHostName("reviews.default.svc.cluster.local", false), "");
  EXPECT_EQ(CheckHostName("*.example.com", true), "");
  EXPECT_EQ(CheckHostName("*", true), "");
  EXPECT_EQ(CheckHostName("192.168.0.1", false), "");
  EXPECT_NE(CheckHostName("*", false), "");
  EXPECT_NE(CheckHostName("*.example.com", false), "");
  EXPECT_NE(CheckHostName("bad_host", false), "");
  EXPECT_NE(CheckHostName("-leading.dash", false), "");
  EXPECT_NE(CheckHostName("", true), "");
}

TEST(Dns1123, LabelsAndSubdomains) {
  EXPECT_TRUE(IsDns1123Label("v1"));
  EXPECT_TRUE(IsDns1123Label("v2-mysql-vm"));
  EXPECT_FALSE(IsDns1123Label(""));
  EXPECT_FALSE(IsDns1123Label("-v1"));
  EXPECT_FALSE(IsDns1123Label("v1_a"));
  EXPECT_FALSE(IsDns1123Label(std::string(64, 'a')));
  EXPECT_TRUE(IsDns1123Subdomain("reviews.default"));
  EXPECT_FALSE(IsDns1123Subdomain("Reviews"));
  EXPECT_FALSE(IsDns1123Subdomain("a..b"));
}

TEST(HostMatches, ExactAndWildcard) {
  EXPECT_TRUE(HostMatches("*", "anything"));
  EXPECT_TRUE(HostMatches("*.example.com", "a.example.com"));
  EXPECT_TRUE(HostMatches("*.example.com", "a.b.example.com"));
  EXPECT_FALSE(HostMatches("*.example.com", "example.com"));
  EXPECT_TRUE(HostMatches("Reviews", "reviews"));
  EXPECT_FALSE(HostMatches("reviews", "ratings"));
}

}  // namespace
}  // namespace sluice::config
