#include "gateway/event/async_socket.h"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <utility>

namespace sluice::gateway::event {
namespace {

IoResult Error(int error) {
  IoResult result;
  result.kind = IoResult::Kind::kError;
  result.error = error;
  return result;
}

// Resumes the handles collected by an event, in order. Nothing of the socket is touched
// here: a resumed coroutine may have destroyed it.
void ResumeAll(std::coroutine_handle<> first, std::coroutine_handle<> second,
               std::coroutine_handle<> third) {
  if (first) first.resume();
  if (second) second.resume();
  if (third) third.resume();
}

}  // namespace

// One socket's three operations in the ring, each a Completion the kernel answers. While the
// socket lives, answers go to it; once it is gone (destroyed with an operation in the kernel,
// which is asked to cancel it), this waits for the last answer and deletes itself, so the
// kernel never completes into freed memory of ours.
class AsyncSocket::RingOps {
 public:
  RingOps(IoRing& ring, AsyncSocket* socket) : ring_(ring), socket_(socket) {}

  class Op final : public Completion {
   public:
    Op(RingOps& ops, RingOp kind) : ops_(ops), kind_(kind) {}
    void OnComplete(int32_t result, uint32_t flags) override {
      (void)flags;
      busy = false;
      ops_.OnComplete(kind_, result, std::exchange(cancel_error, 0));
    }
    bool busy = false;     // in the kernel (or queued for it)
    int cancel_error = 0;  // Cancel()ed with this error

   private:
    RingOps& ops_;
    RingOp kind_;
  };

  IoRing& ring() { return ring_; }
  Op& op(RingOp kind) {
    return kind == RingOp::kRead ? read_ : kind == RingOp::kWrite ? write_ : connect_;
  }
  msghdr& message() { return message_; }
  iovec* iov() { return iov_; }
  // ReadAhead's buffer: here, not in the socket, because the kernel may still be filling it
  // when the socket is gone. Made at the first ReadAhead.
  static constexpr size_t kAheadSize = 4096;
  char* ahead() {
    if (ahead_ == nullptr) ahead_ = std::make_unique<char[]>(kAheadSize);
    return ahead_.get();
  }

  // The socket is going. Its operations still queued here become no-ops; those in the
  // kernel are cancelled; this waits for their completions, keeping `fd` open until then,
  // so that no operation can reach another socket that takes the same fd number. Or it goes
  // now, closing `fd`, if nothing is pending.
  void Orphan(UniqueFd fd) {
    socket_ = nullptr;
    bool any = false;
    for (Op* o : {&read_, &write_, &connect_}) {
      if (!o->busy) continue;
      any = true;
      if (!ring_.Withdraw(o)) (void)ring_.CancelOp(o);
    }
    if (!any) {
      delete this;
      return;
    }
    fd_ = std::move(fd);
  }

 private:
  void OnComplete(RingOp kind, int32_t result, int cancel_error) {
    if (socket_ != nullptr) {
      socket_->OnRingComplete(kind, result, cancel_error);  // may destroy the socket
      return;
    }
    if (!read_.busy && !write_.busy && !connect_.busy) delete this;
  }

