#pragma once

// The one way sluice pulls in Boost.Asio and Boost.Beast. Boost 1.74's asio/awaitable.hpp
// uses std::exchange without including <utility>, which fails under GCC 12 in C++20
// (chriskohlhoff/asio#944); including it first here fixes that once for every user.
// clang-format off
#include <utility>  // must stay first
// clang-format on
#include <boost/asio.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace sluice::net {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = boost::asio::ip::tcp;
}  // namespace sluice::net
