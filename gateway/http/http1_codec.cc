#include "gateway/http/http1_codec.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "llhttp.h"

namespace sluice::gateway::http {
namespace {

// Response code details, as Envoy names them where Envoy has a name.
constexpr absl::string_view kCodecError = "http1.codec_error";
constexpr absl::string_view kInvalidCharacters = "http1.invalid_characters";
constexpr absl::string_view kInvalidUrl = "http1.invalid_url";
constexpr absl::string_view kTooManyHeaders = "http1.too_many_headers";
constexpr absl::string_view kHeadersTooLarge = "http1.headers_too_large";
constexpr absl::string_view kPayloadTooLarge = "http1.payload_too_large";
constexpr absl::string_view kInvalidTransferEncoding = "http1.invalid_transfer_encoding";
constexpr absl::string_view kTransferEncodingNotAllowed = "http1.transfer_encoding_not_allowed";
constexpr absl::string_view kChunkedContentLength = "http1.content_length_and_chunked_not_allowed";
constexpr absl::string_view kMultipleContentLength = "http1.multiple_content_length";
constexpr absl::string_view kInvalidContentLength = "http1.invalid_content_length";
constexpr absl::string_view kMultipleHost = "http1.multiple_host";
constexpr absl::string_view kMissingHost = "http1.missing_host";
constexpr absl::string_view kInvalidHost = "http1.invalid_host";
constexpr absl::string_view kUnsupportedMethod = "http1.unsupported_method";
constexpr absl::string_view kConnectNotSupported = "http1.connect_not_supported";
constexpr absl::string_view kUnsupportedVersion = "http1.unsupported_version";
constexpr absl::string_view kEofMidMessage = "http1.eof_mid_message";
constexpr absl::string_view kEofBeforeHead = "http1.eof_before_head";
constexpr absl::string_view kEofMidBody = "http1.eof_mid_body";

// RFC 9110 5.6.2 tchar.
bool IsTchar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
         std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

// host [":" port] with the characters of RFC 3986 reg-name, IP-literal and port. Not a full
// grammar check: enough to refuse empty values, userinfo ("@"), whitespace and delimiters
// that would let a Host smuggle a path.
bool IsValidAuthority(absl::string_view authority) {
  if (authority.empty()) return false;
  for (const char c : authority) {
    if (absl::ascii_isalnum(static_cast<unsigned char>(c))) continue;
    if (c == '\0' || std::strchr("-._~!$&'()*+,;=:[]%", c) == nullptr) return false;
  }
  return true;
}

// "HTTP/" DIGIT "." DIGIT: a well-formed version, whether we speak it or not.
bool IsVersionSyntax(absl::string_view v) {
  return v.size() == 8 && v.substr(0, 5) == "HTTP/" && absl::ascii_isdigit(v[5]) && v[6] == '.' &&
         absl::ascii_isdigit(v[7]);
}

absl::StatusCode CodeFor(int http_status) {
  switch (http_status) {
    case 413:
    case 431:
      return absl::StatusCode::kResourceExhausted;
    case 501:
    case 505:
      return absl::StatusCode::kUnimplemented;
    default:
      return absl::StatusCode::kInvalidArgument;
  }
}

}  // namespace

namespace internal {

// llhttp, even built strict, lets through a few things RFC 9112 forbids and request smuggling
// feeds on: a bare LF ending the start line or the header section, obsolete line folding
// (which it reports as more value bytes), a request line with extra spaces, and any protocol
// name ("RTSP/1.0"). It also does not tell the protocol name apart from the version. This
// scanner checks the line structure of a head or trailer section before llhttp sees the
// bytes and keeps the start line's first and version tokens. It stops at the blank line that
// ends the section, so it never reads into a body or a pipelined message, and it keeps no
// buffer: a chunk boundary can fall anywhere.
class HeadScanner {
 public:
  enum class Section { kRequestHead, kResponseHead, kTrailers };

  void Start(Section section) {
    section_ = section;
    active_ = true;
    state_ = State::kLineStart;
    start_line_done_ = section == Section::kTrailers;
    spaces_ = 0;
    prev_cr_ = false;
    first_.size = 0;
    version_.size = 0;
    method_is_token_ = true;
  }
  void Stop() { active_ = false; }
  bool active() const { return active_; }

  // Scans `bytes` up to the end of the section (after which active() is false). Returns
  // nullptr, or what is wrong.
  const char* Scan(absl::string_view bytes);

  // The start line's first token: the method, or a response's version.
  absl::string_view first_token() const { return first_.view(); }
  bool method_is_token() const { return method_is_token_ && first_.size > 0; }
  // "HTTP/1.1" or whatever the start line has in its place; empty if absurdly long.
  absl::string_view version_token() const {
    return section_ == Section::kRequestHead ? version_.view() : first_.view();
  }

 private:
  enum class State { kLineStart, kStartLine, kStartLineCr, kFieldLine, kBlankLineCr };

  struct Token {
    static constexpr size_t kCapacity = 16;
    char bytes[kCapacity];
    size_t size = 0;
    void Push(char c) {
      if (size < kCapacity) bytes[size] = c;
      if (size <= kCapacity) ++size;
    }
    absl::string_view view() const {
      return size <= kCapacity ? absl::string_view(bytes, size) : absl::string_view();
    }
  };

