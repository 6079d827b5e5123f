// floor_proxy: the least a reverse proxy on sluice-gateway's stack (Boost.Beast 1.74 and
// Asio C++20 coroutines, one io_context thread) costs per request, for bench/proxy_compare.sh.
// It does only what every proxy in that comparison must: read a keep-alive client's request
// with Beast's parser, pick one of the upstreams by weight, forward the request on a kept-alive
// upstream connection, read the response and write it back. No decision, no timers, no
// retries, no header changes, no metrics, no limits. What sluice-gateway costs beyond this is
// its features and its decision round trip; what this costs beyond HAProxy is the stack's.
//   usage: floor_proxy --listen HOST:PORT --upstream HOST:PORT:WEIGHT [--upstream ...]
// Prints "listening http=HOST:PORT" once it accepts connections.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "gateway/http/beast.h"

namespace {

namespace asio = sluice::net::asio;
namespace beast = sluice::net::beast;
namespace http = sluice::net::http;
using boost::system::error_code;
using sluice::net::tcp;

struct Upstream {
  tcp::endpoint endpoint;
  unsigned weight = 1;
};

auto Await(error_code& ec) { return asio::redirect_error(asio::use_awaitable, ec); }

bool ParseHostPort(const std::string& text, tcp::endpoint& out, std::string* rest) {
  const size_t colon = text.find(':');
  if (colon == std::string::npos) return false;
  std::string port = text.substr(colon + 1);
  if (rest != nullptr) {
    const size_t second = port.find(':');
    if (second == std::string::npos) return false;
    *rest = port.substr(second + 1);
    port = port.substr(0, second);
  }
  error_code ec;
  const auto address = asio::ip::make_address(text.substr(0, colon), ec);
  if (ec) return false;
  out = tcp::endpoint(address, static_cast<uint16_t>(std::atoi(port.c_str())));
  return true;
}

// One client connection, with its own kept-alive connection to each upstream.
asio::awaitable<void> Serve(tcp::socket client, const std::vector<Upstream>& upstreams,
                            unsigned total_weight) {
  beast::tcp_stream downstream(std::move(client));
  beast::flat_buffer down_buffer;
  std::vector<std::unique_ptr<beast::tcp_stream>> connections(upstreams.size());
  std::vector<beast::flat_buffer> up_buffers(upstreams.size());
  std::minstd_rand rng(std::random_device{}());
  for (;;) {
    error_code ec;
    http::request<http::string_body> request;
    co_await http::async_read(downstream, down_buffer, request, Await(ec));
    if (ec) break;
    unsigned pick = static_cast<unsigned>(rng() % total_weight);
    size_t index = 0;
    while (pick >= upstreams[index].weight) pick -= upstreams[index++].weight;
    auto& connection = connections[index];
    if (connection == nullptr) {
      connection = std::make_unique<beast::tcp_stream>(downstream.get_executor());
      co_await connection->async_connect(upstreams[index].endpoint, Await(ec));
      if (ec) break;
      connection->socket().set_option(tcp::no_delay(true), ec);
    }
    const bool keep_alive = request.keep_alive();
    request.keep_alive(true);
    co_await http::async_write(*connection, request, Await(ec));
    if (ec) break;
    http::response<http::string_body> response;
    co_await http::async_read(*connection, up_buffers[index], response, Await(ec));
    if (ec) break;
    response.keep_alive(keep_alive);
    co_await http::async_write(downstream, response, Await(ec));
    if (ec || !keep_alive) break;
  }
  error_code ignored;
  downstream.socket().shutdown(tcp::socket::shutdown_both, ignored);
}

asio::awaitable<void> Accept(tcp::acceptor& acceptor, const std::vector<Upstream>& upstreams,
                             unsigned total_weight) {
  for (;;) {
    error_code ec;
    tcp::socket socket = co_await acceptor.async_accept(Await(ec));
    if (ec) continue;
    socket.set_option(tcp::no_delay(true), ec);
    asio::co_spawn(acceptor.get_executor(), Serve(std::move(socket), upstreams, total_weight),
                   asio::detached);
  }
}

}  // namespace

int main(int argc, char** argv) {
  tcp::endpoint listen;
  std::vector<Upstream> upstreams;
  bool have_listen = false;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const std::string value = argv[i + 1];
    if (flag == "--listen" && ParseHostPort(value, listen, nullptr)) {
      have_listen = true;
    } else if (std::string weight;
               flag == "--upstream" &&
               ParseHostPort(value, upstreams.emplace_back().endpoint, &weight)) {
      upstreams.back().weight = static_cast<unsigned>(std::atoi(weight.c_str()));
      if (upstreams.back().weight == 0) upstreams.pop_back();
    } else {
      std::cerr << "floor_proxy: bad argument " << flag << " " << value
                << "\nusage: floor_proxy --listen HOST:PORT --upstream HOST:PORT:WEIGHT ...\n";
      return 2;
    }
  }
  if (!have_listen || upstreams.empty()) {
    std::cerr << "usage: floor_proxy --listen HOST:PORT --upstream HOST:PORT:WEIGHT ...\n";
    return 2;
  }
  unsigned total_weight = 0;
  for (const Upstream& u : upstreams) total_weight += u.weight;

  asio::io_context io(1);
  tcp::acceptor acceptor(io, listen);
  std::printf("listening http=%s:%u\n", acceptor.local_endpoint().address().to_string().c_str(),
              acceptor.local_endpoint().port());
  std::fflush(stdout);
  asio::co_spawn(io, Accept(acceptor, upstreams, total_weight), asio::detached);
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&io](error_code, int) { io.stop(); });
  io.run();
  return 0;
}
