#pragma once

namespace sluice::config {

// True for the status codes Go's net/http StatusText knows: Istio's webhook accepts exactly
// these as bare codes in retryOn.
bool IsKnownHttpStatus(int code);

}  // namespace sluice::config
