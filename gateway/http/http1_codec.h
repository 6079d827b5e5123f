#pragma once

// The HTTP/1.1 codec of the proxy core: bytes in, message events out, and messages back to
// bytes, with no socket anywhere (Envoy's codec layering). Parsing is llhttp's (Node's
// parser, strict build) plus the request hygiene RFC 9112 and Envoy ask of a proxy.
//
// The event interface (head, body data, trailers, complete, error) does not depend on
// HTTP/1, so an HTTP/2 codec can later feed the same callbacks.
//
// Steady state: a decoder reuses its head (strings and HeaderMap, cleared between messages
// with their capacity kept) and hands body bytes to the callbacks as views of the caller's
// buffer, so decoding allocates nothing per message once the buffers have grown to the
// connection's usual message size. Encoders append to a caller-owned std::string.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "gateway/http/header_map.h"

namespace sluice::gateway::http {

// How a message's body is delimited on the wire.
enum class BodyFraming {
  kNone,           // no body
  kContentLength,  // exactly content_length bytes
  kChunked,        // Transfer-Encoding: chunked
  kUntilClose,     // responses only: the body ends when the server closes the connection
};

struct RequestHead {
  std::string method;  // as on the wire ("GET"); llhttp knows a fixed set of methods
  // The request-target as it is forwarded: origin-form ("/path?query"; "/" when an
  // absolute-form target had no path), or "*" for OPTIONS.
  std::string target;
  std::string scheme;  // "http" or "https" for an absolute-form target, else empty
  // From an absolute-form target, else Host; empty for HTTP/1.0 without Host.
  std::string authority;
  int version_minor = 1;  // HTTP/1.0 or HTTP/1.1
  // As received, except that Expect: 100-continue is removed (see expect_continue) and an
  // absolute-form target's authority replaces (or supplies) Host.
  HeaderMap headers;
  BodyFraming framing = BodyFraming::kNone;  // kNone, kContentLength or kChunked
  uint64_t content_length = 0;               // with kContentLength
  // HTTP/1.1 unless Connection: close; HTTP/1.0 only with Connection: keep-alive.
  bool keep_alive = true;
  // Expect: 100-continue on HTTP/1.1: the proxy answers 100 itself when it wants the body.
  bool expect_continue = false;
  // Upgrade with Connection: upgrade. Once it is complete the caller either tunnels the
  // connection (and drops the decoder) or, if the upstream refused, resumes it as HTTP.
  bool upgrade = false;
};

struct ResponseHead {
  int status = 0;
  std::string reason;
  int version_minor = 1;
  HeaderMap headers;  // as received
  // As the head declares it. A response without a body (to HEAD; 1xx, 204, 304) keeps its
  // declared framing, so that a HEAD response forwards its Content-Length; see has_body.
  BodyFraming framing = BodyFraming::kNone;
  uint64_t content_length = 0;  // with kContentLength
  bool has_body = false;        // whether body bytes follow the head on the wire
  // HTTP/1.1 unless Connection: close; HTTP/1.0 only with keep-alive; never kUntilClose.
  bool keep_alive = true;
};

// Why a decoder stopped. After an error a decoder reports the same error on every call and
// calls no callback again.
struct DecodeError {
  // The status to answer: downstream 400, 413, 431, 501 or 505; for an upstream response
  // always 502 (what the proxy answers its client).
  int status = 0;
  // Envoy-style response code detail ("http1.codec_error", "http1.too_many_headers", ...);
  // static storage. The absl::Status message adds what exactly was wrong.
  absl::string_view detail;
  // Always true: once the framing is in doubt no later byte on the connection can be trusted.
  bool close_connection = true;
};

// The events of one direction of one connection, one message after another: OnHead, any
// number of OnData, at most one OnTrailers, then OnComplete. Callbacks run inside Decode()
// or DecodeEof() and must not destroy the decoder or call Decode() on it.
template <typename Head>
class DecoderCallbacks {
 public:
  virtual ~DecoderCallbacks() = default;
  // The head stays valid (and may be edited) until the decoder starts the next message.
  virtual void OnHead(Head& head) = 0;
  // Body bytes: a view of the buffer passed to Decode(), valid during the call only.
  virtual void OnData(absl::string_view data) = 0;
  // Trailers of a chunked body; not called when there were none.
  virtual void OnTrailers(HeaderMap& trailers) = 0;
  virtual void OnComplete() = 0;
};

namespace internal {
class RequestCore;
class ResponseCore;
}  // namespace internal

struct RequestDecoderLimits {
  // Bytes of the request-target plus every header name and value (Envoy's
  // max_request_headers_kb, default 60 KiB). Beyond: 431.
  size_t max_header_bytes = 60 * 1024;
  // Header fields, Host and repeated names included (Envoy's max_request_headers_count).
  // One more: 431.
  size_t max_header_count = 100;
  // A Content-Length above this is answered 413 at the head; a chunked body is refused as
  // soon as a chunk would take it past. 0: no limit.
  uint64_t max_body_bytes = 0;
};

// Decodes the requests a client sends on one connection (the server side).
//
// Decode() consumes bytes and reports the messages through the callbacks. After OnComplete
// the decoder pauses: the bytes of a pipelined next request are left unconsumed until the
// caller calls ResumeNextMessage(), so the proxy reads one request at a time and answers
// them in order.
//
// What is refused (RFC 9112, and Envoy where the RFC lets a server choose), before OnHead:
//   400 http1.multiple_host          more than one Host
//   400 http1.missing_host           HTTP/1.1 without Host (an absolute-form target's
//                                    authority is accepted in its place, as Envoy does)
//   400 http1.invalid_host           Host empty or not host[:port] characters
//   501 http1.invalid_transfer_encoding  Transfer-Encoding other than one "chunked"
//   400 http1.transfer_encoding_not_allowed  Transfer-Encoding on HTTP/1.0
//   400 http1.content_length_and_chunked_not_allowed  both framings
//   400 http1.multiple_content_length  repeated Content-Length, even with equal values
//   400 http1.invalid_content_length   not a decimal number, or over 2^64-1
//   400 http1.invalid_characters     bad name or value bytes (NUL, CTLs, space before the
//                                    colon, empty name)
//   400 http1.codec_error            bare LF or CR, obsolete line folding, a malformed
//                                    request line, bad chunk syntax, anything else llhttp
//                                    refuses
//   400 http1.invalid_url            fragment, userinfo, a scheme other than http(s),
//                                    authority-form, "*" on a method other than OPTIONS
//   501 http1.unsupported_method     a method token llhttp does not know
//   501 http1.connect_not_supported  CONNECT (no tunnelling yet)
//   505 http1.unsupported_version    a well-formed HTTP/x.y other than 1.0 and 1.1, or the
//                                    HTTP/2 preface (a malformed version is a 400)
//   431 http1.too_many_headers, http1.headers_too_large   over the limits below
//   413 http1.payload_too_large      a body over max_body_bytes
// The same limits and syntax rules apply to trailers, counted separately.
class RequestDecoder {
 public:
  using Limits = RequestDecoderLimits;
  using Callbacks = DecoderCallbacks<RequestHead>;