  IoRing& ring_;
  AsyncSocket* socket_;
  Op read_{*this, RingOp::kRead};
  Op write_{*this, RingOp::kWrite};
  Op connect_{*this, RingOp::kConnect};
  msghdr message_{};
  iovec iov_[2]{};
  std::unique_ptr<char[]> ahead_;
  UniqueFd fd_;  // the socket's, once it is gone and operations are pending
};

absl::StatusOr<std::unique_ptr<AsyncSocket>> AsyncSocket::Create(Dispatcher& dispatcher,
                                                                 UniqueFd fd, bool connecting) {
  // The constructor is private (registration can fail), hence no make_unique.
  std::unique_ptr<AsyncSocket> socket(new AsyncSocket(dispatcher, std::move(fd), connecting));
  if (connecting) socket->writable_ = false;
  uint32_t interest = Dispatcher::kReadWrite;
  if (IoRing* ring = dispatcher.ring(); ring != nullptr) {
    // Reads and writes go through the ring; readiness is wanted for hang-ups only (a client
    // leaving while nothing reads from it), and quiet() holds until one.
    socket->ring_ops_ = new RingOps(*ring, socket.get());
    socket->readable_ = false;
    interest = kIoHangup;
  }
  if (absl::Status status = dispatcher.RegisterFd(socket->fd(), socket.get(), interest);
      !status.ok()) {
    return status;
  }
  return socket;
}

AsyncSocket::~AsyncSocket() {
  if (fd_.valid()) (void)dispatcher_.Unregister(fd_.get());
  // With operations pending, the ring's share keeps the fd open until they are over.
  if (ring_ops_ != nullptr) ring_ops_->Orphan(std::move(fd_));
}

AsyncSocket::ReadAwaiter AsyncSocket::Read(char* buffer, size_t size) {
  return ReadAwaiter(*this, buffer, size);
}

AsyncSocket::WriteAwaiter AsyncSocket::Write(absl::string_view data, absl::string_view more) {
  return WriteAwaiter(*this, data, more);
}

AsyncSocket::ConnectAwaiter AsyncSocket::Connect() { return ConnectAwaiter(*this); }

int AsyncSocket::WriteAwaiter::Unwritten(iovec out[2]) const {
  int count = 0;
  size_t skip = written_;
  for (absl::string_view piece : pieces_) {
    if (skip >= piece.size()) {
      skip -= piece.size();
      continue;
    }
    out[count].iov_base = const_cast<char*>(piece.data() + skip);
    out[count].iov_len = piece.size() - skip;
    ++count;
    skip = 0;
  }
  return count;
}

bool AsyncSocket::TryRead(ReadAwaiter& read) {
  if (ring_ops_ != nullptr) return QueueRead(read);
  if (!readable_) return false;
  read.result_ = ReadSome(fd_.get(), read.buffer_, read.size_);
  if (read.result_.kind == IoResult::Kind::kAgain) {
    readable_ = false;
    return false;
  }
  // A short read drained the receive queue: the next edge says when more has come.
  if (read.result_.data() && read.result_.bytes < read.size_) readable_ = false;
  return true;
}

bool AsyncSocket::TryWrite(WriteAwaiter& write) {
  if (ring_ops_ != nullptr) return QueueWrite(write);
  if (!writable_) return false;
  const size_t total = write.pieces_[0].size() + write.pieces_[1].size();
  while (write.written_ < total) {
    iovec buffers[2];
    const int count = write.Unwritten(buffers);
    const IoResult r = WriteSome(fd_.get(), absl::MakeConstSpan(buffers, count));
    if (r.kind == IoResult::Kind::kAgain) {
      writable_ = false;
      return false;
    }
    if (!r.data()) {
      write.result_ = r;
      return true;
    }
    write.written_ += r.bytes;
  }
  write.result_.kind = IoResult::Kind::kData;
  write.result_.bytes = total;
  return true;
}

bool AsyncSocket::QueueRead(ReadAwaiter& read) {
  if (read.size_ == 0) {
    read.result_ = IoResult{};
    return true;
  }
  if (ahead_ready_) {
    TakeAhead(read);
    return true;
  }
  if (ahead_active_) return false;  // its completion serves this read
  RingOps::Op& op = ring_ops_->op(RingOp::kRead);
  if (!ring_ops_->ring().Recv(fd_.get(), read.buffer_, read.size_, &op)) {
    read.result_ = Error(ENOBUFS);
    return true;
  }
  op.busy = true;
  return false;
}

bool AsyncSocket::QueueWrite(WriteAwaiter& write) {
  iovec* iov = ring_ops_->iov();
  const int count = write.Unwritten(iov);
  if (count == 0) {
    write.result_.kind = IoResult::Kind::kData;
    write.result_.bytes = write.written_;
    return true;
  }
  msghdr& message = ring_ops_->message();
  message = msghdr{};
  message.msg_iov = iov;
  message.msg_iovlen = static_cast<size_t>(count);
  RingOps::Op& op = ring_ops_->op(RingOp::kWrite);
  if (!ring_ops_->ring().SendMsg(fd_.get(), &message, &op)) {
    write.result_ = Error(ENOBUFS);
    return true;
  }
  op.busy = true;
  return false;
}

bool AsyncSocket::WaitForConnect() {
  if (ring_ops_ == nullptr) return true;  // epoll: the writable edge says it
  RingOps::Op& op = ring_ops_->op(RingOp::kConnect);
  if (ring_ops_->ring().PollOnce(fd_.get(), POLLOUT, &op)) {
    op.busy = true;
    return true;
  }
  connector_->status_ = absl::ErrnoToStatus(ENOBUFS, "connect");
  connector_ = nullptr;
  return false;
}

void AsyncSocket::ReadAhead() {
  if (ring_ops_ == nullptr || ahead_active_ || ahead_ready_ || reader_ != nullptr) return;
  RingOps::Op& op = ring_ops_->op(RingOp::kRead);
  if (op.busy) return;
  if (!ring_ops_->ring().Recv(fd_.get(), ring_ops_->ahead(), RingOps::kAheadSize, &op)) {
    readable_ = true;  // unwatched: not quiet, so a pool does not trust it
    return;
  }
  op.busy = true;
  ahead_active_ = true;
  readable_ = false;
}

void AsyncSocket::TakeAhead(ReadAwaiter& read) {
  if (!ahead_result_.data()) {
    read.result_ = ahead_result_;  // EOF or an error: said once, as a read would
  } else {
    const size_t n = std::min(read.size_, ahead_result_.bytes - ahead_offset_);
    std::memcpy(read.buffer_, ring_ops_->ahead() + ahead_offset_, n);
    ahead_offset_ += n;
    read.result_ = IoResult{};
    read.result_.bytes = n;
    if (ahead_offset_ < ahead_result_.bytes) return;
  }
  ahead_ready_ = false;
  readable_ = false;  // all taken: quiet again until something new comes
}

void AsyncSocket::OnRingComplete(RingOp op, int32_t result, int cancel_error) {
  switch (op) {
    case RingOp::kRead: {
      if (ahead_active_) {
        ahead_active_ = false;
        ahead_ready_ = true;
        ahead_offset_ = 0;
        ahead_result_ = IoResult{};
        if (cancel_error != 0) {
          ahead_result_ = Error(cancel_error);
        } else if (result > 0) {
          ahead_result_.bytes = static_cast<size_t>(result);
        } else if (result == 0) {
          ahead_result_.kind = IoResult::Kind::kEof;
        } else {
          ahead_result_ = Error(-result);
        }
        readable_ = true;  // not quiet: something came (or the connection ended)
        ReadAwaiter* read = std::exchange(reader_, nullptr);
        if (read == nullptr) return;
        TakeAhead(*read);
        read->waiting_.resume();  // last: it may destroy this socket
        return;
      }
      ReadAwaiter* read = std::exchange(reader_, nullptr);
      if (read == nullptr) return;
      if (cancel_error != 0) {
        read->result_ = Error(cancel_error);
      } else if (result > 0) {
        read->result_ = IoResult{};
        read->result_.bytes = static_cast<size_t>(result);
      } else if (result == 0) {
        read->result_.kind = IoResult::Kind::kEof;
      } else {
        read->result_ = Error(-result);
      }
      read->waiting_.resume();  // last: it may destroy this socket
      return;
    }
    case RingOp::kWrite: {
      WriteAwaiter* write = writer_;
      if (write == nullptr) return;
      if (cancel_error != 0 || result < 0) {
        writer_ = nullptr;
        write->result_ = Error(cancel_error != 0 ? cancel_error : -result);
        write->waiting_.resume();
        return;
      }
      write->written_ += static_cast<size_t>(result);
      // A short send (a full send buffer): queue the rest.
      if (!QueueWrite(*write)) return;
      writer_ = nullptr;
      write->waiting_.resume();
      return;
    }
    case RingOp::kConnect: {
      connecting_ = false;
      if (cancel_error != 0) {
        connect_status_ = absl::ErrnoToStatus(cancel_error, "connect");
      } else {
        connect_status_ = ConnectResult(fd_.get());
        if (connect_status_.ok() && result >= 0 && (result & (POLLHUP | POLLERR)) != 0) {
          connect_status_ = absl::UnavailableError("connection hung up");
        }
      }
      ConnectAwaiter* connect = std::exchange(connector_, nullptr);
      if (connect == nullptr) return;
      connect->status_ = connect_status_;
      connect->waiting_.resume();
      return;
    }
  }
}

void AsyncSocket::OnReadable() {
  readable_ = true;
  ReadAwaiter* read = reader_;
  if (read == nullptr || !TryRead(*read)) return;
  reader_ = nullptr;
  read->waiting_.resume();  // last: it may destroy this socket
}

void AsyncSocket::OnWritable() {
  writable_ = true;
  std::coroutine_handle<> connected;
  if (connecting_) {
    connecting_ = false;
    connect_status_ = ConnectResult(fd_.get());
    if (ConnectAwaiter* connect = std::exchange(connector_, nullptr)) {
      connect->status_ = connect_status_;
      connected = connect->waiting_;
    }
  }
  std::coroutine_handle<> wrote;
  if (WriteAwaiter* write = writer_; write != nullptr && TryWrite(*write)) {
    writer_ = nullptr;
    wrote = write->waiting_;
  }
  ResumeAll(connected, wrote, {});
}

void AsyncSocket::OnHangup(bool error) {
  (void)error;
  hung_up_ = true;
  if (TimerCallback watch = std::exchange(on_hangup_, {})) watch();
  // With the ring, operations in the kernel learn of it themselves (a read its EOF or error,
  // a write its error).
  if (ring_ops_ != nullptr) return;
  // Whatever waits learns it now: a read finds the EOF or the error, a write the error. (A
  // reader whose peer only half-closed reads the bytes still queued first.)
  readable_ = true;
  writable_ = true;
  std::coroutine_handle<> connected;
  if (connecting_) {
    connecting_ = false;
    connect_status_ = ConnectResult(fd_.get());
    if (connect_status_.ok()) connect_status_ = absl::UnavailableError("connection hung up");
    if (ConnectAwaiter* connect = std::exchange(connector_, nullptr)) {
      connect->status_ = connect_status_;
      connected = connect->waiting_;
    }
  }
  std::coroutine_handle<> read_done;
  if (ReadAwaiter* read = reader_; read != nullptr && TryRead(*read)) {
    reader_ = nullptr;
    read_done = read->waiting_;
  }
  std::coroutine_handle<> write_done;
  if (WriteAwaiter* write = writer_; write != nullptr && TryWrite(*write)) {
    writer_ = nullptr;
    write_done = write->waiting_;
  }
  ResumeAll(connected, read_done, write_done);
}

bool AsyncSocket::Cancel(int error) {
  if (ring_ops_ != nullptr) {
    // The operations end when the kernel lets go of their buffers (OnRingComplete).
    bool any = false;
    for (RingOp kind : {RingOp::kConnect, RingOp::kRead, RingOp::kWrite}) {
      const bool waiting = kind == RingOp::kConnect ? connector_ != nullptr
                           : kind == RingOp::kRead  ? reader_ != nullptr
                                                    : writer_ != nullptr;
      RingOps::Op& op = ring_ops_->op(kind);
      if (!waiting || !op.busy) continue;
      any = true;
      op.cancel_error = error;
      (void)ring_ops_->ring().CancelOp(&op);
    }
    return any;
  }
  std::coroutine_handle<> connected;
  if (ConnectAwaiter* connect = std::exchange(connector_, nullptr)) {
    connect->status_ = absl::ErrnoToStatus(error, "connect");
    connected = connect->waiting_;
  }
  std::coroutine_handle<> read_done;
  if (ReadAwaiter* read = std::exchange(reader_, nullptr)) {
    read->result_ = Error(error);
    read_done = read->waiting_;
  }
  std::coroutine_handle<> write_done;
  if (WriteAwaiter* write = std::exchange(writer_, nullptr)) {
    write->result_ = Error(error);
    write_done = write->waiting_;
  }
  const bool any = connected || read_done || write_done;
  ResumeAll(connected, read_done, write_done);
  return any;
}

bool Alarm::Cancel() {
  if (!waiting_) return false;
  timer_.Cancel();
  fired_ = false;
  std::exchange(waiting_, {}).resume();
  return true;
}

void Alarm::WakeSoon() {
  if (waiting_)
    timer_.ArmAfter(MonotonicDuration::zero(), TimerCallback::Bind<&Alarm::OnTimer>(this));
}

void Alarm::OnTimer() {
  fired_ = true;
  if (waiting_) std::exchange(waiting_, {}).resume();
}

}  // namespace sluice::gateway::event
