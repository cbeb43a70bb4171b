// Helpers the messaging, API, conversation and webhook integration tests
// share: time, base64 of the API's byte fields, a JSON POST that checks its
// status, and a logged-in chat client.
#pragma once

#include <doctest/doctest.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "chat_client.h"
#include "http_client.h"
#include "im_server.h"
#include "limaoim/base64/base64.h"

namespace limaoim::testing {

using Clock = std::chrono::steady_clock;

inline int64_t ms_since(Clock::time_point t0) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
}

inline std::string b64(std::string_view s) { return base64::encode(s); }

inline std::string unb64(const std::string& s) { return base64::decode(s).value_or("<bad base64: " + s + ">"); }

// POST `body` as JSON; the test stops unless the status is `expect`.
inline nlohmann::json post(uint16_t http_port, const std::string& path, const nlohmann::json& body, int expect = 200) {
    int status = 0;
    nlohmann::json r = http_json(http_port, "POST", path, body, &status);
    REQUIRE_MESSAGE(status == expect, path << " " << body.dump() << " -> " << status << " " << r.dump());
    return r;
}

// A client logged in as `uid`; the test stops if the login fails.
inline ChatClient online(ImServer& server, const std::string& uid, uint8_t version = 4, uint8_t device_flag = 0,
                         const std::string& token = "") {
    ChatClient c;
    REQUIRE_MESSAGE(c.connect_login(server.port(), uid, version, device_flag, token),
                    "login of " << uid << " v" << int(version) << " flag " << int(device_flag));
    return c;
}

}  // namespace limaoim::testing