  Section section_ = Section::kRequestHead;
  bool active_ = false;
  State state_ = State::kLineStart;
  bool start_line_done_ = false;
  int spaces_ = 0;
  bool prev_cr_ = false;  // the previous chunk ended in a field line with CR
  Token first_;
  Token version_;
  bool method_is_token_ = true;
};

const char* HeadScanner::Scan(absl::string_view bytes) {
  const char* p = bytes.data();
  const size_t n = bytes.size();
  size_t i = 0;
  while (active_ && i < n) {
    const char c = p[i];
    switch (state_) {
      case State::kLineStart:
        if (c == '\r') {
          state_ = State::kBlankLineCr;
          ++i;
        } else if (c == '\n') {
          return "bare LF in the header section";
        } else if (c == ' ' || c == '\t') {
          return start_line_done_ ? "obsolete line folding" : "whitespace before the start line";
        } else {
          state_ = start_line_done_ ? State::kFieldLine : State::kStartLine;
        }
        break;
      case State::kBlankLineCr:
        if (c != '\n') return "CR without LF";
        ++i;
        if (start_line_done_) {
          active_ = false;  // the blank line that ends the section
        } else {
          state_ = State::kLineStart;  // an empty line before a request (RFC 9112 2.2)
        }
        break;
      case State::kStartLine:
        ++i;
        if (c == '\r') {
          state_ = State::kStartLineCr;
        } else if (c == '\n') {
          return "bare LF after the start line";
        } else if (c == ' ') {
          ++spaces_;
        } else if (c == '\t' && section_ == Section::kRequestHead) {
          return "tab in the request line";
        } else if (spaces_ == 0) {
          first_.Push(c);
          method_is_token_ = method_is_token_ && IsTchar(c);
        } else if (spaces_ == 2 && section_ == Section::kRequestHead) {
          version_.Push(c);
        }
        break;
      case State::kStartLineCr:
        if (c != '\n') return "CR without LF";
        ++i;
        // method SP request-target SP version: the target has no spaces, so anything else
        // is a malformed line that a lenient recipient might split differently.
        if (section_ == Section::kRequestHead && spaces_ != 2) return "malformed request line";
        start_line_done_ = true;
        state_ = State::kLineStart;
        break;
      case State::kFieldLine: {
        // CRs inside a line are llhttp's to refuse; only the LF ending it matters here.
        const void* lf = std::memchr(p + i, '\n', n - i);
        if (lf == nullptr) {
          prev_cr_ = p[n - 1] == '\r';
          i = n;
          break;
        }
        const size_t at = static_cast<const char*>(lf) - p;
        const bool cr = at > i ? p[at - 1] == '\r' : prev_cr_;
        if (!cr) return "bare LF in the header section";
        i = at + 1;
        state_ = State::kLineStart;
        break;
      }
    }
  }
  return nullptr;
}

// What the request and response decoders share: driving llhttp, pausing between messages,
// building the header maps, limits and errors.
class DecoderCore {
 public:
  DecoderCore(llhttp_type_t type, size_t max_header_bytes, size_t max_header_count, bool upstream)
      : max_header_bytes_(max_header_bytes),
        max_header_count_(max_header_count),
        upstream_(upstream) {
    llhttp_init(&parser_, type, &Settings());
    parser_.data = this;
  }
  virtual ~DecoderCore() = default;
  DecoderCore(const DecoderCore&) = delete;
  DecoderCore& operator=(const DecoderCore&) = delete;

  absl::Status Decode(absl::string_view bytes, size_t* consumed);
  absl::Status DecodeEof();
  void Resume();

  bool awaiting_resume() const { return awaiting_resume_; }
  bool in_message() const { return in_message_; }
  const DecodeError& error() const { return error_; }

 protected:
  // A new message starts: clear its head.
  virtual void BeginMessage() = 0;
  virtual HeaderMap& head_headers() = 0;
  // Pieces of the request-target or of the status reason.
  virtual void AppendStartLinePiece(absl::string_view piece) = 0;
  // Checks and delivers the head; returns what llhttp's on_headers_complete returns (0, or
  // 1 for "no body"), or -1 after Fail().
  virtual int HeadersComplete() = 0;
  // A 1xx response other than 101: not delivered, the final response follows.
  virtual bool interim() const { return false; }
  virtual uint64_t max_body_bytes() const { return 0; }
  virtual void DeliverData(absl::string_view data) = 0;
  virtual void DeliverTrailers(HeaderMap& trailers) = 0;
  virtual void DeliverComplete() = 0;
  // Bytes arrived while paused after a complete message.
  virtual void BytesWhilePaused() {}
  virtual absl::Status EofMidMessage() = 0;
  virtual HeadScanner::Section head_section() const = 0;

  // Records the error (answered with `status` downstream, 502 upstream) and returns it.
  absl::Status Fail(int status, absl::string_view detail, absl::string_view what);
  // Fail() from inside an llhttp callback: returns llhttp's error code.
  int FailInCallback(int status, absl::string_view detail, absl::string_view what) {
    (void)Fail(status, detail, what);
    return -1;
  }
  // An unsupported or malformed version.
  int FailVersion(absl::string_view what);

  llhttp_t parser_;
  HeadScanner scanner_;
  bool awaiting_resume_ = false;
  bool in_message_ = false;

 private:
  enum class Pause { kNone, kTrailers, kInterim, kMessageComplete };

  static const llhttp_settings_t& Settings();
  static DecoderCore& Self(llhttp_t* parser) { return *static_cast<DecoderCore*>(parser->data); }

