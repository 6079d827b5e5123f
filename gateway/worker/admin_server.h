#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "gateway/http/beast.h"
#include "prometheus/registry.h"

namespace sluice::gateway {

// The gateway's admin port, on its own thread: GET /metrics (Prometheus text format) and
// GET /healthz (the gateway's state, from `health`). Kept off the workers so a scrape never
// delays a request.
class AdminServer {
 public:
  struct Health {
    unsigned status = 200;
    std::string body;
  };
  using HealthFn = std::function<Health()>;

  AdminServer(std::shared_ptr<prometheus::Registry> registry, HealthFn health);
  ~AdminServer();

  // Binds and starts serving; returns false with `error` set when the address is unusable.
  bool Start(const std::string& host, uint16_t port, std::string* error);
  uint16_t port() const { return port_; }
  void Stop();

 private:
  net::asio::awaitable<void> Accept();
  net::asio::awaitable<void> Serve(net::tcp::socket socket);

  std::shared_ptr<prometheus::Registry> registry_;
  HealthFn health_;
  net::asio::io_context io_{1};
  net::tcp::acceptor acceptor_{io_};
  uint16_t port_ = 0;
  std::thread thread_;
};

}  // namespace sluice::gateway
