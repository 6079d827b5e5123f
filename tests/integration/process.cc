#include "tests/integration/process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

namespace sluice::testing {

bool Process::Start(const std::vector<std::string>& argv, const std::string& ready_prefix,
                    absl::Duration timeout) {
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) {
    error_ = "pipe failed";
    return false;
  }
  char log_template[] = "/tmp/sluice-test-log-XXXXXX";
  const int log_fd = mkstemp(log_template);
  log_path_ = log_template;
  const pid_t parent = getpid();
  pid_ = fork();
  if (pid_ == 0) {
    // Should the test binary die (a crash, ctest's timeout), its servers die with it
    // instead of living on with their ports; a parent gone before prctl is seen here.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    dup2(out[1], STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(out[1]);
  close(log_fd);
  stdout_fd_ = out[0];
  const absl::Time deadline = absl::Now() + timeout;
  std::string buffer;
  while (absl::Now() < deadline) {
    pollfd p{stdout_fd_, POLLIN, 0};
    const int ms = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
    if (poll(&p, 1, std::max(ms, 1)) <= 0) continue;
    char chunk[512];
    const ssize_t n = read(stdout_fd_, chunk, sizeof(chunk));
    if (n <= 0) break;
    buffer.append(chunk, static_cast<size_t>(n));
    size_t eol;
    while ((eol = buffer.find('\n')) != std::string::npos) {
      const std::string line = buffer.substr(0, eol);
      buffer.erase(0, eol + 1);
      if (line.rfind(ready_prefix, 0) == 0) {
        for (absl::string_view field : absl::StrSplit(line, ' ')) {
          const size_t eq = field.find('=');
          if (eq != absl::string_view::npos) {
            fields_[std::string(field.substr(0, eq))] = std::string(field.substr(eq + 1));
          }
        }
        return true;
      }
    }
  }
  error_ = absl::StrCat("no \"", ready_prefix, "\" line from ", argv[0], "; its log:\n", Log());
  Stop();
  return false;
}

int Process::Stop(absl::Duration grace) {
  if (pid_ <= 0) return 0;
  kill(pid_, SIGTERM);
  int status = 0;
  const absl::Time deadline = absl::Now() + grace;
  int result = -1;
  while (absl::Now() < deadline) {
    const pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      result = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      break;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  if (absl::Now() >= deadline) {
    kill(pid_, SIGKILL);
    waitpid(pid_, &status, 0);
  }
  pid_ = -1;
  if (stdout_fd_ >= 0) close(stdout_fd_);
  stdout_fd_ = -1;
  return result;
}

std::string Process::Field(const std::string& key) const {
  auto it = fields_.find(key);
  return it == fields_.end() ? "" : it->second;
}

std::string Process::Log() const {
  std::ifstream in(log_path_);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TempDir::TempDir() {
  char dir_template[] = "/tmp/sluice-test-XXXXXX";
  path_ = mkdtemp(dir_template);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string TempDir::Write(const std::string& name, const std::string& contents) const {
  const std::string path = absl::StrCat(path_, "/", name);
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  // Write then rename, as editors and deploy tools do, so a watcher never sees half a file.
  const std::string tmp = path + ".tmp";
  std::ofstream(tmp) << contents;
  std::filesystem::rename(tmp, path);
  return path;
}

namespace {

int Connect(const std::string& address) {
  const size_t colon = address.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port)) return -1;
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, address.substr(0, colon).c_str(), &addr.sin_addr);
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

std::string HttpResult::Header(const std::string& name) const {
  for (absl::string_view line : absl::StrSplit(headers, "\r\n")) {
    const size_t colon = line.find(':');
    if (colon == absl::string_view::npos) continue;
    if (absl::EqualsIgnoreCase(line.substr(0, colon), name)) {
      return std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
    }
  }
  return "";
}

HttpResult HttpExchange(const std::string& address, const std::string& method,
                        const std::string& target,
                        const std::vector<std::pair<std::string, std::string>>& headers,
                        const std::string& body) {
  HttpResult result;
  const int fd = Connect(address);
  if (fd < 0) return result;
  bool has_host = false;
  for (const auto& [k, v] : headers) has_host = has_host || absl::EqualsIgnoreCase(k, "host");
  std::string request = absl::StrCat(method, " ", target, " HTTP/1.1\r\n");
  if (!has_host) absl::StrAppend(&request, "Host: ", address, "\r\n");
  absl::StrAppend(&request, "Connection: close\r\n");
  for (const auto& [k, v] : headers) absl::StrAppend(&request, k, ": ", v, "\r\n");
  if (!body.empty()) absl::StrAppend(&request, "Content-Length: ", body.size(), "\r\n");
  absl::StrAppend(&request, "\r\n", body);
  (void)write(fd, request.data(), request.size());
  std::string response;
  char buf[4096];
  ssize_t n;
  // EINTR: another thread's child process ending (SIGCHLD) must not cut the answer short.
  while ((n = read(fd, buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR)) {
    if (n > 0) response.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  const size_t end = response.find("\r\n\r\n");
  if (response.rfind("HTTP/1.", 0) != 0 || end == std::string::npos) return result;
  result.answered = true;
  absl::SimpleAtoi(response.substr(9, 3), &result.status);
  result.headers = response.substr(0, end);
  result.body = response.substr(end + 4);
  return result;
}

RawResult RawExchange(const std::string& address, const std::string& bytes,
                      absl::Duration timeout) {
  return RawExchangeInPieces(address, {bytes}, absl::ZeroDuration(), timeout);
}

RawResult RawExchangeInPieces(const std::string& address, const std::vector<std::string>& pieces,
                              absl::Duration pause, absl::Duration timeout) {
  RawResult result;
  const int fd = Connect(address);
  if (fd < 0) return result;
  result.connected = true;
  timeval tv{static_cast<time_t>(absl::ToInt64Seconds(timeout)),
             static_cast<suseconds_t>(absl::ToInt64Microseconds(timeout) % 1000000)};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  for (size_t i = 0; i < pieces.size(); ++i) {
    if (i > 0) absl::SleepFor(pause);
    // A peer that answered and closed early must fail the write, not kill the test binary
    // with SIGPIPE; what it answered is still read below.
    size_t sent = 0;
    while (sent < pieces[i].size()) {
      const ssize_t n = ::send(fd, pieces[i].data() + sent, pieces[i].size() - sent, MSG_NOSIGNAL);
      if (n <= 0) break;
      sent += static_cast<size_t>(n);
    }
    if (sent < pieces[i].size()) break;
  }
  char buf[4096];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n > 0) {
      result.received.append(buf, static_cast<size_t>(n));
      continue;
    }
    result.closed_by_peer = n == 0 || errno == ECONNRESET;
    result.reset_by_peer = n < 0 && errno == ECONNRESET;
    break;
  }
  close(fd);
  return result;
}

std::string HttpGet(const std::string& address, const std::string& path) {
  const HttpResult r = HttpExchange(address, "GET", path);
  return r.answered ? r.body : "";
}

namespace {

std::string WholeFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

Ran RunToEnd(const std::vector<std::string>& argv, const std::vector<std::string>& env,
             absl::Duration timeout) {
  TempDir dir;
  const std::string out_path = dir.path() + "/out", err_path = dir.path() + "/err";
  std::vector<std::string> environment = env;
  for (char** e = environ; *e != nullptr; ++e) {
    if (!absl::StartsWith(*e, "SLUICE_")) environment.push_back(*e);
  }
  std::vector<char*> args, envp;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  for (const std::string& e : environment) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  const int out_fd = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  const int err_fd = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  const pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // no program outlives a crashed test
    dup2(out_fd, STDOUT_FILENO);
    dup2(err_fd, STDERR_FILENO);
    execve(args[0], args.data(), envp.data());
    _exit(127);
  }
  close(out_fd);
  close(err_fd);
  Ran ran;
  const absl::Time give_up = absl::Now() + timeout;
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (absl::Now() > give_up) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      status = -1;
      break;
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  if (status != -1 && WIFEXITED(status)) ran.exit_code = WEXITSTATUS(status);
  ran.out = WholeFile(out_path);
  ran.err = WholeFile(err_path);
  return ran;
}

int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

std::string UrlEncode(const std::string& text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

double SumMetric(const std::string& text, const std::string& name, const std::string& labels) {
  double sum = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!absl::StartsWith(line, name) || line.size() <= name.size()) continue;
    const char next = line[name.size()];
    if (next != '{' && next != ' ') continue;
    if (!labels.empty() && !absl::StrContains(line, labels)) continue;
    double value = 0;
    if (absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &value)) sum += value;
  }
  return sum;
}

int64_t StubStat(const std::string& address, const std::string& key) {
  const std::string stats = HttpGet(address, "/stub/stats");
  const std::string field = absl::StrCat("\"", key, "\":");
  const size_t at = stats.find(field);
  int64_t n = -1;
  if (at != std::string::npos) {
    const size_t start = at + field.size();
    const size_t end = stats.find_first_of(",}", start);
    absl::SimpleAtoi(stats.substr(start, end - start), &n);
  }
  return n;
}

int64_t StubReceived(const std::string& address) { return StubStat(address, "received"); }

bool WaitForProcessState(pid_t pid, char state, absl::Duration timeout) {
  const absl::Time give_up = absl::Now() + timeout;
  while (absl::Now() < give_up) {
    std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
    std::string line;
    std::getline(stat, line);
    // "PID (comm) STATE ...": comm may hold spaces and parentheses, the last ')' ends it.
    const size_t paren = line.rfind(')');
    if (paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] == state) {
      return true;
    }
    absl::SleepFor(absl::Milliseconds(1));
  }
  return false;
}

