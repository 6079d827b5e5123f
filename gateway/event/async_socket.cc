#include "gateway/event/async_socket.h"

#include <cerrno>
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

absl::StatusOr<std::unique_ptr<AsyncSocket>> AsyncSocket::Create(Dispatcher& dispatcher,
                                                                 UniqueFd fd, bool connecting) {
  // The constructor is private (registration can fail), hence no make_unique.
  std::unique_ptr<AsyncSocket> socket(new AsyncSocket(dispatcher, std::move(fd), connecting));
  if (connecting) socket->writable_ = false;
  if (absl::Status status = dispatcher.RegisterFd(socket->fd(), socket.get()); !status.ok()) {
    return status;
  }
  return socket;
}

AsyncSocket::~AsyncSocket() {
  if (fd_.valid()) (void)dispatcher_.Unregister(fd_.get());
}

AsyncSocket::ReadAwaiter AsyncSocket::Read(char* buffer, size_t size) {
  return ReadAwaiter(*this, buffer, size);
}

AsyncSocket::WriteAwaiter AsyncSocket::Write(absl::string_view data, absl::string_view more) {
  return WriteAwaiter(*this, data, more);
}

AsyncSocket::ConnectAwaiter AsyncSocket::Connect() { return ConnectAwaiter(*this); }

bool AsyncSocket::TryRead(ReadAwaiter& read) {
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
  if (!writable_) return false;
  const size_t total = write.pieces_[0].size() + write.pieces_[1].size();
  while (write.written_ < total) {
    iovec buffers[2];
    int count = 0;
    size_t skip = write.written_;
    for (absl::string_view piece : write.pieces_) {
      if (skip >= piece.size()) {
        skip -= piece.size();
        continue;
      }
      buffers[count].iov_base = const_cast<char*>(piece.data() + skip);
      buffers[count].iov_len = piece.size() - skip;
      ++count;
      skip = 0;
    }
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