  // llhttp callbacks.
  int OnMessageBegin();
  int OnStartLinePiece(absl::string_view piece);
  int OnHeaderField(absl::string_view piece);
  int OnHeaderFieldComplete();
  int OnHeaderValue(absl::string_view piece);
  int OnHeaderValueComplete();
  int OnHeadersComplete();
  int OnBody(absl::string_view piece);
  int OnChunkHeader();
  int OnMessageComplete();

  absl::Status FailFromParser(llhttp_errno_t err);
  HeaderMap& fields() { return in_trailers_ ? trailers_ : head_headers(); }
  void StartNextMessage() {
    llhttp_resume(&parser_);
    scanner_.Start(head_section());
  }

  const size_t max_header_bytes_;
  const size_t max_header_count_;
  const bool upstream_;

  HeaderMap trailers_;
  size_t header_bytes_ = 0;
  size_t header_count_ = 0;
  uint64_t body_bytes_ = 0;
  bool in_field_ = false;       // receiving a field's name
  size_t field_name_size_ = 0;  // of the field being received
  bool field_open_ = false;     // between a field's first name byte and its value's end
  bool in_trailers_ = false;
  bool in_parser_ = false;  // inside llhttp_execute/llhttp_finish, i.e. maybe in a callback
  bool resume_requested_ = false;
  Pause pause_ = Pause::kNone;
  absl::Status status_;
  DecodeError error_;
};

const llhttp_settings_t& DecoderCore::Settings() {
  static const llhttp_settings_t settings = [] {
    llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_message_begin = [](llhttp_t* p) { return Self(p).OnMessageBegin(); };
    s.on_url = [](llhttp_t* p, const char* at, size_t n) {
      return Self(p).OnStartLinePiece({at, n});
    };
    s.on_status = s.on_url;
    s.on_header_field = [](llhttp_t* p, const char* at, size_t n) {
      return Self(p).OnHeaderField({at, n});
    };
    s.on_header_field_complete = [](llhttp_t* p) { return Self(p).OnHeaderFieldComplete(); };
    s.on_header_value = [](llhttp_t* p, const char* at, size_t n) {
      return Self(p).OnHeaderValue({at, n});
    };
    s.on_header_value_complete = [](llhttp_t* p) { return Self(p).OnHeaderValueComplete(); };
    s.on_headers_complete = [](llhttp_t* p) { return Self(p).OnHeadersComplete(); };
    s.on_body = [](llhttp_t* p, const char* at, size_t n) { return Self(p).OnBody({at, n}); };
    s.on_chunk_header = [](llhttp_t* p) { return Self(p).OnChunkHeader(); };
    s.on_message_complete = [](llhttp_t* p) { return Self(p).OnMessageComplete(); };
    return s;
  }();
  return settings;
}

absl::Status DecoderCore::Fail(int status, absl::string_view detail, absl::string_view what) {
  if (!status_.ok()) return status_;  // the first error stands
  error_.status = upstream_ ? 502 : status;
  error_.detail = detail;
  error_.close_connection = true;
  status_ = absl::Status(CodeFor(status), absl::StrCat(detail, ": ", what));
  return status_;
}

int DecoderCore::FailVersion(absl::string_view what) {
  if (IsVersionSyntax(scanner_.version_token())) {
    return FailInCallback(505, kUnsupportedVersion, what);
  }
  return FailInCallback(400, kCodecError, what);
}

absl::Status DecoderCore::Decode(absl::string_view bytes, size_t* consumed) {
  *consumed = 0;
  if (!status_.ok()) return status_;
  size_t pos = 0;
  while (pos < bytes.size()) {
    if (awaiting_resume_) {
      BytesWhilePaused();
      break;
    }
    const absl::string_view rest = bytes.substr(pos);
    if (scanner_.active()) {
      if (const char* wrong = scanner_.Scan(rest)) {
        *consumed = pos;
        return Fail(400, kCodecError, wrong);
      }
    }
    in_parser_ = true;
    const llhttp_errno_t err = llhttp_execute(&parser_, rest.data(), rest.size());
    in_parser_ = false;
    if (err == HPE_OK) {
      pos = bytes.size();
      break;
    }
    const size_t used = llhttp_get_error_pos(&parser_) - rest.data();
    if (err == HPE_PAUSED && pause_ != Pause::kNone) {
      pos += used;
      switch (std::exchange(pause_, Pause::kNone)) {
        case Pause::kTrailers:
          // Paused right after the last-chunk line: the trailer section starts here.
          llhttp_resume(&parser_);
          scanner_.Start(HeadScanner::Section::kTrailers);
          break;
        case Pause::kInterim:
          StartNextMessage();
          break;
        case Pause::kMessageComplete:
          if (std::exchange(resume_requested_, false)) StartNextMessage();
          break;
        case Pause::kNone:
          break;
      }
      continue;
    }
    if (err == HPE_PAUSED_UPGRADE && status_.ok()) {
      // llhttp stops once more after an upgrade request when resumed. The caller resumed,
      // so the upgrade was refused and the connection goes on as HTTP/1.1.
      pos += used;
      llhttp_resume_after_upgrade(&parser_);
      continue;
    }
    *consumed = pos + used;
    return FailFromParser(err);
  }
  *consumed = pos;
  return absl::OkStatus();
}

absl::Status DecoderCore::DecodeEof() {
  if (!status_.ok()) return status_;
  if (!in_message_) return absl::OkStatus();
  in_parser_ = true;
  const llhttp_errno_t err = llhttp_finish(&parser_);
  in_parser_ = false;
  // A body delimited by the close completes here (our on_message_complete pauses, hence
  // HPE_PAUSED); anything else ends mid-message.
  if (!status_.ok()) return status_;
  if ((err == HPE_OK || err == HPE_PAUSED) && !in_message_) return absl::OkStatus();
  return EofMidMessage();
}

void DecoderCore::Resume() {
  if (!status_.ok() || !awaiting_resume_) return;
  awaiting_resume_ = false;
  if (in_parser_) {
    // From OnComplete: llhttp only learns of its pause when the callback returns.
    resume_requested_ = true;
    return;
  }
  StartNextMessage();
}

int DecoderCore::OnMessageBegin() {
  in_message_ = true;
  in_trailers_ = false;
  in_field_ = false;
  field_open_ = false;
  header_bytes_ = 0;
  header_count_ = 0;
  body_bytes_ = 0;
  trailers_.Clear();
  BeginMessage();
  return 0;
}

int DecoderCore::OnStartLinePiece(absl::string_view piece) {
  header_bytes_ += piece.size();
  if (header_bytes_ > max_header_bytes_) {
    return FailInCallback(431, kHeadersTooLarge, "request line or status line too long");
  }
  AppendStartLinePiece(piece);
  return 0;
}

int DecoderCore::OnHeaderField(absl::string_view piece) {
  if (!in_field_) {
    in_field_ = true;
    if (++header_count_ > max_header_count_) {
      return FailInCallback(431, kTooManyHeaders,
                            absl::StrCat("more than ", max_header_count_, " fields"));
    }
    fields().StartField();
    field_name_size_ = 0;
    field_open_ = true;
  }
  field_name_size_ += piece.size();
  header_bytes_ += piece.size();
  if (header_bytes_ > max_header_bytes_) {
    return FailInCallback(431, kHeadersTooLarge,
                          absl::StrCat("header section over ", max_header_bytes_, " bytes"));
  }
  fields().AppendToName(piece);
  return 0;
}

int DecoderCore::OnHeaderFieldComplete() {
  in_field_ = false;
  // llhttp reports ": value" as a field with an empty name.
  if (field_name_size_ == 0) return FailInCallback(400, kInvalidCharacters, "empty field name");
  return 0;
}

int DecoderCore::OnHeaderValue(absl::string_view piece) {
  if (!field_open_) return FailInCallback(400, kInvalidCharacters, "field value without a name");
  header_bytes_ += piece.size();
  if (header_bytes_ > max_header_bytes_) {
    return FailInCallback(431, kHeadersTooLarge,
                          absl::StrCat("header section over ", max_header_bytes_, " bytes"));
  }
  fields().AppendToValue(piece);
  return 0;
}

int DecoderCore::OnHeaderValueComplete() {
  if (!field_open_) return FailInCallback(400, kInvalidCharacters, "field value without a name");
  field_open_ = false;
  fields().FinishValue();
  return 0;
}

int DecoderCore::OnHeadersComplete() {
  scanner_.Stop();  // already stopped at the blank line; a no-op kept for clarity
  return HeadersComplete();
}

int DecoderCore::OnBody(absl::string_view piece) {
  body_bytes_ += piece.size();
  DeliverData(piece);
  return 0;
}

int DecoderCore::OnChunkHeader() {
  const uint64_t size = parser_.content_length;
  const uint64_t limit = max_body_bytes();
  if (limit != 0 && size > limit - std::min(limit, body_bytes_)) {
    return FailInCallback(413, kPayloadTooLarge,
                          absl::StrCat("chunked body over ", limit, " bytes"));
  }
  if (size != 0) return 0;
  // The last chunk: trailer fields follow, with their own header limits. Pause so that
  // Decode() learns where the trailer section starts and scans it.
  in_trailers_ = true;
  in_field_ = false;
  field_open_ = false;
  header_bytes_ = 0;
  header_count_ = 0;
  pause_ = Pause::kTrailers;
  return HPE_PAUSED;
}

int DecoderCore::OnMessageComplete() {
  if (!trailers_.empty()) DeliverTrailers(trailers_);
  if (interim()) {
    pause_ = Pause::kInterim;
    return HPE_PAUSED;
  }
  in_message_ = false;
  awaiting_resume_ = true;
  pause_ = Pause::kMessageComplete;
  DeliverComplete();
  return HPE_PAUSED;
}

absl::Status DecoderCore::FailFromParser(llhttp_errno_t err) {
  if (!status_.ok()) return status_;  // one of our callbacks refused the message
  const std::string what =
      absl::StrCat(llhttp_errno_name(err), ": ", llhttp_get_error_reason(&parser_));
  switch (err) {
    case HPE_INVALID_METHOD:
      // Unknown to llhttp, which knows a fixed list: RFC 9110 9.1 answers 501 to a method
      // the server does not implement; garbage is a 400.
      if (scanner_.method_is_token()) return Fail(501, kUnsupportedMethod, what);
      return Fail(400, kCodecError, what);
    case HPE_INVALID_URL:
      return Fail(400, kInvalidUrl, what);
    case HPE_INVALID_HEADER_TOKEN:
      return Fail(400, kInvalidCharacters, what);
    case HPE_INVALID_CONTENT_LENGTH:
      return Fail(400, kInvalidContentLength, what);
    case HPE_UNEXPECTED_CONTENT_LENGTH:
      // llhttp raises it for a second Content-Length and for one next to Transfer-Encoding,
      // before the head is complete. A coding other than one "chunked" is a 501 first, as
      // in HeadersComplete.
      if (const size_t codings = fields().Count("transfer-encoding"); codings > 0) {
        if (codings > 1 ||
            !absl::EqualsIgnoreCase(
                absl::StripAsciiWhitespace(fields().Get("transfer-encoding").value_or("")),
                "chunked")) {
          return Fail(501, kInvalidTransferEncoding, what);
        }
        return Fail(400, kChunkedContentLength, what);
      }
      return Fail(400, kMultipleContentLength, what);
    case HPE_INVALID_TRANSFER_ENCODING:
      return Fail(501, kInvalidTransferEncoding, what);
    case HPE_INVALID_VERSION:
      (void)FailVersion(what);
      return status_;
    case HPE_PAUSED_H2_UPGRADE:
      return Fail(505, kUnsupportedVersion, "HTTP/2 connection preface on an HTTP/1.1 port");
    default:
      return Fail(400, kCodecError, what);
  }
}

class RequestCore final : public DecoderCore {
 public:
  RequestCore(RequestDecoder::Callbacks& callbacks, const RequestDecoder::Limits& limits)
      : DecoderCore(HTTP_REQUEST, limits.max_header_bytes, limits.max_header_count,
                    /*upstream=*/false),
        callbacks_(callbacks),
        max_body_bytes_(limits.max_body_bytes) {
    scanner_.Start(HeadScanner::Section::kRequestHead);
  }

