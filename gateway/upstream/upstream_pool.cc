#include "gateway/upstream/upstream_pool.h"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

namespace sluice::gateway {

bool PeerClosedOrDirty(const event::AsyncSocket& socket) {
  // The loop's readiness says it without a system call in the common case.
  if (socket.quiet()) return false;
  // With the ring, the read started when it went idle has taken whatever came.
  return socket.uses_ring() || PeerClosedOrDirty(socket.fd());
}

bool PeerClosedOrDirty(int fd) {
  char byte;
  const ssize_t n = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) return true;  // orderly close
  if (n > 0) return true;   // unsolicited data: the framing is lost
  return errno != EAGAIN && errno != EWOULDBLOCK;
}

std::unique_ptr<UpstreamConnection> UpstreamPool::TakeIdle(const std::string& pool,
                                                           const std::string& endpoint,
                                                           absl::Duration idle_timeout,
                                                           event::MonotonicTime now) {
  auto it = idle_.find(Key(pool, endpoint));
  if (it == idle_.end()) return nullptr;
  auto& stack = it->second;
  std::unique_ptr<UpstreamConnection> found;
  while (!stack.empty() && found == nullptr) {
    std::unique_ptr<UpstreamConnection> c = std::move(stack.back());
    stack.pop_back();
    const bool expired = idle_timeout > absl::ZeroDuration() &&
                         now - c->idle_since >= absl::ToChronoNanoseconds(idle_timeout);
    if (!expired && c->in.empty() && c->socket != nullptr && !PeerClosedOrDirty(*c->socket)) {
      found = std::move(c);
    } else {
      Discard(std::move(c));
    }
  }
  // An emptied entry stays until the next CloseIdle: the connection taken is usually released
  // again within the request, and a new entry (its key, its vector) would be allocated then.
  return found;
}

bool UpstreamPool::HasIdle(const std::string& pool, const std::string& endpoint) const {
  auto it = idle_.find(Key(pool, endpoint));
  return it != idle_.end() && !it->second.empty();
}

void UpstreamPool::Release(std::unique_ptr<UpstreamConnection> connection,
                           uint32_t max_requests_per_connection, event::MonotonicTime now) {
  if ((max_requests_per_connection != 0 && connection->requests >= max_requests_per_connection) ||
      !Live(connection->pool) || connection->aborted || connection->socket == nullptr) {
    Discard(std::move(connection));
    return;
  }
  connection->idle_since = now;
  // With io_uring, the next read starts now: a close or unsolicited bytes end it while the
  // connection waits here, and TakeIdle sees that without a system call.
  connection->socket->ReadAhead();
  // The connection object stays where it is (the map holds its pointer), so its cluster name
  // needs no copy for the wake-up.
  const std::string& cluster = connection->cluster;
  idle_[Key(connection->pool, connection->endpoint)].push_back(std::move(connection));
  Wake(cluster);
}

UpstreamConnection::~UpstreamConnection() {
  if (std::shared_ptr<UpstreamPool*> pool = counted_by.lock()) (*pool)->Forget(*this);
}

void UpstreamPool::NoteOpened(UpstreamConnection& connection) {
  ++open_[Key(connection.pool, connection.endpoint)];
  connection.counted_by = self_;
}

void UpstreamPool::Forget(UpstreamConnection& connection) {
  connection.counted_by.reset();
  connection.ticket.Release();  // before the wake: the woken request may take the slot
  if (auto it = open_.find(Key(connection.pool, connection.endpoint));
      it != open_.end() && --it->second == 0) {
    open_.erase(it);
  }
  Wake(connection.cluster);
}

void UpstreamPool::Discard(std::unique_ptr<UpstreamConnection> connection) {
  if (connection->socket != nullptr) ::shutdown(connection->socket->fd(), SHUT_RDWR);
  connection->socket.reset();
  connection->ticket.Release();
  if (connection->counted_by.expired()) {
    Wake(connection->cluster);  // never counted open (a test's), but its slot is free
  } else {
    Forget(*connection);
  }
}

bool UpstreamPool::CloseOneIdle(const std::string& cluster) {
  for (auto entry = idle_.begin(); entry != idle_.end(); ++entry) {
    auto& stack = entry->second;
    for (auto it = stack.begin(); it != stack.end(); ++it) {
      if ((*it)->cluster != cluster) continue;
      std::unique_ptr<UpstreamConnection> c = std::move(*it);
      stack.erase(it);
      if (stack.empty()) idle_.erase(entry);
      Discard(std::move(c));
      return true;
    }
  }
  return false;
}

