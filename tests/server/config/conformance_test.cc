// Every VirtualService and DestinationRule in Istio's own samples must be accepted. The corpus
// lives outside the repository (CMake option SLUICE_CONFORMANCE_DIR); the test reports itself
// skipped when it is absent.

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/routing/snapshot.h"
#include "server/config/loader.h"
#include "server/routing/snapshot_compiler.h"
#include "yaml-cpp/yaml.h"

namespace sluice::config {
namespace {

namespace fs = std::filesystem;

struct Expected {
  int virtual_services = 0;
  int destination_rules = 0;
  std::set<std::string> api_versions;
};

// Counts the documents of each kind independently of the loader, with plain yaml-cpp.
Expected CountKinds(const std::string& file) {
  Expected e;
  for (const YAML::Node& doc : YAML::LoadAllFromFile(file)) {
    if (!doc.IsMap() || !doc["kind"]) continue;
    const std::string kind = doc["kind"].as<std::string>();
    if (kind == "VirtualService") ++e.virtual_services;
    if (kind == "DestinationRule") ++e.destination_rules;
    if (kind == "VirtualService" || kind == "DestinationRule") {
      e.api_versions.insert(doc["apiVersion"].as<std::string>());
    }
  }
  return e;
}

std::vector<std::string> CorpusFiles(const fs::path& root) {
  std::vector<std::string> files;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    const std::string ext = entry.path().extension().string();
    if (entry.is_regular_file() && (ext == ".yaml" || ext == ".yml")) {
      files.push_back(entry.path().string());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

TEST(IstioSamplesConformance, EveryVirtualServiceAndDestinationRuleIsAccepted) {
  const fs::path root = fs::path(SLUICE_CONFORMANCE_DIR) / "istio-samples";
  if (!fs::is_directory(root)) {
    GTEST_SKIP() << "Istio sample corpus not found at " << root
                 << " (set -DSLUICE_CONFORMANCE_DIR=...)";
  }
  const std::vector<std::string> files = CorpusFiles(root);
  ASSERT_GT(files.size(), 40u) << "corpus at " << root << " looks incomplete";

  int virtual_services = 0;
  int destination_rules = 0;
  std::set<std::string> api_versions;
  for (const std::string& file : files) {
    SCOPED_TRACE(file);
    // Each file is one apply: its alternatives (e.g. v1 and v1alpha3 copies) never meet.
    LoadResult result = LoadPaths({file});
    EXPECT_TRUE(result.ok()) << result.diagnostics.ToString();
    const Expected expected = CountKinds(file);
    EXPECT_EQ(result.config.virtual_services.size(), expected.virtual_services);
    EXPECT_EQ(result.config.destination_rules.size(), expected.destination_rules);
    virtual_services += expected.virtual_services;
    destination_rules += expected.destination_rules;
    api_versions.insert(expected.api_versions.begin(), expected.api_versions.end());

    Diagnostics compile_findings;
    auto snapshot = routing::CompileSnapshot(std::move(result.config), 1, &compile_findings);
    EXPECT_TRUE(snapshot.ok()) << snapshot.status();
  }
  EXPECT_GT(virtual_services, 40);
  EXPECT_GT(destination_rules, 10);
  EXPECT_THAT(api_versions,
              testing::IsSupersetOf({"networking.istio.io/v1alpha3", "networking.istio.io/v1beta1",
                                     "networking.istio.io/v1"}));
}

TEST(IstioSamplesConformance, BookinfoRoutesCompileToTheDocumentedSplit) {
  const fs::path file = fs::path(SLUICE_CONFORMANCE_DIR) /
                        "istio-samples/bookinfo/networking/virtual-service-reviews-90-10.yaml";
  if (!fs::exists(file)) GTEST_SKIP() << "Istio sample corpus not found at " << file;
  const fs::path rules = fs::path(SLUICE_CONFORMANCE_DIR) /
                         "istio-samples/bookinfo/networking/destination-rule-all.yaml";
  LoadResult result = LoadPaths({file.string(), rules.string()});
  ASSERT_TRUE(result.ok()) << result.diagnostics.ToString();
  auto snapshot = routing::CompileSnapshot(std::move(result.config), 1);
  ASSERT_TRUE(snapshot.ok());
  const routing::VirtualHost* host = (*snapshot)->FindVirtualHost("reviews:9080");
  ASSERT_NE(host, nullptr);
  ASSERT_EQ(host->routes.size(), 1u);
  const auto& destinations = host->routes[0].weights.destinations();
  ASSERT_EQ(destinations.size(), 2u);
  EXPECT_EQ(destinations[0].subset, "v1");
  EXPECT_EQ(destinations[0].weight, 90u);
  EXPECT_EQ(destinations[1].subset, "v2");
  EXPECT_EQ(destinations[1].weight, 10u);
}

}  // namespace
}  // namespace sluice::config
