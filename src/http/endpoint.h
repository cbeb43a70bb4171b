// What every endpoint of the HTTP API is made of (SERVER.md §16.0), shared
// by LiMaoIM's route table (api.cpp) and WuKongIM's (wk_api.cpp): the
// answers, the request field readers that throw Invalid (a 400), the paged
// message lists, and the route entry itself. Private to src/http.
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "limaoim/http/api.h"
#include "limaoim/im/service.h"

namespace limaoim::http::endpoint {

using nlohmann::json;
using nlohmann::ordered_json;  // the response keys keep the order of §16.0

// ---- answers ----

Response ok();                                              // 200 {"status":200}
Response error(uint16_t status, std::string_view message);  // {"msg": message, "status": status}
Response data(const ordered_json& value);                   // 200, the value as the body
Response from_outcome(const im::Outcome& outcome);          // ok(), 400 or 500

// MessageResp (§16.0), keys in the spec's order: shared with the webhooks.
ordered_json message_resp(const im::Message& m);
ordered_json message_list(const std::vector<im::Message>& messages);

// Drops messages past `budget` bytes of JSON, keeping the first or, with
// `keep_last`, the last; at least one always stays, so paging goes on. What
// is kept is taken from `budget` (down to 0). True when some were dropped.
bool fit_budget(std::vector<im::Message>& messages, size_t& budget, bool keep_last);

// One page of a channel's history, seqs in [from_seq, to_seq) (0: no bound),
// at most `limit` messages and the byte budget, keeping the newest or the
// oldest; `cut` when the budget left some out. Either message sync
// (LiMaoIM's, WuKongIM's) answers with it.
struct HistoryPage {
    std::vector<im::Message> messages;
    bool cut = false;
};
im::Outcome read_history(im::Service& service, const std::string& login_uid, const std::string& id, uint8_t type,
                         uint32_t from_seq, uint32_t to_seq, uint32_t limit, size_t budget, bool keep_newest,
                         HistoryPage& page);

// ---- request fields ----

// A request the HTTP layer refuses (400): thrown by the field readers below
// and caught in Api::route, so each endpoint reads as a list of its fields.
struct Invalid {
    std::string message;
};

enum class Need : uint8_t { Optional, Required };

// Absent and null both mean "not given" (as in Go's encoding/json).
const json* field(const json& body, const char* key);
bool blank(std::string_view s);  // empty or only whitespace
std::string text(const json& body, const char* key, Need need = Need::Optional);
// An integer field in [lo, hi]; 0 when absent. Floats and booleans are
// refused, as Go refuses them for its integer fields.
int64_t integer(const json& body, const char* key, int64_t lo, int64_t hi);
uint8_t byte_field(const json& body, const char* key);
uint32_t u32_field(const json& body, const char* key);
// A "limit": negative is an error (§16.2); past kMaxPageMessages clamped.
uint32_t limit_field(const json& body);
// Flags and switches count as set only when equal to 1 (§16.2).
bool is_one(const json& body, const char* key);
std::vector<std::string> string_list(const json& list, const char* what);
std::vector<std::string> strings(const json& body, const char* key, Need need = Need::Optional);
const json& object(const json& body);
// channel_type != 0, as the list endpoints and POST /channel require.
uint8_t nonzero_channel_type(const json& body);

// A message's "header" object as RedDot | SyncOnce | NoPersist bits (0 when absent).
uint8_t header_flags(const json& body);
// "payload": base64 of a non-empty plaintext, decoded.
std::string payload_field(const json& body);

// A GET request's query string as a JSON object of strings (the fields the
// endpoints read): percent-decoded, '+' as space, the last of repeated keys.
json query_object(std::string_view query);

// ---- routes ----

// The last argument is ApiOptions::message_bytes_budget.
using Endpoint = Response (*)(im::Service&, const json&, size_t);

struct Route {
    std::string_view path;
    const char* method;  // GET endpoints read the query string, the others a JSON body
    Endpoint endpoint;
};

}  // namespace limaoim::http::endpoint
