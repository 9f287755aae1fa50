// Plain HTTP GET for tests (libcurl): scraping a coordinator's /metrics and asking Prometheus's
// HTTP API. Tests only; the coordinator serves HTTP through prometheus-cpp and never acts as a client.
#pragma once

#include <string>

namespace keel::coord::testing {

struct HttpResponse {
  long status = 0;
  std::string body;
};

// GET `url`; throws std::runtime_error (naming the URL) when no response came back.
HttpResponse http_get(const std::string& url, double timeout_seconds = 10);

// `text` percent-encoded for a URL query parameter.
std::string url_encode(const std::string& text);

}  // namespace keel::coord::testing
