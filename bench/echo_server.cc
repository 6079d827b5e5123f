// A gRPC server that echoes, built like sluice-server (callback API, one write in flight per
// stream with a queue behind it), so the difference in cost is the decision work itself.
//   usage: echo_server [--listen HOST:PORT]      prints: listening grpc=HOST:PORT

#include <signal.h>

#include <cstdio>
#include <deque>
#include <string>

#include "absl/synchronization/mutex.h"
#include "echo.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace {

class EchoStream final
    : public grpc::ServerBidiReactor<sluice::bench::EchoMessage, sluice::bench::EchoMessage> {
 public:
  EchoStream() { StartRead(&in_); }

  void OnReadDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    if (!ok) {
      read_done_ = true;
      MaybeFinish();
      return;
    }
    queue_.push_back(in_);
    if (!writing_) {
      writing_ = true;
      StartWrite(&queue_.front());
    }
    StartRead(&in_);
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    queue_.pop_front();
    writing_ = false;
    if (ok && !queue_.empty()) {
      writing_ = true;
      StartWrite(&queue_.front());
      return;
    }
    if (!ok) queue_.clear();
    MaybeFinish();
  }

  void OnDone() override { delete this; }

 private:
  void MaybeFinish() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (read_done_ && !writing_ && queue_.empty() && !finished_) {
      finished_ = true;
      Finish(grpc::Status::OK);
    }
  }

  sluice::bench::EchoMessage in_;
  absl::Mutex mu_;
  std::deque<sluice::bench::EchoMessage> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool read_done_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

class EchoService final : public sluice::bench::Echo::CallbackService {
  grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* context,
                                  const sluice::bench::EchoMessage* request,
                                  sluice::bench::EchoMessage* response) override {
    *response = *request;
    auto* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
  grpc::ServerBidiReactor<sluice::bench::EchoMessage, sluice::bench::EchoMessage>* Stream(
      grpc::CallbackServerContext*) override {
    return new EchoStream();
  }
};

}  // namespace

int main(int argc, char** argv) {
  std::string listen = "127.0.0.1:0";
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == "--listen") listen = argv[++i];
  }
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  EchoService service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    std::fprintf(stderr, "echo_server: cannot listen on %s\n", listen.c_str());
    return 1;
  }
  std::printf("listening grpc=127.0.0.1:%d\n", port);
  std::fflush(stdout);
  int sig = 0;
  sigwait(&signals, &sig);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  return 0;
}
