#include "gateway/worker/admin_server.h"

#include <sstream>

#include "prometheus/text_serializer.h"

namespace sluice::gateway {

namespace asio = net::asio;
namespace beast = net::beast;
namespace http = net::http;
using net::tcp;

AdminServer::AdminServer(std::shared_ptr<prometheus::Registry> registry, HealthFn health)
    : registry_(std::move(registry)), health_(std::move(health)) {}

AdminServer::~AdminServer() { Stop(); }

bool AdminServer::Start(const std::string& host, uint16_t port, std::string* error) {
  boost::system::error_code ec;
  const tcp::endpoint endpoint(asio::ip::make_address(host, ec), port);
  if (!ec) acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    *error = ec.message();
    return false;
  }
  port_ = acceptor_.local_endpoint().port();
  asio::co_spawn(io_, Accept(), asio::detached);
  thread_ = std::thread([this] { io_.run(); });
  return true;
}

void AdminServer::Stop() {
  if (!thread_.joinable()) return;
  io_.stop();
  thread_.join();
}

asio::awaitable<void> AdminServer::Accept() {
  for (;;) {
    boost::system::error_code ec;
    tcp::socket socket =
        co_await acceptor_.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec) continue;
    asio::co_spawn(io_, Serve(std::move(socket)), asio::detached);
  }
}

asio::awaitable<void> AdminServer::Serve(tcp::socket socket) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  for (;;) {
    boost::system::error_code ec;
    http::request<http::string_body> request;
    stream.expires_after(std::chrono::seconds(30));
    co_await http::async_read(stream, buffer, request,
                              asio::redirect_error(asio::use_awaitable, ec));
    if (ec) break;
    http::response<http::string_body> response{http::status::ok, request.version()};
    const beast::string_view target = request.target();
    const beast::string_view path = target.substr(0, target.find('?'));
    if (path == "/metrics") {
      std::ostringstream out;
      prometheus::TextSerializer().Serialize(out, registry_->Collect());
      response.set(http::field::content_type, "text/plain; version=0.0.4");
      response.body() = out.str();
    } else if (path == "/healthz") {
      const Health health = health_();
      response.result(health.status);
      response.set(http::field::content_type, "application/json");
      response.body() = health.body;
    } else {
      response.result(http::status::not_found);
      response.body() = "not found: try /metrics or /healthz\n";
    }
    response.keep_alive(request.keep_alive());
    response.prepare_payload();
    co_await http::async_write(stream, response, asio::redirect_error(asio::use_awaitable, ec));
    if (ec || !request.keep_alive()) break;
  }
  boost::system::error_code ec;
  stream.socket().shutdown(tcp::socket::shutdown_both, ec);
}

}  // namespace sluice::gateway
