// A minimal blocking HTTP/1.1 client for the server's JSON API in tests: one
// request per connection (Connection: close), a timeout on every wait.
#pragma once

#include <cctype>
#include <cstdint>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

namespace limaoim::testing {

// `s` in ASCII lower case: HTTP header names and tokens compare that way.
inline std::string lower(std::string s) {
    for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

struct HttpResult {
    int status = 0;  // 0: no (complete) response: connect failure, timeout, garbage
    std::string body;
    std::map<std::string, std::string> headers;  // names lowercased
    std::string error;                           // why status is 0
};

HttpResult http_request(uint16_t port, const std::string& method, const std::string& path, const std::string& body,
                        const std::string& bearer = "", int timeout_ms = 5000,
                        const std::string& host = "127.0.0.1");

// `body` sent as JSON (nothing for a null body, e.g. a GET) and the answer
// parsed. Returns a discarded json (is_discarded()) when there is no response
// or its body is not JSON; `status` (optional) gets the HTTP status.
nlohmann::json http_json(uint16_t port, const std::string& method, const std::string& path,
                         const nlohmann::json& body = nullptr, int* status = nullptr);

}  // namespace limaoim::testing
