// libFuzzer target: arbitrary bytes through the whole configuration path a user's YAML
// takes (parse, validate, compile, describe). Any crash, sanitizer report or leak fails.

#include <cstddef>
#include <cstdint>
#include <string>

#include "lib/routing/snapshot.h"
#include "lib/routing/snapshot_printer.h"
#include "server/config/loader.h"
#include "server/routing/snapshot_compiler.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  sluice::config::LoadResult loaded = sluice::config::LoadText(text, "fuzz.yaml");
  std::string rendered = loaded.diagnostics.ToString();  // formatting is exercised too
  if (loaded.ok()) {
    auto snapshot = sluice::routing::CompileSnapshot(std::move(loaded.config), 1, nullptr);
    if (snapshot.ok()) {
      rendered += sluice::routing::DescribeSnapshot(**snapshot);
      // Exercise lookups too: every host the config names must resolve without crashing.
      for (const auto& host : (*snapshot)->virtual_hosts()) {
        (void)(*snapshot)->FindVirtualHost(host.name);
      }
    }
  }
  return 0;
}