  explicit RequestDecoder(Callbacks& callbacks);
  RequestDecoder(Callbacks& callbacks, const Limits& limits);
  ~RequestDecoder();
  RequestDecoder(const RequestDecoder&) = delete;
  RequestDecoder& operator=(const RequestDecoder&) = delete;

  // Consumes a prefix of `bytes` and sets *consumed to its length. Bytes not consumed (the
  // next request, while paused) must be passed again, after ResumeNextMessage(). Returns
  // OK, or the error that error() then details.
  absl::Status Decode(absl::string_view bytes, size_t* consumed);

  // Lets Decode() go on to the next message. May be called from OnComplete. Pointless after
  // a message with keep_alive false: the connection must close after its response.
  void ResumeNextMessage();

  // The client closed its side. OK between messages; an error if a request was cut short.
  absl::Status DecodeEof();

  // Paused after a complete message, waiting for ResumeNextMessage().
  bool awaiting_resume() const;
  // Some bytes of a request have been read and the request is not complete.
  bool message_in_progress() const;
  const DecodeError& error() const;
  // The current request's method and target as far as they were read, for the log line of a
  // request refused before its head was delivered: empty until seen; the target as sent.
  absl::string_view method_seen() const;
  absl::string_view target_seen() const;

 private:
  std::unique_ptr<internal::RequestCore> core_;
};

struct ResponseDecoderLimits {
  size_t max_header_bytes = 64 * 1024;  // status reason plus header names and values
  size_t max_header_count = 100;
};

// Decodes the responses an upstream sends on one connection (the client side).
//
// The decoder must be told, before each response, whether it answers a HEAD request
// (ExpectResponse), and it delivers only the final response: 1xx interim responses (100
// Continue, 103 Early Hints) are read and dropped, except 101 Switching Protocols, which is
// final. After OnComplete the decoder pauses until the next ExpectResponse().
class ResponseDecoder {
 public:
  using Limits = ResponseDecoderLimits;
  using Callbacks = DecoderCallbacks<ResponseHead>;

