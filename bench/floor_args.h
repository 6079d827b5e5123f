#pragma once
// The command line of the bench floors on the event core (core_floor_proxy.cc,
// core_task_proxy.cc): --listen HOST:PORT, --upstream HOST:PORT:WEIGHT (repeated) and
// --poller epoll|io_uring.
#include <cstdint>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "gateway/event/socket.h"

namespace sluice::bench {

struct FloorUpstream {
  gateway::event::SocketAddress address;
  uint32_t weight = 1;
};

struct FloorArgs {
  std::string listen_host = "127.0.0.1";
  uint16_t listen_port = 0;
  std::vector<FloorUpstream> upstreams;
  std::string poller = "epoll";
};

// "HOST:PORT" or, with `weight`, "HOST:PORT:WEIGHT" (weight 1 when left out).
inline bool ParseHostPort(absl::string_view text, std::string* host, uint16_t* port,
                          uint32_t* weight) {
  std::vector<std::string> parts = absl::StrSplit(text, ':');
  uint32_t p = 0;
  if (parts.size() < 2 || !absl::SimpleAtoi(parts[1], &p) || p > 65535) return false;
  *host = parts[0];
  *port = static_cast<uint16_t>(p);
  if (weight != nullptr) {
    *weight = 1;
    if (parts.size() == 3 && !absl::SimpleAtoi(parts[2], weight)) return false;
  }
  return true;
}

// The arguments, or nullopt after printing what is wrong and the usage.
inline std::optional<FloorArgs> ParseFloorArgs(int argc, char** argv, const char* program) {
  FloorArgs args;
  const auto usage = [program] {
    std::cerr << "usage: " << program
              << " --listen HOST:PORT --upstream HOST:PORT:WEIGHT [--upstream ...]"
                 " [--poller epoll|io_uring]\n";
  };
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const std::string value = argv[i + 1];
    std::string host;
    uint16_t port = 0;
    uint32_t weight = 1;
    if (flag == "--listen" && ParseHostPort(value, &args.listen_host, &args.listen_port, nullptr)) {
      continue;
    }
    if (flag == "--poller" && (value == "epoll" || value == "io_uring")) {
      args.poller = value;
      continue;
    }
    if (flag == "--upstream" && ParseHostPort(value, &host, &port, &weight) && weight > 0) {
      auto address = gateway::event::SocketAddress::Parse(host, port);
      if (address.ok()) {
        args.upstreams.push_back({*address, weight});
        continue;
      }
    }
    std::cerr << program << ": bad argument " << flag << " " << value << "\n";
    usage();
    return std::nullopt;
  }
  if (args.upstreams.empty()) {
    usage();
    return std::nullopt;
  }
  return args;
}

}  // namespace sluice::bench