 protected:
  void BeginMessage() override {
    head_.method.clear();
    head_.target.clear();
    head_.scheme.clear();
    head_.authority.clear();
    head_.headers.Clear();
  }
  HeaderMap& head_headers() override { return head_.headers; }
  void AppendStartLinePiece(absl::string_view piece) override {
    head_.target.append(piece.data(), piece.size());
  }
  int HeadersComplete() override;
  uint64_t max_body_bytes() const override { return max_body_bytes_; }
  void DeliverData(absl::string_view data) override { callbacks_.OnData(data); }
  void DeliverTrailers(HeaderMap& trailers) override { callbacks_.OnTrailers(trailers); }
  void DeliverComplete() override { callbacks_.OnComplete(); }
  absl::Status EofMidMessage() override {
    return Fail(400, kEofMidMessage, "the client closed the connection mid-request");
  }
  HeadScanner::Section head_section() const override { return HeadScanner::Section::kRequestHead; }

 public:
  absl::string_view method_seen() const {
    return scanner_.method_is_token() ? scanner_.first_token() : absl::string_view();
  }
  absl::string_view target_seen() const { return head_.target; }

 private:
  // Turns an absolute-form target into origin-form, taking its authority; refuses the forms
  // a proxy does not route. Returns false after Fail().
  bool NormalizeTarget();
  bool Refuse(absl::string_view detail, absl::string_view what) {
    (void)Fail(400, detail, what);
    return false;
  }

