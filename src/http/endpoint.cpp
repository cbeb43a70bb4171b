#include "endpoint.h"

#include "limaoim/apijson/message_json.h"
#include "limaoim/base64/base64.h"

#include <algorithm>
#include <cctype>
#include <limits>
#include <optional>

namespace limaoim::http::endpoint {

// ---- responses ----

// Bodies are serialized by apijson::dump: strings from the core (uids of the
// binary protocol, core messages) may not be UTF-8, and are replaced rather
// than failing the whole response.

Response ok() { return {200, R"({"status":200})"}; }

Response error(uint16_t status, std::string_view message) {
    ordered_json body;
    body["msg"] = message;
    body["status"] = status;
    return {status, apijson::dump(body)};
}

Response data(const ordered_json& value) { return {200, apijson::dump(value)}; }

Response from_outcome(const im::Outcome& outcome) {
    switch (outcome.code) {
    case im::Outcome::Code::Ok:
        return ok();
    case im::Outcome::Code::BadRequest:
        return error(400, outcome.message);
    case im::Outcome::Code::Unavailable:
        break;
    }
    return error(500, outcome.message);
}

ordered_json message_resp(const im::Message& m) { return apijson::message_resp(m.view()); }

namespace {

// An upper bound of a message's MessageResp JSON: the payload in base64, its
// strings escaped at worst (\u00XX, 6 bytes a byte), keys and numbers.
size_t message_json_bound(const im::Message& m) {
    return base64::encoded_size(m.payload.size()) +
           6 * (m.client_msg_no.size() + m.from_uid.size() + m.channel_id.size() + m.topic.size()) + 384;
}

}  // namespace

// Drops messages past `budget` bytes of JSON, keeping the first or, with
// `keep_last`, the last; at least one always stays, so paging goes on. What
// is kept is taken from `budget` (down to 0). True when some were dropped.
//
// The service's read has stopped at about the same budget already
// (im::PageLimit, counted in stored bytes, which are fewer than their JSON):
// what it read holds every message kept here, and little more.
im::Outcome read_history(im::Service& service, const std::string& login_uid, const std::string& id, uint8_t type,
                         uint32_t from_seq, uint32_t to_seq, uint32_t limit, size_t budget, bool keep_newest,
                         HistoryPage& page) {
    bool read_cut = false;
    if (limit > 0) {
        im::Outcome outcome = service.channel_messages(login_uid, id, type, from_seq, to_seq, {limit, budget},
                                                       keep_newest, page.messages, read_cut);
        if (!outcome) return outcome;
    }
    page.cut = fit_budget(page.messages, budget, keep_newest) || read_cut;
    return im::Outcome::ok();
}

bool fit_budget(std::vector<im::Message>& messages, size_t& budget, bool keep_last) {
    size_t bytes = 0;
    size_t kept = 0;
    for (; kept < messages.size(); ++kept) {
        const im::Message& m = keep_last ? messages[messages.size() - 1 - kept] : messages[kept];
        const size_t json_bytes = message_json_bound(m);
        if (bytes + json_bytes > budget && kept > 0) break;
        bytes += json_bytes;
    }
    budget -= std::min(budget, bytes);
    if (kept == messages.size()) return false;
    if (keep_last) {
        messages.erase(messages.begin(), messages.end() - ptrdiff_t(kept));
    } else {
        messages.resize(kept);
    }
    return true;
}

ordered_json message_list(const std::vector<im::Message>& messages) {
    ordered_json list = ordered_json::array();
    for (const im::Message& m : messages) list.push_back(message_resp(m));
    return list;
}

// ---- request fields ----

// Absent and null both mean "not given" (as in Go's encoding/json).
const json* field(const json& body, const char* key) {
    auto it = body.find(key);
    return it == body.end() || it->is_null() ? nullptr : &*it;
}

bool blank(std::string_view s) { return s.find_first_not_of(" \t\r\n") == std::string_view::npos; }

std::string text(const json& body, const char* key, Need need) {
    const json* value = field(body, key);
    if (value && !value->is_string()) throw Invalid{std::string(key) + " must be a string"};
    std::string out = value ? value->get<std::string>() : std::string();
    if (need == Need::Required && blank(out)) throw Invalid{std::string(key) + " is required"};
    return out;
}

// An integer field in [lo, hi]; 0 when absent. Floats and booleans are
// refused, as Go refuses them for its integer fields.
int64_t integer(const json& body, const char* key, int64_t lo, int64_t hi) {
    const json* value = field(body, key);
    if (!value) return 0;
    if (!value->is_number_integer()) throw Invalid{std::string(key) + " must be an integer"};
    if (value->is_number_unsigned() && value->get<uint64_t>() > uint64_t(hi))
        throw Invalid{std::string(key) + " is out of range"};
    const int64_t n = value->get<int64_t>();
    if (n < lo || n > hi) throw Invalid{std::string(key) + " is out of range"};
    return n;
}

uint8_t byte_field(const json& body, const char* key) { return uint8_t(integer(body, key, 0, 255)); }

uint32_t u32_field(const json& body, const char* key) {
    return uint32_t(integer(body, key, 0, std::numeric_limits<uint32_t>::max()));
}

// A "limit": negative is an error (§16.2); past kMaxPageMessages it is
// clamped, as the original clamps its page sizes: one request reads a page.
uint32_t limit_field(const json& body) {
    const int64_t limit = integer(body, "limit", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max());
    if (limit < 0) throw Invalid{"limit must not be negative"};
    return uint32_t(std::min<int64_t>(limit, kMaxPageMessages));
}

// Flags and switches count as set only when equal to 1 (§16.2).
bool is_one(const json& body, const char* key) {
    return integer(body, key, std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()) == 1;
}

std::vector<std::string> string_list(const json& list, const char* what) {
    if (!list.is_array()) throw Invalid{std::string(what) + " must be an array of strings"};
    std::vector<std::string> out;
    out.reserve(list.size());
    for (const json& item : list) {
        if (!item.is_string()) throw Invalid{std::string(what) + " must be an array of strings"};
        out.push_back(item.get<std::string>());
    }
    return out;
}

std::vector<std::string> strings(const json& body, const char* key, Need need) {
    const json* value = field(body, key);
    std::vector<std::string> out = value ? string_list(*value, key) : std::vector<std::string>();
    if (need == Need::Required && out.empty()) throw Invalid{std::string(key) + " must not be empty"};
    return out;
}

const json& object(const json& body) {
    if (!body.is_object()) throw Invalid{"the request body must be a JSON object"};
    return body;
}

// channel_type != 0, as the list endpoints and POST /channel require.
uint8_t nonzero_channel_type(const json& body) {
    const uint8_t type = byte_field(body, "channel_type");
    if (type == 0) throw Invalid{"channel_type must not be 0"};
    return type;
}


uint8_t header_flags(const json& body) {
    const json* header = field(body, "header");
    if (!header) return 0;
    if (!header->is_object()) throw Invalid{"header must be an object"};
    uint8_t flags = 0;
    if (is_one(*header, "no_persist")) flags |= 0x01;
    if (is_one(*header, "red_dot")) flags |= 0x02;
    if (is_one(*header, "sync_once")) flags |= 0x04;
    return flags;
}

std::string payload_field(const json& body) {
    std::optional<std::string> payload = base64::decode(text(body, "payload"));
    if (!payload) throw Invalid{"payload is not valid base64"};
    if (payload->empty()) throw Invalid{"payload must not be empty"};
    return std::move(*payload);
}

// A GET request's query string as a JSON object of strings (the fields the
// endpoints read): percent-decoded, '+' as space, the last of repeated keys.
json query_object(std::string_view query) {
    auto decode = [](std::string_view in) {
        std::string out;
        for (size_t i = 0; i < in.size(); ++i) {
            if (in[i] == '+') {
                out.push_back(' ');
            } else if (in[i] == '%' && i + 2 < in.size() && std::isxdigit(uint8_t(in[i + 1])) &&
                       std::isxdigit(uint8_t(in[i + 2]))) {
                out.push_back(char(std::stoi(std::string(in.substr(i + 1, 2)), nullptr, 16)));
                i += 2;
            } else {
                out.push_back(in[i]);
            }
        }
        return out;
    };
    json out = json::object();
    while (!query.empty()) {
        const size_t amp = query.find('&');
        const std::string_view pair = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
        if (pair.empty()) continue;
        const size_t eq = pair.find('=');
        out[decode(pair.substr(0, eq))] = eq == std::string_view::npos ? std::string() : decode(pair.substr(eq + 1));
    }
    return out;
}

}  // namespace limaoim::http::endpoint
