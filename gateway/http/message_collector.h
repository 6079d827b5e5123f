#pragma once
// Decoder callbacks for a caller that pulls: it feeds a decoder the bytes it read, then looks
// at what arrived (the head, body bytes it has not taken yet, trailers, the end), instead of
// reacting inside each callback. The session's coroutines read this way.
#include <string>

#include "absl/strings/string_view.h"
#include "gateway/http/header_map.h"
#include "gateway/http/http1_codec.h"

namespace sluice::gateway::http {

template <typename Head>
class MessageCollector final : public DecoderCallbacks<Head> {
 public:
  void OnHead(Head& head) override { head_ = &head; }
  void OnData(absl::string_view data) override { body_.append(data.data(), data.size()); }
  void OnTrailers(HeaderMap& trailers) override { trailers_ = &trailers; }
  void OnComplete() override { complete_ = true; }

  // Forgets the last message, before its decoder starts the next one. Keeps the body
  // buffer's capacity.
  void Reset() {
    head_ = nullptr;
    body_.clear();
    trailers_ = nullptr;
    complete_ = false;
  }

  // The decoder's head, once it has arrived; valid (and editable) until the decoder starts
  // the next message.
  Head* head() const { return head_; }
  // Body bytes decoded and not yet taken: the caller clears (or swaps out) what it uses.
  std::string& body() { return body_; }
  // The trailers of a chunked body, if there were any, once the message is complete.
  const HeaderMap* trailers() const { return trailers_; }
  bool complete() const { return complete_; }

 private:
  Head* head_ = nullptr;
  std::string body_;
  const HeaderMap* trailers_ = nullptr;
  bool complete_ = false;
};

}  // namespace sluice::gateway::http
