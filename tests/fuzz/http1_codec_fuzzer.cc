// libFuzzer target: arbitrary bytes through the HTTP/1 codec, once as a client's requests
// (RequestDecoder) and once as an upstream's responses (ResponseDecoder). The first byte
// chooses where the input is cut in two reads (to exercise resumption), small or default
// limits (bit 1), whether the next message is asked for from OnComplete or after Decode()
// returns (bit 2), and which responses answer HEAD requests. Beyond crashes and sanitizer
// reports,
// it aborts when an invariant breaks:
//   - Decode() never consumes more than it was given;
//   - events come in order (head, data, trailers, complete) and a Content-Length body has
//     exactly its length;
//   - after an error no callback runs and the error stays;
//   - an error is answered with one of the codec's statuses and closes the connection;
//   - any head decoded, once its framing fields are stripped, encodes to bytes that decode
//     to the same head.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "gateway/http/http1_codec.h"

namespace sluice::gateway::http {
namespace {

#define FUZZ_CHECK(condition)                                                            \
  do {                                                                                   \
    if (!(condition)) {                                                                  \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #condition); \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)

// The fields the encoder writes itself from the framing and keep-alive arguments, or that
// a proxy strips as hop-by-hop before encoding (llhttp reads Proxy-Connection as Connection).
bool IsFramingField(absl::string_view name) {
  return absl::EqualsIgnoreCase(name, "content-length") ||
         absl::EqualsIgnoreCase(name, "transfer-encoding") ||
         absl::EqualsIgnoreCase(name, "connection") ||
         absl::EqualsIgnoreCase(name, "proxy-connection");
}

HeaderMap Stripped(const HeaderMap& headers) {
  HeaderMap out;
  headers.ForEach([&out](absl::string_view name, absl::string_view value) {
    if (!IsFramingField(name)) out.Add(name, value);
  });
  return out;
}

// Limits large enough for a re-encoded head, which may carry a few more fields.
RequestDecoder::Limits GenerousRequestLimits() {
  RequestDecoder::Limits limits;
  limits.max_header_bytes = 1 << 20;
  limits.max_header_count = 1000;
  return limits;
}

// The same for responses: a response at the field-count limit gains the framing and
// Connection fields when re-encoded (found by `make fuzz-long`).
ResponseDecoder::Limits GenerousResponseLimits() {
  ResponseDecoder::Limits limits;
  limits.max_header_bytes = 1 << 20;
  limits.max_header_count = 1000;
  return limits;
}

template <typename Head>
class CaptureHead : public DecoderCallbacks<Head> {
 public:
  void OnHead(Head& head) override {
    FUZZ_CHECK(!got);
    got = true;
    copy = head;
  }
  void OnData(absl::string_view) override {}
  void OnTrailers(HeaderMap&) override {}
  void OnComplete() override {}
  bool got = false;
  Head copy;
};

void CheckRequestRoundTrip(const RequestHead& head) {
  // An HTTP/1.0 request without Host cannot be re-encoded as a valid HTTP/1.1 one.
  if (head.authority.empty()) return;
  RequestHead encoded;
  encoded.method = head.method;
  encoded.target = head.target;
  encoded.authority = head.authority;
  encoded.headers = Stripped(head.headers);
  encoded.framing = head.framing;
  encoded.content_length = head.content_length;
  encoded.keep_alive = head.keep_alive;
  encoded.upgrade = head.upgrade;
  std::string wire;
  EncodeRequestHead(encoded, &wire);

  CaptureHead<RequestHead> capture;
  RequestDecoder decoder(capture, GenerousRequestLimits());
  size_t consumed = 0;
  const absl::Status status = decoder.Decode(wire, &consumed);
  if (!status.ok() || !capture.got) {
    std::fprintf(stderr, "re-encoded request refused: %s\n%s\n", status.ToString().c_str(),
                 wire.c_str());
    std::abort();
  }
  const RequestHead& again = capture.copy;
  FUZZ_CHECK(again.method == head.method);
  FUZZ_CHECK(again.target == head.target);
  FUZZ_CHECK(absl::EqualsIgnoreCase(again.authority, head.authority));
  FUZZ_CHECK(Stripped(again.headers) == encoded.headers);
  FUZZ_CHECK(again.framing == head.framing);
  FUZZ_CHECK(again.content_length == head.content_length);
  FUZZ_CHECK(again.keep_alive == head.keep_alive);
  FUZZ_CHECK(again.upgrade == head.upgrade);
  FUZZ_CHECK(!again.expect_continue);
}

void CheckResponseRoundTrip(const ResponseHead& head, bool request_was_head) {
  std::string wire;
  const HeaderMap stripped = Stripped(head.headers);
  EncodeResponseHead(head.status, head.reason, stripped, head.framing, head.content_length,
                     head.keep_alive, &wire);
  CaptureHead<ResponseHead> capture;
  ResponseDecoder decoder(capture, GenerousResponseLimits());
  decoder.ExpectResponse(request_was_head);
  size_t consumed = 0;
  const absl::Status status = decoder.Decode(wire, &consumed);
  if (!status.ok() || !capture.got) {
    std::fprintf(stderr, "re-encoded response refused: %s\n%s\n", status.ToString().c_str(),
                 wire.c_str());
    std::abort();
  }
  const ResponseHead& again = capture.copy;
  FUZZ_CHECK(again.status == head.status);
  FUZZ_CHECK(head.reason.empty() || again.reason == head.reason);
  FUZZ_CHECK(Stripped(again.headers) == stripped);
  FUZZ_CHECK(again.has_body == head.has_body);
  // A message without a body gets no framing field from the encoder (1xx, 204, 304).
  if (head.has_body) {
    FUZZ_CHECK(again.framing == head.framing);
    FUZZ_CHECK(again.content_length == head.content_length);
  }
  FUZZ_CHECK(again.keep_alive == head.keep_alive);
}

// Checks the order of events and what the body adds up to.
template <typename Head>
class OrderChecker : public DecoderCallbacks<Head> {
 public:
  void OnHead(Head& head) override {
    FUZZ_CHECK(!failed);
    FUZZ_CHECK(!in_message);
    in_message = true;
    saw_trailers = false;
    body_bytes = 0;
    framing = head.framing;
    content_length = head.content_length;
    CheckHead(head);
  }
  void OnData(absl::string_view data) override {
    FUZZ_CHECK(!failed);
    FUZZ_CHECK(in_message && !saw_trailers);
    FUZZ_CHECK(!data.empty());
    FUZZ_CHECK(framing != BodyFraming::kNone && has_body);
    body_bytes += data.size();
    if (framing == BodyFraming::kContentLength) FUZZ_CHECK(body_bytes <= content_length);
  }
  void OnTrailers(HeaderMap& trailers) override {
    FUZZ_CHECK(!failed);
    FUZZ_CHECK(in_message && !saw_trailers);
    FUZZ_CHECK(framing == BodyFraming::kChunked);
    FUZZ_CHECK(!trailers.empty());
    saw_trailers = true;
  }
  void OnComplete() override {
    FUZZ_CHECK(!failed);
    FUZZ_CHECK(in_message);
    if (framing == BodyFraming::kContentLength && has_body) {
      FUZZ_CHECK(body_bytes == content_length);
    }
    in_message = false;
    ++completes;
  }

  virtual void CheckHead(Head& head) = 0;

  bool failed = false;
  bool in_message = false;
  bool saw_trailers = false;
  bool has_body = true;
  BodyFraming framing = BodyFraming::kNone;
  uint64_t content_length = 0;
  uint64_t body_bytes = 0;
  int completes = 0;
};

class RequestChecker : public OrderChecker<RequestHead> {
 public:
  void OnComplete() override {
    OrderChecker::OnComplete();
    // A proxy ready at once resumes from the callback: decoding goes on in the same call.
    if (resume_in_callback != nullptr && keep_alive) resume_in_callback->ResumeNextMessage();
  }
  void CheckHead(RequestHead& head) override {
    keep_alive = head.keep_alive;
    FUZZ_CHECK(head.framing != BodyFraming::kUntilClose);
    FUZZ_CHECK(head.version_minor == 0 || head.version_minor == 1);
    FUZZ_CHECK(head.target == "*" || absl::StartsWith(head.target, "/"));
    FUZZ_CHECK(head.headers.Count("host") <= 1);
    CheckRequestRoundTrip(head);
  }
  RequestDecoder* resume_in_callback = nullptr;
  bool keep_alive = false;
};

class ResponseChecker : public OrderChecker<ResponseHead> {
 public:
  void OnComplete() override {
    OrderChecker::OnComplete();
    // A pool that reuses the connection at once sends the next request from the callback;
    // the bytes after this response are then the next one's.
    if (expect_in_callback != nullptr && keep_alive && !upgrade) {
      ++responses;
      request_was_head = (control >> (responses % 8)) & 1;
      expect_in_callback->ExpectResponse(request_was_head);
    }
  }
  void CheckHead(ResponseHead& head) override {
    keep_alive = head.keep_alive;
    upgrade = head.status == 101;
    FUZZ_CHECK(head.status == 101 || (head.status >= 200 && head.status <= 999));
    has_body = head.has_body;
    if (request_was_head || head.status == 204 || head.status == 304) FUZZ_CHECK(!has_body);
    CheckResponseRoundTrip(head, request_was_head);
  }
  bool request_was_head = false;
  ResponseDecoder* expect_in_callback = nullptr;
  uint8_t control = 0;
  int responses = 0;
  bool keep_alive = false;
  bool upgrade = false;
};

void CheckError(const DecodeError& error, bool upstream) {
  FUZZ_CHECK(error.close_connection);
  FUZZ_CHECK(absl::StartsWith(error.detail, "http1."));
  if (upstream) {
    FUZZ_CHECK(error.status == 502);
  } else {
    FUZZ_CHECK(error.status == 400 || error.status == 413 || error.status == 431 ||
               error.status == 501 || error.status == 505);
  }
}

// Feeds `buffer` as the proxy does; returns false once the decoder failed.
bool PumpRequests(RequestDecoder& decoder, RequestChecker& checker, std::string& buffer) {
  while (!buffer.empty()) {
    size_t consumed = 0;
    const absl::Status status = decoder.Decode(buffer, &consumed);
    FUZZ_CHECK(consumed <= buffer.size());
    if (!status.ok()) {
      checker.failed = true;
      CheckError(decoder.error(), /*upstream=*/false);
      return false;
    }
    buffer.erase(0, consumed);
    if (decoder.awaiting_resume()) {
      FUZZ_CHECK(!checker.in_message);
      if (buffer.empty()) break;
      decoder.ResumeNextMessage();
    } else if (consumed == 0) {
      break;
    }
  }
  return true;
}

void FuzzRequests(absl::string_view input, size_t split, uint8_t control) {
  RequestDecoder::Limits limits;
  if (control & 0x2) {
    limits.max_header_bytes = 128;
    limits.max_header_count = 6;
    limits.max_body_bytes = 16;
  }
  RequestChecker checker;
  RequestDecoder decoder(checker, limits);
  if (control & 0x4) checker.resume_in_callback = &decoder;
  std::string buffer(input.substr(0, split));
  bool ok = PumpRequests(decoder, checker, buffer);
  if (ok) {
    buffer.append(input.data() + split, input.size() - split);
    ok = PumpRequests(decoder, checker, buffer);
  }
  if (ok) {
    const absl::Status eof = decoder.DecodeEof();
    if (!eof.ok()) {
      checker.failed = true;
      CheckError(decoder.error(), /*upstream=*/false);
    }
  }
  if (checker.failed) {
    // The error stays and nothing more is reported.
    size_t consumed = 1;
    FUZZ_CHECK(!decoder.Decode(input, &consumed).ok());
    FUZZ_CHECK(consumed == 0);
    FUZZ_CHECK(!decoder.DecodeEof().ok());
  }
}

bool PumpResponses(ResponseDecoder& decoder, ResponseChecker& checker, std::string& buffer) {
  while (!buffer.empty()) {
    size_t consumed = 0;
    const absl::Status status = decoder.Decode(buffer, &consumed);
    FUZZ_CHECK(consumed <= buffer.size());
    if (!status.ok()) {
      checker.failed = true;
      CheckError(decoder.error(), /*upstream=*/true);
      return false;
    }
    buffer.erase(0, consumed);
    if (!decoder.message_complete()) {
      if (consumed == 0) break;
      continue;
    }
    FUZZ_CHECK(!checker.in_message);
    if (buffer.empty() || decoder.upgraded() || !decoder.connection_reusable()) break;
    // Another request went out on the kept-alive connection.
    ++checker.responses;
    checker.request_was_head = (checker.control >> (checker.responses % 8)) & 1;
    decoder.ExpectResponse(checker.request_was_head);
  }
  return true;
}

void FuzzResponses(absl::string_view input, size_t split, uint8_t control) {
  ResponseChecker checker;
  ResponseDecoder decoder(checker);
  checker.control = control;
  if (control & 0x4) checker.expect_in_callback = &decoder;
  checker.request_was_head = control & 1;
  decoder.ExpectResponse(checker.request_was_head);
  std::string buffer(input.substr(0, split));
  bool ok = PumpResponses(decoder, checker, buffer);
  if (ok) {
    buffer.append(input.data() + split, input.size() - split);
    ok = PumpResponses(decoder, checker, buffer);
  }
  if (ok) {
    const bool had_head = decoder.head_delivered();
    const bool was_complete = decoder.message_complete();
    const absl::Status eof = decoder.DecodeEof();
    if (eof.ok()) {
      FUZZ_CHECK(!had_head || decoder.message_complete());
    } else {
      checker.failed = true;
      CheckError(decoder.error(), /*upstream=*/true);
      FUZZ_CHECK(!was_complete);
      FUZZ_CHECK(decoder.error().detail ==
                 (had_head ? "http1.eof_mid_body" : "http1.eof_before_head"));
    }
  }
  if (checker.failed) {
    size_t consumed = 1;
    FUZZ_CHECK(!decoder.Decode(input, &consumed).ok());
    FUZZ_CHECK(consumed == 0);
    FUZZ_CHECK(!decoder.connection_reusable());
  }
}

}  // namespace
}  // namespace sluice::gateway::http

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t control = data[0];
  const absl::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
  // Anywhere in the input, not only in its first 256 bytes.
  const size_t split = input.size() * control / 255;
  sluice::gateway::http::FuzzRequests(input, split, control);
  sluice::gateway::http::FuzzResponses(input, split, control);
  return 0;
}