  explicit ResponseDecoder(Callbacks& callbacks);
  ResponseDecoder(Callbacks& callbacks, const Limits& limits);
  ~ResponseDecoder();
  ResponseDecoder(const ResponseDecoder&) = delete;
  ResponseDecoder& operator=(const ResponseDecoder&) = delete;

  // Arms the decoder for the response to the request just sent; call it before each
  // response, the first included, once the previous response is complete.
  void ExpectResponse(bool request_was_head);

  // As RequestDecoder::Decode. Bytes that arrive while no response is expected (before
  // ExpectResponse, after a complete response) are left unconsumed and make the connection
  // unfit for reuse.
  absl::Status Decode(absl::string_view bytes, size_t* consumed);

  // The upstream closed its side. Completes a body delimited by the close (OnComplete) and
  // returns OK; returns OK as well when no response was expected or it was complete.
  // Otherwise the response was cut short: detail "http1.eof_before_head" when the head was
  // not yet delivered (nothing reached the client: a retry is possible),
  // "http1.eof_mid_body" when it was.
  absl::Status DecodeEof();

  // The last response is complete (and the decoder is paused).
  bool message_complete() const;
  // A head was delivered for the expected response.
  bool head_delivered() const;
  // The final response was 101: the bytes after it belong to the upgraded protocol.
  bool upgraded() const;
  // Bytes came after the complete response or while none was expected.
  bool unexpected_bytes() const;
  // The connection can carry another request: the response is complete, keep-alive, not an
  // upgrade, and no stray byte came after it.
  bool connection_reusable() const;
  const DecodeError& error() const;

 private:
  std::unique_ptr<internal::ResponseCore> core_;
};

// The reason phrase of common statuses ("Not Found"); empty for others.
absl::string_view DefaultReasonPhrase(int status);

// Appends "METHOD target HTTP/1.1", then head.headers as stored, then the framing and
// connection fields, then the blank line. `headers` must not hold Content-Length,
// Transfer-Encoding or Connection (callers strip hop-by-hop fields first): the encoder writes
// them from head.framing (Content-Length for kContentLength, Transfer-Encoding: chunked for
// kChunked, nothing for kNone), head.keep_alive (Connection: close) and head.upgrade
// (Connection: upgrade, with the Upgrade field left in headers). When headers lack Host, a
// Host field is written from head.authority. Names and values are written unchecked: they
// must be valid field syntax (no CR, LF or NUL).
void EncodeRequestHead(const RequestHead& head, std::string* out);

// Appends "HTTP/1.1 status reason", the headers as stored, the framing and connection fields
// and the blank line. `reason` empty: DefaultReasonPhrase(status). As for requests, the
// framing fields come from `framing`; kNone writes Content-Length: 0 so that the client
// need not wait for a close; kUntilClose writes no length and Connection: close. 1xx and 204
// get no framing field (RFC 9110 8.6), 304 only a Content-Length. keep_alive false writes
// Connection: close; 101 writes Connection: upgrade. To a HEAD request, pass the framing the
// body would have had and send no body. An HTTP/1.0 client wanting keep-alive needs
// Connection: keep-alive in `headers`, and kChunked is not for HTTP/1.0 clients.
void EncodeResponseHead(int status, absl::string_view reason, const HeaderMap& headers,
                        BodyFraming framing, uint64_t content_length, bool keep_alive,
                        std::string* out);

// Chunked body pieces. EncodeChunk writes nothing for empty data (an empty chunk would end
// the body). EncodeChunkHeader writes only "size-in-hex CRLF", for a writer that sends the
// data from its own buffer (then "\r\n").
void EncodeChunkHeader(size_t size, std::string* out);
void EncodeChunk(absl::string_view data, std::string* out);
// The last chunk and the end of the body, with or without trailers.
void EncodeLastChunk(std::string* out);
void EncodeLastChunk(const HeaderMap& trailers, std::string* out);

}  // namespace sluice::gateway::http
