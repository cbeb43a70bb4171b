// WuKongIM v2's HTTP API where it differs from LiMaoIM's (docs/WKAPI.md),
// so a business server written for WuKongIM works unchanged. Answers and
// errors have WuKongIM's shapes, which are LiMaoIM's: 200 {"status":200},
// 400 {"msg": ..., "status": 400}. The same screen (secret, Origin, Host)
// guards these routes as every other (Api::screen). Private to src/http.
#pragma once

#include <span>

#include "endpoint.h"

namespace limaoim::http::wukongim {

// The paths LiMaoIM's table does not have (Api::route looks here second).
std::span<const endpoint::Route> routes();

// The two paths both dialects share with different fields: a request
// naming one of WuKongIM's fields is WuKongIM's (LiMaoIM's endpoint hands
// it over); one naming neither is read as LiMaoIM's, as before.
//   POST /channel: reset, large, ban, send_ban, allow_stranger, disband
//     (WuKongIM adds the subscribers unless reset is 1; LiMaoIM replaces them);
//   POST /channel/messagesync: start_message_seq, end_message_seq, pull_mode
//     (LiMaoIM's are min_message_seq, max_message_seq, reverse).
bool is_channel_put(const endpoint::json& body);
Response channel_put(im::Service& service, const endpoint::json& body, size_t message_bytes_budget);
bool is_message_sync(const endpoint::json& body);
Response message_sync(im::Service& service, const endpoint::json& body, size_t message_bytes_budget);

}  // namespace limaoim::http::wukongim