event::Task<void> UpstreamPool::WaitForRelease(const std::string& cluster, absl::Duration max_wait,
                                               event::Alarm& alarm, event::Alarm** cancel) {
  // An infinite wait is a long one: the wheel holds timers of up to 49 days, and the request
  // that waits is woken by a release, its route timer or its client long before.
  const absl::Duration wait = max_wait == absl::InfiniteDuration()
                                  ? absl::Hours(24 * 30)
                                  : std::max(max_wait, absl::Nanoseconds(1));
  // Undone however the wait ends, also when the waiting frame is destroyed while suspended
  // (a worker stopping with requests queued).
  // A waiter woken for a freed connection, whose wait then ended another way before it ran
  // (its route timer, its client leaving), passes the wake on: the connection is still
  // free, and another request of the cluster may be queued for it.
  struct Enlisted {
    UpstreamPool& pool;
    std::list<Waiter>::iterator it;
    event::Alarm** cancel;
    bool ran = false;  // the wait ended by a wake or its limit, not cancelled or destroyed
    ~Enlisted() {
      const bool pass_on = it->woken && !ran;
      std::string cluster = pass_on ? std::move(it->cluster) : std::string();
      pool.waiters_.erase(it);
      if (cancel != nullptr) *cancel = nullptr;
      if (pass_on) pool.Wake(cluster);
    }
  } enlisted{*this, waiters_.insert(waiters_.end(), Waiter{cluster, &alarm}), cancel};
  if (cancel != nullptr) *cancel = &alarm;
  enlisted.ran = co_await alarm.WaitFor(absl::ToChronoNanoseconds(wait));
}

void UpstreamPool::Wake(const std::string& cluster) {
  for (Waiter& w : waiters_) {
    if (!w.woken && w.cluster == cluster) {
      w.woken = true;
      // Not inline: the caller (a release, a discard) is in the middle of its own request.
      w.alarm->WakeSoon();
      return;
    }
  }
}

uint32_t UpstreamPool::OpenCount(const std::string& pool, const std::string& endpoint) const {
  auto it = open_.find(Key(pool, endpoint));
  return it == open_.end() ? 0 : it->second;
}

size_t UpstreamPool::CloseIdle(event::MonotonicTime now) {
  size_t closed = 0;
  for (auto entry = idle_.begin(); entry != idle_.end();) {
    auto& stack = entry->second;
    for (auto it = stack.begin(); it != stack.end();) {
      UpstreamConnection& c = **it;
      const bool expired = c.idle_timeout > absl::ZeroDuration() &&
                           now - c.idle_since >= absl::ToChronoNanoseconds(c.idle_timeout);
      if (!expired && Live(c.pool) && c.in.empty() && c.socket != nullptr &&
          !PeerClosedOrDirty(*c.socket)) {
        ++it;
        continue;
      }
      std::unique_ptr<UpstreamConnection> gone = std::move(*it);
      it = stack.erase(it);
      Discard(std::move(gone));
      ++closed;
    }
    if (stack.empty()) {
      idle_.erase(entry++);
    } else {
      ++entry;
    }
  }
  return closed;
}

size_t UpstreamPool::SetLivePools(absl::flat_hash_set<std::string> live) {
  live_ = std::move(live);
  size_t closed = 0;
  for (auto entry = idle_.begin(); entry != idle_.end();) {
    auto& stack = entry->second;
    // One pool per entry: all of its connections go, or none.
    if (stack.empty() || Live(stack.front()->pool)) {
      ++entry;
      continue;
    }
    auto gone = std::move(stack);
    idle_.erase(entry++);
    for (auto& c : gone) Discard(std::move(c));
    closed += gone.size();
  }
  return closed;
}

size_t UpstreamPool::idle_count() const {
  size_t n = 0;
  for (const auto& [endpoint, stack] : idle_) n += stack.size();
  return n;
}

void UpstreamPool::CloseAll() {
  auto idle = std::move(idle_);
  idle_.clear();
  for (auto& [endpoint, stack] : idle) {
    for (auto& c : stack) Discard(std::move(c));
  }
}

}  // namespace sluice::gateway