  RequestDecoder::Callbacks& callbacks_;
  const uint64_t max_body_bytes_;
  RequestHead head_;
};

int RequestCore::HeadersComplete() {
  RequestHead& h = head_;
  const absl::string_view version = scanner_.version_token();
  if (version != "HTTP/1.1" && version != "HTTP/1.0") {
    return FailVersion(absl::StrCat("version ", absl::CHexEscape(version)));
  }
  h.version_minor = parser_.http_minor;
  h.method.assign(llhttp_method_name(static_cast<llhttp_method_t>(parser_.method)));
  if (parser_.method == HTTP_CONNECT) {
    return FailInCallback(501, kConnectNotSupported, "CONNECT is not supported");
  }

  size_t hosts = 0;
  size_t lengths = 0;
  size_t codings = 0;
  absl::string_view host;
  absl::string_view coding;
  bool expect_continue = false;
  h.headers.ForEach([&](absl::string_view name, absl::string_view value) {
    if (absl::EqualsIgnoreCase(name, "host")) {
      ++hosts;
      host = value;
    } else if (absl::EqualsIgnoreCase(name, "content-length")) {
      ++lengths;
    } else if (absl::EqualsIgnoreCase(name, "transfer-encoding")) {
      ++codings;
      coding = value;
    } else if (absl::EqualsIgnoreCase(name, "expect") &&
               absl::EqualsIgnoreCase(value, "100-continue")) {
      expect_continue = true;
    }
  });

  // RFC 9112 3.2: more than one Host is a 400, whatever the target's form.
  if (hosts > 1) return FailInCallback(400, kMultipleHost, "more than one Host");
  if (codings > 0) {
    // RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing.
    if (h.version_minor == 0) {
      return FailInCallback(400, kTransferEncodingNotAllowed, "Transfer-Encoding on HTTP/1.0");
    }
    // Only "chunked", alone: Envoy answers 501 to any other coding, and a list (even
    // "chunked, chunked") is where parsers disagree. Checked before the length, as Envoy
    // does: a coding it cannot decode is a 501 whatever comes with it.
    if (codings > 1 || !absl::EqualsIgnoreCase(coding, "chunked")) {
      return FailInCallback(501, kInvalidTransferEncoding,
                            absl::StrCat("Transfer-Encoding ", absl::CHexEscape(coding)));
    }
    if (lengths > 0) {
      return FailInCallback(400, kChunkedContentLength, "Content-Length with Transfer-Encoding");
    }
  }
  // llhttp refuses a second Content-Length already; kept for a parser that would not.
  if (lengths > 1) return FailInCallback(400, kMultipleContentLength, "repeated Content-Length");

  if (!NormalizeTarget()) return -1;
  if (hosts == 1 && !IsValidAuthority(host)) {
    return FailInCallback(400, kInvalidHost, absl::StrCat("Host ", absl::CHexEscape(host)));
  }
  if (h.scheme.empty()) {
    if (hosts == 1) {
      h.authority.assign(host.data(), host.size());
    } else if (h.version_minor == 1) {
      return FailInCallback(400, kMissingHost, "HTTP/1.1 request without Host");
    }
  } else if (hosts == 0 || !absl::EqualsIgnoreCase(host, h.authority)) {
    // RFC 9112 3.2.2: the target's authority wins over Host, and the request is forwarded
    // in origin form, so Host must carry it.
    h.headers.Set("Host", h.authority);
  }

  if (parser_.flags & F_CHUNKED) {
    h.framing = BodyFraming::kChunked;
    h.content_length = 0;
  } else if (parser_.flags & F_CONTENT_LENGTH) {
    h.framing = BodyFraming::kContentLength;
    h.content_length = parser_.content_length;
    if (max_body_bytes_ != 0 && h.content_length > max_body_bytes_) {
      return FailInCallback(
          413, kPayloadTooLarge,
          absl::StrCat("Content-Length ", h.content_length, " over ", max_body_bytes_));
    }
  } else {
    h.framing = BodyFraming::kNone;
    h.content_length = 0;
  }
  h.keep_alive = llhttp_should_keep_alive(&parser_) != 0;
  // RFC 9110 10.1.1: an HTTP/1.0 request's 100-continue is ignored. Either way the field is
  // not forwarded: the proxy answers the expectation itself.
  h.expect_continue = expect_continue && h.version_minor == 1;
  if (expect_continue) h.headers.Remove("expect");
  h.upgrade = parser_.upgrade != 0;

  callbacks_.OnHead(h);
  return 0;
}

bool RequestCore::NormalizeTarget() {
  std::string& t = head_.target;
  if (t.find('#') != std::string::npos) {
    // Envoy refuses fragments too: the client should not send one, and a proxy that kept it
    // would forward a target the origin might route differently.
    return Refuse(kInvalidUrl, "fragment in the request-target");
  }
  head_.scheme.clear();
  if (!t.empty() && t[0] == '/') return true;  // origin-form
  if (t == "*") {
    if (parser_.method == HTTP_OPTIONS) return true;
    return Refuse(kInvalidUrl, "asterisk-form on a method other than OPTIONS");
  }
  size_t prefix;
  if (absl::StartsWithIgnoreCase(t, "http://")) {
    head_.scheme.assign("http");
    prefix = 7;
  } else if (absl::StartsWithIgnoreCase(t, "https://")) {
    head_.scheme.assign("https");
    prefix = 8;
  } else {
    return Refuse(kInvalidUrl, absl::StrCat("request-target ", absl::CHexEscape(t.substr(0, 64))));
  }
  size_t end = t.find_first_of("/?", prefix);
  if (end == std::string::npos) end = t.size();
  const absl::string_view authority = absl::string_view(t).substr(prefix, end - prefix);
  // Userinfo ("user@host") is deprecated and a classic way to disguise the real host.
  if (!IsValidAuthority(authority)) {
    return Refuse(kInvalidUrl, absl::StrCat("authority ", absl::CHexEscape(authority)));
  }
  head_.authority.assign(authority.data(), authority.size());
  t.erase(0, end);
  if (t.empty()) {
    t.assign(1, '/');
  } else if (t[0] == '?') {
    t.insert(t.begin(), '/');
  }
  return true;
}

class ResponseCore final : public DecoderCore {
 public:
  ResponseCore(ResponseDecoder::Callbacks& callbacks, const ResponseDecoder::Limits& limits)
      : DecoderCore(HTTP_RESPONSE, limits.max_header_bytes, limits.max_header_count,
                    /*upstream=*/true),
        callbacks_(callbacks) {
    awaiting_resume_ = true;  // until the first ExpectResponse()
  }

