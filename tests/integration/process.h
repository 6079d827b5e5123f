#pragma once

// Runs a real program for an integration test: captures the line it prints once it is
// listening, keeps its stderr in a log file for failure messages, and stops it with
// SIGTERM (then SIGKILL) so no test leaves a process behind.

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace sluice::testing {

class Process {
 public:
  Process() = default;
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  ~Process() { Stop(); }

  // Starts `argv` and waits (at most `timeout`) for a stdout line starting with
  // `ready_prefix`; returns false, with the reason in error(), if none comes.
  bool Start(const std::vector<std::string>& argv, const std::string& ready_prefix,
             absl::Duration timeout = absl::Seconds(20));
  // SIGTERM, wait up to `grace`, then SIGKILL. Returns the exit status (-1 if killed).
  int Stop(absl::Duration grace = absl::Seconds(10));
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }

  // key=value fields of the ready line, e.g. "grpc" -> "127.0.0.1:41234".
  const std::map<std::string, std::string>& ready_fields() const { return fields_; }
  std::string Field(const std::string& key) const;
  const std::string& error() const { return error_; }
  // What the program wrote to stderr so far.
  std::string Log() const;

 private:
  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  std::string log_path_;
  std::map<std::string, std::string> fields_;
  std::string error_;
};

// A fresh temporary directory, removed with the object.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string Write(const std::string& name, const std::string& contents) const;

 private:
  std::string path_;
};

// GET http://address/path on loopback; returns the body, or "" on failure.
std::string HttpGet(const std::string& address, const std::string& path);

// One HTTP/1.1 exchange on a fresh connection (Connection: close; Host is the address
// unless `headers` names one), raw enough to see what
// a proxy or upstream really did: the status, headers and body, or that the peer closed
// without answering.
struct HttpResult {
  bool answered = false;  // a status line arrived
  int status = 0;
  std::string headers;                                // raw header block
  std::string body;                                   // as received (may be cut short)
  std::string Header(const std::string& name) const;  // first value, case-insensitive
};
HttpResult HttpExchange(const std::string& address, const std::string& method,
                        const std::string& target,
                        const std::vector<std::pair<std::string, std::string>>& headers = {},
                        const std::string& body = "");

// Writes `bytes` as they are on a fresh connection and reads until the peer closes or
// `timeout` passes without data: for malformed requests and pipelining.
struct RawResult {
  bool connected = false;
  bool closed_by_peer = false;  // false: the read timed out with the connection open
  bool reset_by_peer = false;   // the connection ended with a reset (RST), not an orderly close
  std::string received;
};
RawResult RawExchange(const std::string& address, const std::string& bytes,
                      absl::Duration timeout = absl::Seconds(5));
// The same with `pieces` written one by one, `pause` apart: for slow uploads.
RawResult RawExchangeInPieces(const std::string& address, const std::vector<std::string>& pieces,
                              absl::Duration pause, absl::Duration timeout = absl::Seconds(5));

// A loopback TCP port that was free a moment ago (bind to port 0, read it, close): for
// programs that cannot report the port they picked.
// What a program that ran to its end did.
struct Ran {
  int exit_code = -1;  // -1: killed, or did not end within the timeout
  std::string out;
  std::string err;
};

// Runs a program to its end (at most `timeout`) with `env` added to the environment (from
// which every inherited SLUICE_* variable is left out, so a developer's settings cannot change
// a test), and returns its exit code, stdout and stderr.
Ran RunToEnd(const std::vector<std::string>& argv, const std::vector<std::string>& env = {},
             absl::Duration timeout = absl::Seconds(20));

int FreePort();

// Percent-encodes everything but unreserved characters, for query strings.
std::string UrlEncode(const std::string& text);

// The sum of every sample of metric `name` in Prometheus text exposition `text` whose label
// set contains `labels` (e.g. `reason="consecutive_5xx"`); 0 when there is none.
double SumMetric(const std::string& text, const std::string& name, const std::string& labels = "");

// How many requests the sluice-stub at `address` has answered (its /stub/stats), or -1.
int64_t StubReceived(const std::string& address);
// Any numeric field of that stub's /stub/stats ("received", "open_connections"), or -1.
int64_t StubStat(const std::string& address, const std::string& key);

// Waits (at most `timeout`) until the gateway whose admin port is `admin` says "serving" on
// /healthz, that is, its decision streams are up. Returns whether it did.
bool WaitForGatewayServing(const std::string& admin, absl::Duration timeout = absl::Seconds(10));

// Waits until process `pid` is in `state` (/proc/PID/stat: 'T' stopped, 'S' sleeping, ...).
// A signal such as SIGSTOP takes effect a little after kill() returns.
bool WaitForProcessState(pid_t pid, char state, absl::Duration timeout = absl::Seconds(2));

// Starts a real Prometheus (Debian's /usr/bin/prometheus) on a free loopback port with
// `config_file` (relative paths in it resolve from its folder) and its data in `data_dir`;
// waits until it is ready. Returns its address, or "" with the reason in `process.error()`
// or its log.
std::string StartPrometheus(Process& process, const std::string& config_file,
                            const std::string& data_dir);

// A real etcd cluster (Debian's /usr/bin/etcd) of several members on free loopback ports, with
// short heartbeat and election timings so that tests of failures stay short. Stops every
// member when destroyed.
class EtcdCluster {
 public:
  EtcdCluster() = default;
  EtcdCluster(const EtcdCluster&) = delete;
  EtcdCluster& operator=(const EtcdCluster&) = delete;
  ~EtcdCluster();

  // Starts `members` members with their data under `dir` and waits (at most 30 s) until each
  // says it is healthy; once more on new ports if not. False, with the reasons in `error`,
  // otherwise.
  bool Start(int members, const std::string& dir, std::string* error);
  // "127.0.0.1:P1,127.0.0.1:P2,...": every member's client address.
  std::string Endpoints() const;
  std::string Endpoint(int member) const;
  // SIGTERM and wait; Restart starts it again on its data.
  void Stop(int member);
  bool Restart(int member, std::string* error);
  Process& process(int member) { return *members_[member].process; }

 private:
  struct Member {
    std::string name;
    int client_port = 0;
    int peer_port = 0;
    std::unique_ptr<Process> process;
  };
  bool StartOnce(int members, const std::string& dir, std::string* error);
  void StopAll();
  bool Launch(int member, bool existing, std::string* error);
  bool WaitHealthy(int member, std::string* error);

  std::string dir_;
  // The members' data: in a folder of /dev/shm (tmpfs) when there is one, whose fsyncs cost
  // nothing, so that a machine whose disk stalls under the other tests (seen: 33% iowait)
  // does not keep etcd from electing a leader; `dir_` otherwise. Removed with the cluster.
  std::string data_dir_;
  bool own_data_dir_ = false;
  std::string initial_cluster_;
  std::vector<Member> members_;
};

}  // namespace sluice::testing