bool WaitForGatewayServing(const std::string& admin, absl::Duration timeout) {
  const absl::Time give_up = absl::Now() + timeout;
  while (absl::Now() < give_up) {
    if (absl::StrContains(HttpGet(admin, "/healthz"), "\"serving\"")) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return false;
}

std::string StartPrometheus(Process& process, const std::string& config_file,
                            const std::string& data_dir) {
  const std::filesystem::path config(config_file);
  const std::string address = absl::StrCat("127.0.0.1:", FreePort());
  // Prometheus prints nothing on stdout: the shell says it is starting, then becomes it.
  if (!process.Start({"/bin/sh", "-c",
                      absl::StrCat("cd ", config.parent_path().string(),
                                   " && echo listening; exec prometheus --config.file=",
                                   config.filename().string(), " --storage.tsdb.path=", data_dir,
                                   " --web.listen-address=", address, " --log.level=warn")},
                     "listening")) {
    return "";
  }
  const absl::Time give_up = absl::Now() + absl::Seconds(30);
  while (absl::Now() < give_up) {
    if (!HttpGet(address, "/-/ready").empty()) return address;
    absl::SleepFor(absl::Milliseconds(100));
  }
  return "";
}

EtcdCluster::~EtcdCluster() { StopAll(); }

void EtcdCluster::StopAll() {
  for (Member& m : members_) {
    if (m.process != nullptr) m.process->Stop(absl::Seconds(5));
  }
  members_.clear();
  if (own_data_dir_) {
    std::error_code ignored;
    std::filesystem::remove_all(data_dir_, ignored);
    own_data_dir_ = false;
  }
}

bool EtcdCluster::Start(int members, const std::string& dir, std::string* error) {
  // A second attempt on new ports and fresh data: what is tested is sluice on etcd, not etcd's
  // start, and on a machine whose I/O stalls under the other tests a member has been seen not
  // even to start its shell within 20 s (every process start stalled for minutes).
  std::string first_error;
  for (int attempt = 1; attempt <= 2; ++attempt) {
    if (StartOnce(members, dir, error)) return true;
    if (attempt == 1) {
      first_error = *error;
      StopAll();
    }
  }
  *error = absl::StrCat("twice: ", first_error, "; then ", *error);
  return false;
}

bool EtcdCluster::StartOnce(int members, const std::string& dir, std::string* error) {
  dir_ = dir;
  data_dir_ = dir;
  char shm_template[] = "/dev/shm/sluice-etcd-XXXXXX";
  if (const char* made = mkdtemp(shm_template); made != nullptr) {
    data_dir_ = made;
    own_data_dir_ = true;
  }
  members_.resize(members);
  std::vector<std::string> peers;
  for (int i = 0; i < members; ++i) {
    Member& m = members_[i];
    m.name = absl::StrCat("m", i);
    m.client_port = FreePort();
    m.peer_port = FreePort();
    peers.push_back(absl::StrCat(m.name, "=http://127.0.0.1:", m.peer_port));
  }
  initial_cluster_ = absl::StrJoin(peers, ",");
  for (int i = 0; i < members; ++i) {
    if (!Launch(i, /*existing=*/false, error)) return false;
  }
  for (int i = 0; i < members; ++i) {
    if (!WaitHealthy(i, error)) return false;
  }
  return true;
}

bool EtcdCluster::Launch(int member, bool existing, std::string* error) {
  Member& m = members_[member];
  m.process = std::make_unique<Process>();
  const std::string client = absl::StrCat("http://127.0.0.1:", m.client_port);
  const std::string peer = absl::StrCat("http://127.0.0.1:", m.peer_port);
  // etcd logs to stderr only: the shell says it is starting, then becomes it.
  const std::string command = absl::StrCat(
      "echo listening; exec etcd --name ", m.name, " --data-dir ", data_dir_, "/", m.name,
      " --listen-client-urls ", client, " --advertise-client-urls ", client, " --listen-peer-urls ",
      peer, " --initial-advertise-peer-urls ", peer, " --initial-cluster ", initial_cluster_,
      " --initial-cluster-state ", existing ? "existing" : "new",
      " --initial-cluster-token sluice-test --heartbeat-interval 50 --election-timeout 500",
      " --log-level warn");
  if (!m.process->Start({"/bin/sh", "-c", command}, "listening")) {
    *error = absl::StrCat("etcd ", m.name, ": ", m.process->error());
    return false;
  }
  return true;
}

bool EtcdCluster::WaitHealthy(int member, std::string* error) {
  const absl::Time give_up = absl::Now() + absl::Seconds(30);
  while (absl::Now() < give_up) {
    if (absl::StrContains(HttpGet(Endpoint(member), "/health"), "\"health\":\"true\"")) {
      return true;
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  *error = absl::StrCat("etcd ", members_[member].name,
                        " did not become healthy: ", members_[member].process->Log());
  return false;
}

std::string EtcdCluster::Endpoints() const {
  std::vector<std::string> out;
  for (size_t i = 0; i < members_.size(); ++i) out.push_back(Endpoint(static_cast<int>(i)));
  return absl::StrJoin(out, ",");
}

std::string EtcdCluster::Endpoint(int member) const {
  return absl::StrCat("127.0.0.1:", members_[member].client_port);
}

void EtcdCluster::Stop(int member) { members_[member].process->Stop(absl::Seconds(5)); }

bool EtcdCluster::Restart(int member, std::string* error) {
  return Launch(member, /*existing=*/true, error) && WaitHealthy(member, error);
}

}  // namespace sluice::testing