  void ExpectResponse(bool request_was_head) {
    request_was_head_ = request_was_head;
    expecting_ = true;
    complete_ = false;
    head_delivered_ = false;
    Resume();
  }

  bool complete() const { return complete_; }
  bool head_delivered() const { return head_delivered_; }
  bool upgraded() const { return upgraded_; }
  bool unexpected_bytes() const { return unexpected_bytes_; }
  bool reusable() const {
    return error().status == 0 && complete_ && head_.keep_alive && !upgraded_ && !unexpected_bytes_;
  }
  absl::Status Eof() {
    if (expecting_ && !complete_ && !in_message_ && error().status == 0) {
      return Fail(502, kEofBeforeHead, "the upstream closed the connection before responding");
    }
    return DecodeEof();
  }

 protected:
  void BeginMessage() override {
    head_.reason.clear();
    head_.headers.Clear();
    interim_ = false;
  }
  HeaderMap& head_headers() override { return head_.headers; }
  void AppendStartLinePiece(absl::string_view piece) override {
    head_.reason.append(piece.data(), piece.size());
  }
  int HeadersComplete() override;
  bool interim() const override { return interim_; }
  void DeliverData(absl::string_view data) override { callbacks_.OnData(data); }
  void DeliverTrailers(HeaderMap& trailers) override { callbacks_.OnTrailers(trailers); }
  void DeliverComplete() override {
    complete_ = true;
    callbacks_.OnComplete();
  }
  void BytesWhilePaused() override {
    if (!upgraded_) unexpected_bytes_ = true;
  }
  absl::Status EofMidMessage() override {
    if (head_delivered_) {
      return Fail(502, kEofMidBody, "the upstream closed the connection mid-body");
    }
    return Fail(502, kEofBeforeHead, "the upstream closed the connection mid-head");
  }
  HeadScanner::Section head_section() const override { return HeadScanner::Section::kResponseHead; }

 private:
  ResponseDecoder::Callbacks& callbacks_;
  ResponseHead head_;
  bool request_was_head_ = false;
  bool expecting_ = false;
  bool complete_ = false;
  bool head_delivered_ = false;
  bool interim_ = false;
  bool upgraded_ = false;
  bool unexpected_bytes_ = false;
};

int ResponseCore::HeadersComplete() {
  ResponseHead& h = head_;
  const absl::string_view version = scanner_.version_token();
  if (version != "HTTP/1.1" && version != "HTTP/1.0") {
    return FailVersion(absl::StrCat("version ", absl::CHexEscape(version)));
  }
  h.status = parser_.status_code;
  h.version_minor = parser_.http_minor;
  if (h.status < 100) {
    return FailInCallback(502, kCodecError, absl::StrCat("status ", h.status));
  }
  if (h.status < 200 && h.status != 101) {
    interim_ = true;
    return 1;  // no body; the final response follows
  }

  size_t codings = 0;
  absl::string_view coding;
  h.headers.ForEach([&](absl::string_view name, absl::string_view value) {
    if (absl::EqualsIgnoreCase(name, "transfer-encoding")) {
      ++codings;
      coding = value;
    }
  });
  if (codings > 0) {
    if (h.version_minor == 0) {
      return FailInCallback(502, kTransferEncodingNotAllowed, "Transfer-Encoding on HTTP/1.0");
    }
    // RFC 9112 would read a non-chunked coding's body until close, and pass it on still
    // encoded; the client could not decode it once the hop-by-hop field is gone.
    if (codings > 1 || !absl::EqualsIgnoreCase(coding, "chunked")) {
      return FailInCallback(502, kInvalidTransferEncoding,
                            absl::StrCat("Transfer-Encoding ", absl::CHexEscape(coding)));
    }
  }

  // RFC 9110 6.4.1: whatever the framing fields say, these carry no body.
  const bool no_body = request_was_head_ || h.status == 101 || h.status == 204 || h.status == 304;
  h.content_length = 0;
  if (parser_.flags & F_CHUNKED) {
    h.framing = BodyFraming::kChunked;
  } else if (parser_.flags & F_CONTENT_LENGTH) {
    h.framing = BodyFraming::kContentLength;
    h.content_length = parser_.content_length;
  } else {
    h.framing = no_body ? BodyFraming::kNone : BodyFraming::kUntilClose;
  }
  h.has_body = !no_body;
  const bool persistent = h.version_minor == 1 ? (parser_.flags & F_CONNECTION_CLOSE) == 0
                                               : (parser_.flags & F_CONNECTION_KEEP_ALIVE) != 0;
  h.keep_alive = persistent && h.framing != BodyFraming::kUntilClose && h.status != 101;
  upgraded_ = h.status == 101;
  head_delivered_ = true;
  callbacks_.OnHead(h);
  // 1: llhttp reads no body even if Content-Length or chunked says otherwise.
  return no_body ? 1 : 0;
}

}  // namespace internal

RequestDecoder::RequestDecoder(Callbacks& callbacks) : RequestDecoder(callbacks, Limits{}) {}
RequestDecoder::RequestDecoder(Callbacks& callbacks, const Limits& limits)
    : core_(std::make_unique<internal::RequestCore>(callbacks, limits)) {}
RequestDecoder::~RequestDecoder() = default;

absl::Status RequestDecoder::Decode(absl::string_view bytes, size_t* consumed) {
  return core_->Decode(bytes, consumed);
}
void RequestDecoder::ResumeNextMessage() { core_->Resume(); }

absl::string_view RequestDecoder::method_seen() const { return core_->method_seen(); }

absl::string_view RequestDecoder::target_seen() const { return core_->target_seen(); }
absl::Status RequestDecoder::DecodeEof() { return core_->DecodeEof(); }
bool RequestDecoder::awaiting_resume() const { return core_->awaiting_resume(); }
bool RequestDecoder::message_in_progress() const { return core_->in_message(); }
const DecodeError& RequestDecoder::error() const { return core_->error(); }

ResponseDecoder::ResponseDecoder(Callbacks& callbacks) : ResponseDecoder(callbacks, Limits{}) {}
ResponseDecoder::ResponseDecoder(Callbacks& callbacks, const Limits& limits)
    : core_(std::make_unique<internal::ResponseCore>(callbacks, limits)) {}
ResponseDecoder::~ResponseDecoder() = default;

void ResponseDecoder::ExpectResponse(bool request_was_head) {
  core_->ExpectResponse(request_was_head);
}
absl::Status ResponseDecoder::Decode(absl::string_view bytes, size_t* consumed) {
  return core_->Decode(bytes, consumed);
}
absl::Status ResponseDecoder::DecodeEof() { return core_->Eof(); }
bool ResponseDecoder::message_complete() const { return core_->complete(); }
bool ResponseDecoder::head_delivered() const { return core_->head_delivered(); }
bool ResponseDecoder::upgraded() const { return core_->upgraded(); }
bool ResponseDecoder::unexpected_bytes() const { return core_->unexpected_bytes(); }
bool ResponseDecoder::connection_reusable() const { return core_->reusable(); }
const DecodeError& ResponseDecoder::error() const { return core_->error(); }

absl::string_view DefaultReasonPhrase(int status) {
  struct Phrase {
    int status;
    const char* text;
  };
  static constexpr Phrase kPhrases[] = {
      {100, "Continue"},
      {101, "Switching Protocols"},
      {103, "Early Hints"},
      {200, "OK"},
      {201, "Created"},
      {202, "Accepted"},
      {204, "No Content"},
      {206, "Partial Content"},
      {301, "Moved Permanently"},
      {302, "Found"},
      {303, "See Other"},
      {304, "Not Modified"},
      {307, "Temporary Redirect"},
      {308, "Permanent Redirect"},
      {400, "Bad Request"},
      {401, "Unauthorized"},
      {403, "Forbidden"},
      {404, "Not Found"},
      {405, "Method Not Allowed"},
      {408, "Request Timeout"},
      {409, "Conflict"},
      {411, "Length Required"},
      {412, "Precondition Failed"},
      {413, "Content Too Large"},
      {414, "URI Too Long"},
      {415, "Unsupported Media Type"},
      {417, "Expectation Failed"},
      {421, "Misdirected Request"},
      {422, "Unprocessable Content"},
      {426, "Upgrade Required"},
      {429, "Too Many Requests"},
      {431, "Request Header Fields Too Large"},
      {500, "Internal Server Error"},
      {501, "Not Implemented"},
      {502, "Bad Gateway"},
      {503, "Service Unavailable"},
      {504, "Gateway Timeout"},
      {505, "HTTP Version Not Supported"},
  };
  for (const Phrase& p : kPhrases) {
    if (p.status == status) return p.text;
  }
  return "";
}

namespace {

void AppendFields(const HeaderMap& fields, std::string* out) {
  fields.ForEach([out](absl::string_view name, absl::string_view value) {
    out->append(name.data(), name.size());
    out->append(": ");
    out->append(value.data(), value.size());
    out->append("\r\n");
  });
}

}  // namespace

void EncodeRequestHead(const RequestHead& head, std::string* out) {
  absl::StrAppend(out, head.method, " ", head.target, " HTTP/1.1\r\n");
  // An HTTP/1.0 request may come without Host; an HTTP/1.1 upstream requires one.
  if (!head.authority.empty() && head.headers.Count("host") == 0) {
    absl::StrAppend(out, "Host: ", head.authority, "\r\n");
  }
  AppendFields(head.headers, out);
  if (head.framing == BodyFraming::kContentLength) {
    absl::StrAppend(out, "Content-Length: ", head.content_length, "\r\n");
  } else if (head.framing == BodyFraming::kChunked) {
    out->append("Transfer-Encoding: chunked\r\n");
  }
  if (head.upgrade) {
    out->append(head.keep_alive ? "Connection: upgrade\r\n" : "Connection: upgrade, close\r\n");
  } else if (!head.keep_alive) {
    out->append("Connection: close\r\n");
  }
  out->append("\r\n");
}

void EncodeResponseHead(int status, absl::string_view reason, const HeaderMap& headers,
                        BodyFraming framing, uint64_t content_length, bool keep_alive,
                        std::string* out) {
  if (reason.empty()) reason = DefaultReasonPhrase(status);
  absl::StrAppend(out, "HTTP/1.1 ", status, " ", reason, "\r\n");
  AppendFields(headers, out);
  // RFC 9110 8.6 and 6.1: no framing field on 1xx and 204; a 304 may repeat the length.
  if (status >= 200 && status != 204) {
    switch (framing) {
      case BodyFraming::kNone:
        if (status != 304) out->append("Content-Length: 0\r\n");
        break;
      case BodyFraming::kContentLength:
        absl::StrAppend(out, "Content-Length: ", content_length, "\r\n");
        break;
      case BodyFraming::kChunked:
        if (status != 304) out->append("Transfer-Encoding: chunked\r\n");
        break;
      case BodyFraming::kUntilClose:
        keep_alive = false;
        break;
    }
  }
  if (status == 101) {
    out->append("Connection: upgrade\r\n");
  } else if (!keep_alive) {
    out->append("Connection: close\r\n");
  }
  out->append("\r\n");
}

void EncodeChunkHeader(size_t size, std::string* out) {
  absl::StrAppend(out, absl::Hex(size), "\r\n");
}

void EncodeChunk(absl::string_view data, std::string* out) {
  if (data.empty()) return;
  EncodeChunkHeader(data.size(), out);
  out->append(data.data(), data.size());
  out->append("\r\n");
}

void EncodeLastChunk(std::string* out) { out->append("0\r\n\r\n"); }

void EncodeLastChunk(const HeaderMap& trailers, std::string* out) {
  out->append("0\r\n");
  AppendFields(trailers, out);
  out->append("\r\n");
}

}  // namespace sluice::gateway::http
