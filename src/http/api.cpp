#include "limaoim/http/api.h"

#include "endpoint.h"
#include "wk_api.h"
#include "limaoim/net/address.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cctype>
#include <limits>
#include <nlohmann/json.hpp>
#include <utility>
#include <vector>

namespace limaoim::http {

namespace {

using nlohmann::json;
using namespace endpoint;  // the helpers every endpoint uses (endpoint.h)

// ---- endpoints (§16.1-16.3) ----

Response user_token(im::Service& service, const json& body, size_t) {
    object(body);
    const std::string uid = text(body, "uid", Need::Required);
    const std::string token = text(body, "token", Need::Required);
    const uint8_t device_flag = byte_field(body, "device_flag");
    const uint8_t device_level = byte_field(body, "device_level");
    return from_outcome(service.set_token(uid, token, device_flag, device_level));
}

Response online_status(im::Service& service, const json& body, size_t) {
    if (!body.is_array()) throw Invalid{"the request body must be a JSON array of uids"};
    const std::vector<std::string> online = service.online_uids(string_list(body, "uids"));
    return data(ordered_json(online));
}

Response system_uids_add(im::Service& service, const json& body, size_t) {
    return from_outcome(service.add_system_uids(strings(object(body), "uids")));
}

Response system_uids_remove(im::Service& service, const json& body, size_t) {
    return from_outcome(service.remove_system_uids(strings(object(body), "uids")));
}

Response channel_put(im::Service& service, const json& body, size_t message_bytes_budget) {
    if (wukongim::is_channel_put(body)) return wukongim::channel_put(service, body, message_bytes_budget);
    object(body);
    const std::string id = text(body, "channel_id", Need::Required);
    const uint8_t type = nonzero_channel_type(body);
    if (type == im::kPersonChannel) throw Invalid{"person channels are not created with POST /channel"};
    const std::string parent = text(body, "bind");
    integer(body, "forbidden", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max());  // accepted, unused (§16.3)
    return from_outcome(service.put_channel(id, type, parent, strings(body, "subscribers")));
}

Response subscriber_add(im::Service& service, const json& body, size_t) {
    object(body);
    const std::string id = text(body, "channel_id", Need::Required);
    const std::vector<std::string> subscribers = strings(body, "subscribers", Need::Required);
    uint8_t type = byte_field(body, "channel_type");
    if (type == im::kPersonChannel) throw Invalid{"person channels take no subscribers"};
    if (type == 0) type = im::kGroupChannel;
    return from_outcome(service.add_subscribers(id, type, subscribers, is_one(body, "reset")));
}

Response subscriber_remove(im::Service& service, const json& body, size_t) {
    object(body);
    const std::string id = text(body, "channel_id", Need::Required);
    const std::vector<std::string> subscribers = strings(body, "subscribers", Need::Required);
    return from_outcome(service.remove_subscribers(id, byte_field(body, "channel_type"), subscribers));
}

Response channel_delete(im::Service& service, const json& body, size_t) {
    object(body);
    const std::string id = text(body, "channel_id", Need::Required);
    return from_outcome(service.delete_channel(id, byte_field(body, "channel_type")));
}

// The six list endpoints: _add and _remove need a channel type and uids,
// _set only the channel (empty uids clear the list).
template <im::ListKind kList, im::ListEdit kEdit>
Response list_edit(im::Service& service, const json& body, size_t) {
    object(body);
    const std::string id = text(body, "channel_id", Need::Required);
    if constexpr (kEdit == im::ListEdit::Set) {
        return from_outcome(service.edit_list(id, byte_field(body, "channel_type"), kList, kEdit, strings(body, "uids")));
    } else {
        const uint8_t type = nonzero_channel_type(body);
        return from_outcome(service.edit_list(id, type, kList, kEdit, strings(body, "uids", Need::Required)));
    }
}

Response message_send(im::Service& service, const json& body, size_t) {
    object(body);
    im::ApiSend send;
    send.header_flags = header_flags(body);
    send.client_msg_no = text(body, "client_msg_no");
    send.from_uid = text(body, "from_uid");
    send.channel_id = text(body, "channel_id");
    send.channel_type = byte_field(body, "channel_type");
    send.subscribers = strings(body, "subscribers");
    send.payload = payload_field(body);
    send.expire = u32_field(body, "expire");
    if (send.channel_id.empty() && send.subscribers.empty())
        throw Invalid{"channel_id or subscribers is required"};
    im::ApiSent sent;
    if (im::Outcome outcome = service.send(send, sent); !outcome) return from_outcome(outcome);
    // WuKongIM's answer: what the message became (LiMaoIM's clients read the status alone).
    ordered_json out;
    out["status"] = 200;
    out["data"]["message_id"] = sent.message_id;
    out["data"]["message_seq"] = sent.message_seq;
    out["data"]["client_msg_no"] = sent.client_msg_no;
    return data(out);
}

Response message_sync(im::Service& service, const json& body, size_t message_bytes_budget) {
    object(body);
    const std::string uid = text(body, "uid", Need::Required);
    const uint32_t after_seq = u32_field(body, "message_seq");
    const uint32_t limit = limit_field(body);
    std::vector<im::Message> messages;
    if (limit > 0) {
        if (im::Outcome outcome = service.sync(uid, after_seq, {limit, message_bytes_budget}, messages); !outcome)
            return from_outcome(outcome);
    }
    // The rest comes with the next sync, after the client acks these.
    fit_budget(messages, message_bytes_budget, false);
    return data(message_list(messages));
}

Response message_sync_ack(im::Service& service, const json& body, size_t) {
    object(body);
    const std::string uid = text(body, "uid", Need::Required);
    const uint32_t seq = u32_field(body, "last_message_seq");
    if (seq == 0) throw Invalid{"last_message_seq must not be 0"};
    return from_outcome(service.sync_ack(uid, seq));
}

Response channel_message_sync(im::Service& service, const json& body, size_t message_bytes_budget) {
    if (wukongim::is_message_sync(body)) return wukongim::message_sync(service, body, message_bytes_budget);
    object(body);
    const std::string login_uid = text(body, "login_uid");
    const std::string id = text(body, "channel_id", Need::Required);
    const uint8_t type = byte_field(body, "channel_type");
    const uint32_t min_seq = u32_field(body, "min_message_seq");
    const uint32_t max_seq = u32_field(body, "max_message_seq");
    const uint32_t limit = limit_field(body);
    const HistoryWindow window = message_sync_window(min_seq, max_seq, limit, is_one(body, "reverse"));
    // A client pages back from max (reverse 0, min 0) by the oldest seq it
    // got, forward by the newest: an early end keeps the side it continues
    // from (the read goes from that side, then the response is cut there).
    const bool paging_back = !is_one(body, "reverse") && min_seq == 0 && max_seq != 0;
    HistoryPage page;
    if (!window.empty) {
        im::Outcome outcome = read_history(service, login_uid, id, type, window.from_seq, window.to_seq, window.limit,
                                           message_bytes_budget, paging_back, page);
        if (!outcome) return from_outcome(outcome);
    }
    ordered_json out;
    out["min_message_seq"] = min_seq;
    out["max_message_seq"] = max_seq;
    // The original also clears `more` when the last seq equals min (forward)
    // or max (backward); the window excludes both, so that never happens here.
    out["more"] = page.messages.size() < limit && !page.cut ? 0 : 1;
    out["messages"] = message_list(page.messages);
    return data(out);
}

// ---- conversations (§16.4) ----

ordered_json conversation_json(const im::Conversation& c) {
    ordered_json out;
    out["channel_id"] = c.channel_id;
    out["channel_type"] = c.channel_type;
    out["unread"] = c.unread;
    out["timestamp"] = c.timestamp;
    return out;
}

Response conversations_list(im::Service& service, const json& query, size_t) {
    const std::string uid = text(query, "uid", Need::Required);
    std::vector<im::ConversationView> views;
    if (im::Outcome outcome = service.conversations(uid, views); !outcome) return from_outcome(outcome);
    ordered_json list = ordered_json::array();
    for (const im::ConversationView& view : views) {
        ordered_json item = conversation_json(view.conversation);
        item["last_message"] = view.last_message ? message_resp(*view.last_message) : ordered_json(nullptr);
        list.push_back(std::move(item));
    }
    return data(list);
}

// uid, channel_id and channel_type, all required.
struct ConversationKey {
    std::string uid, channel_id;
    uint8_t channel_type;
};
ConversationKey conversation_key(const json& body) {
    object(body);
    ConversationKey key;
    key.uid = text(body, "uid", Need::Required);
    key.channel_id = text(body, "channel_id", Need::Required);
    key.channel_type = nonzero_channel_type(body);
    return key;
}

Response conversations_clear_unread(im::Service& service, const json& body, size_t) {
    const ConversationKey key = conversation_key(body);
    return from_outcome(service.set_unread(key.uid, key.channel_id, key.channel_type, 0));
}

Response conversations_set_unread(im::Service& service, const json& body, size_t) {
    const ConversationKey key = conversation_key(body);
    return from_outcome(service.set_unread(key.uid, key.channel_id, key.channel_type, u32_field(body, "unread")));
}

Response conversations_delete(im::Service& service, const json& body, size_t) {
    object(body);
    // WuKongIM names one user, "uid"; LiMaoIM a list, "uids".
    const std::vector<std::string> uids = field(body, "uids") || !field(body, "uid")
                                              ? strings(body, "uids", Need::Required)
                                              : std::vector<std::string>{text(body, "uid", Need::Required)};
    const std::string channel_id = text(body, "channel_id", Need::Required);
    return from_outcome(service.delete_conversation(uids, channel_id, nonzero_channel_type(body)));
}

// More than this per channel is clamped: a page, not the whole log.
constexpr int64_t kMaxSyncMessages = 1000;

// With "msg_count" > 0 (WuKongIM's business servers ask so; the original
// LiMaoIM ignored it) each conversation's "recents" are its newest messages,
// newest first, within one byte budget for the whole answer as in
// /conversation/syncMessages; otherwise null. "readed_to_msg_seq" is
// WuKongIM's too: the last seq the user has read (last_msg_seq - unread).
Response conversation_sync(im::Service& service, const json& body, size_t message_bytes_budget) {
    object(body);
    const std::string uid = text(body, "uid", Need::Required);
    const int64_t version = integer(body, "version", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max());
    text(body, "last_msg_seqs");  // accepted and ignored, as by the original; must be a string
    const int64_t count = std::min(
        integer(body, "msg_count", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()),
        kMaxSyncMessages);
    std::vector<im::Conversation> changed;
    if (im::Outcome outcome = service.sync_conversations(uid, version, changed); !outcome) return from_outcome(outcome);
    ordered_json list = ordered_json::array();
    std::vector<im::Message> recents;
    size_t budget_left = message_bytes_budget;
    for (const im::Conversation& c : changed) {
        ordered_json item = conversation_json(c);
        item["last_msg_seq"] = c.last_msg_seq;
        item["last_client_msg_no"] = c.last_client_msg_no;
        item["offset_msg_seq"] = 0;
        item["readed_to_msg_seq"] = c.last_msg_seq > c.unread ? c.last_msg_seq - c.unread : 0;
        item["version"] = c.version;
        if (count > 0) {
            recents.clear();
            if (budget_left > 0) {
                im::Outcome outcome = service.recent_messages(uid, c.channel_id, c.channel_type, 0,
                                                              {uint32_t(count), budget_left}, recents);
                if (!outcome) return from_outcome(outcome);
                fit_budget(recents, budget_left, false);  // newest first: keeps the newest
            }
            item["recents"] = message_list(recents);
        } else {
            item["recents"] = nullptr;
        }
        list.push_back(std::move(item));
    }
    return data(list);
}

// One byte budget for the whole response: each channel is read, newest
// first, within what the channels before it left (the one that spends it
// still gets its newest message); the channels after that come with no
// messages and are not read. The client asks again for those.
Response conversation_sync_messages(im::Service& service, const json& body, size_t message_bytes_budget) {
    object(body);
    const std::string uid = text(body, "uid", Need::Required);
    int64_t count = integer(body, "msg_count", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max());
    count = count <= 0 ? 15 : std::min(count, kMaxSyncMessages);
    const json* channels = field(body, "channels");
    if (channels && !channels->is_array()) throw Invalid{"channels must be an array"};
    ordered_json list = ordered_json::array();
    if (!channels) return data(list);
    std::vector<im::Message> messages;
    size_t budget_left = message_bytes_budget;
    for (const json& channel : *channels) {
        if (!channel.is_object()) throw Invalid{"each of channels must be an object"};
        const std::string id = text(channel, "channel_id", Need::Required);
        const uint8_t type = nonzero_channel_type(channel);
        const uint32_t last_seq = u32_field(channel, "last_msg_seq");
        messages.clear();
        if (budget_left > 0) {
            im::Outcome outcome =
                service.recent_messages(uid, id, type, last_seq, {uint32_t(count), budget_left}, messages);
            if (!outcome) return from_outcome(outcome);
            fit_budget(messages, budget_left, false);  // newest first: keeps the newest
        }
        ordered_json item;
        item["channel_id"] = id;
        item["channel_type"] = type;
        item["messages"] = message_list(messages);
        list.push_back(std::move(item));
    }
    return data(list);
}

constexpr Route kRoutes[] = {
    {"/user/token", "POST", user_token},
    {"/user/onlinestatus", "POST", online_status},
    {"/systemuids_add", "POST", system_uids_add},
    {"/systemuids_remove", "POST", system_uids_remove},
    {"/user/systemuids_add", "POST", system_uids_add},  // WuKongIM v2's paths of the same two calls
    {"/user/systemuids_remove", "POST", system_uids_remove},
    {"/channel", "POST", channel_put},
    {"/channel/subscriber_add", "POST", subscriber_add},
    {"/channel/subscriber_remove", "POST", subscriber_remove},
    {"/channel/delete", "POST", channel_delete},
    {"/channel/blacklist_add", "POST", list_edit<im::ListKind::Deny, im::ListEdit::Add>},
    {"/channel/blacklist_set", "POST", list_edit<im::ListKind::Deny, im::ListEdit::Set>},
    {"/channel/blacklist_remove", "POST", list_edit<im::ListKind::Deny, im::ListEdit::Remove>},
    {"/channel/whitelist_add", "POST", list_edit<im::ListKind::Allow, im::ListEdit::Add>},
    {"/channel/whitelist_set", "POST", list_edit<im::ListKind::Allow, im::ListEdit::Set>},
    {"/channel/whitelist_remove", "POST", list_edit<im::ListKind::Allow, im::ListEdit::Remove>},
    {"/message/send", "POST", message_send},
    {"/message/sync", "POST", message_sync},
    {"/message/syncack", "POST", message_sync_ack},
    {"/channel/messagesync", "POST", channel_message_sync},
    {"/conversations", "GET", conversations_list},
    {"/conversations/clearUnread", "POST", conversations_clear_unread},
    {"/conversations/setUnread", "POST", conversations_set_unread},
    {"/conversations/delete", "POST", conversations_delete},
    {"/conversation/sync", "POST", conversation_sync},
    {"/conversation/syncMessages", "POST", conversation_sync_messages},
};

// ---- who calls (Api::screen) ----

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

bool equals_ignoring_case(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(uint8_t(x)) == std::tolower(uint8_t(y));
           });
}

// An Origin naming the API's own address (host[:port] == Host, either
// scheme: a proxy in front may end TLS): a page the API served itself (the
// demo). A page on another name rebound to this address fails the Host rule
// instead, or has no secret.
bool same_origin(std::string_view origin, std::string_view host) {
    for (std::string_view scheme : {"http://", "https://"}) {
        if (origin.size() > scheme.size() && equals_ignoring_case(origin.substr(0, scheme.size()), scheme))
            return !host.empty() && equals_ignoring_case(origin.substr(scheme.size()), host);
    }
    return false;
}

// A Host header (name or address, an optional :port) naming the loopback
// interface: localhost, 127.x.x.x or [::1].
bool loopback_host(std::string_view host) {
    std::string_view name = host;
    std::string_view port;
    if (host.starts_with('[')) {
        const size_t close = host.find(']');
        if (close == std::string_view::npos) return false;
        name = host.substr(0, close + 1);
        port = host.substr(close + 1);
    } else if (const size_t colon = host.find(':'); colon != std::string_view::npos) {
        name = host.substr(0, colon);
        port = host.substr(colon);
    }
    if (!port.empty() && (port.size() < 2 || port.front() != ':' ||
                          !std::all_of(port.begin() + 1, port.end(), [](char c) { return c >= '0' && c <= '9'; })))
        return false;
    if (name.starts_with('[')) {
        if (!name.ends_with(']')) return false;
        name = name.substr(1, name.size() - 2);
    }
    return net::is_loopback_host(name);
}

std::array<uint8_t, 32> sha256(std::string_view bytes) {
    std::array<uint8_t, 32> digest{};
    unsigned int size = 0;
    EVP_Digest(bytes.data(), bytes.size(), digest.data(), &size, EVP_sha256(), nullptr);
    return digest;
}

}  // namespace

HistoryWindow message_sync_window(uint32_t min_seq, uint32_t max_seq, uint32_t limit, bool forward) {
    HistoryWindow window;
    window.to_seq = max_seq;  // both directions keep seq < max when max != 0
    window.limit = limit;
    if (forward) {
        // From min+1, at most max-min messages when max bounds the window.
        if (max_seq != 0 && max_seq > min_seq) window.limit = std::min(limit, max_seq - min_seq);
        window.from_seq = min_seq + 1;
        window.empty = min_seq == std::numeric_limits<uint32_t>::max();
    } else if (min_seq == 0) {
        // The newest `limit` below max (the oldest `limit` when max is 0 too).
        window.from_seq = max_seq > limit ? max_seq - limit : 0;
    } else {
        window.from_seq = min_seq + 1;
        window.empty = min_seq == std::numeric_limits<uint32_t>::max();
    }
    if (window.to_seq != 0 && window.from_seq >= window.to_seq) window.empty = true;
    return window;
}

Api::Api(im::Service& service, ApiOptions options, Probes probes, std::span<const StaticFile> static_files)
    : service_(service),
      allowed_origins_(std::move(options.allowed_origins)),
      message_bytes_budget_(options.message_bytes_budget),
      probes_(std::move(probes)),
      static_files_(static_files) {
    if (!options.bearer_secret.empty()) secret_digest_ = sha256(options.bearer_secret);
}

// GET /health: 200 {"status":200}, or 503 with what is wrong. GET /metrics:
// the Prometheus text. Neither reads a body or the query.
Response Api::probe(const Request& request) const {
    if (request.method != "GET") {
        Response response = error(405, "method not allowed");
        response.allow = "GET";
        return response;
    }
    if (request.path == "/health") {
        std::string why;
        if (probes_.health && !probes_.health(why)) return error(503, why.empty() ? "unhealthy" : why);
        return ok();
    }
    if (!probes_.metrics) return error(404, "not found");
    Response response{200, probes_.metrics()};
    response.content_type = kPrometheusContentType;
    return response;
}

std::optional<Response> Api::screen(const Request& head) const {
    if (head.method == "GET" && is_static(head.path)) return std::nullopt;
    const std::string_view origin = trim(head.origin);
    const std::string_view host = trim(head.host);
    if (head.method == "OPTIONS" && is_allowed_origin(origin)) return std::nullopt;
    if (!origin.empty() && !same_origin(origin, host) && !is_allowed_origin(origin))
        return error(403, "the web page at " + std::string(origin) +
                              " may not call this API: add its origin to http_allowed_origins");
    if (!secret_digest_ && !host.empty() && !loopback_host(host))
        return error(403, "Host " + std::string(host) +
                              " is not a loopback address and no http_secret is set: call 127.0.0.1 or localhost");
    if (!authorized(head.authorization, head.token)) return error(401, "unauthorized");
    return std::nullopt;
}

bool Api::is_allowed_origin(std::string_view origin) const {
    return !origin.empty() && std::any_of(allowed_origins_.begin(), allowed_origins_.end(), [&](const std::string& allowed) {
        return equals_ignoring_case(allowed, origin);
    });
}

bool Api::is_static(std::string_view path) const {
    return std::any_of(static_files_.begin(), static_files_.end(),
                       [&](const StaticFile& file) { return file.path == path; });
}

bool Api::authorized(std::string_view authorization, std::string_view token) const {
    if (!secret_digest_) return true;
    if (!token.empty() && is_secret(token)) return true;
    // The scheme is case-insensitive (RFC 7235).
    constexpr std::string_view kScheme = "bearer ";
    if (authorization.size() < kScheme.size()) return false;
    for (size_t i = 0; i < kScheme.size(); ++i)
        if (char(std::tolower(uint8_t(authorization[i]))) != kScheme[i]) return false;
    std::string_view bearer = authorization.substr(kScheme.size());
    while (!bearer.empty() && bearer.front() == ' ') bearer.remove_prefix(1);
    while (!bearer.empty() && bearer.back() == ' ') bearer.remove_suffix(1);
    return is_secret(bearer);
}

// Compared by digest, in constant time, so neither the secret's bytes nor
// its length leak.
bool Api::is_secret(std::string_view candidate) const {
    if (!secret_digest_) return false;
    const std::array<uint8_t, 32> digest = sha256(candidate);
    return CRYPTO_memcmp(digest.data(), secret_digest_->data(), digest.size()) == 0;
}

Response Api::handle(const Request& request) const {
    try {
        if (std::optional<Response> refused = screen(request)) return std::move(*refused);
        // A page at an allowed origin reads an answer only when the answer
        // names it; its preflight asks whether it may send at all.
        const std::string_view origin = trim(request.origin);
        const bool cross_origin = is_allowed_origin(origin);
        Response response = cross_origin && request.method == "OPTIONS" ? ok() : route(request);
        if (cross_origin) response.allow_origin = origin;
        return response;
    } catch (...) {
        // Out of memory while building an error, or something the core threw
        // that is no std::exception: a body short enough for the string's
        // inline buffer, so this allocates nothing.
        return {500, R"({"status":500})"};
    }
}

Response Api::route(const Request& request) const {
    try {
        if (request.method == "GET") {
            for (const StaticFile& file : static_files_) {
                if (file.path != request.path) continue;
                Response response{file.status, std::string(file.body)};
                response.content_type = file.content_type;
                return response;
            }
        }
        if (request.path == "/health" || request.path == "/metrics") return probe(request);
        // LiMaoIM's routes, then WuKongIM's (no path is in both tables).
        const auto by_path = [&](const Route& r) { return r.path == request.path; };
        const Route* found = std::find_if(std::begin(kRoutes), std::end(kRoutes), by_path);
        if (found == std::end(kRoutes)) {
            const std::span<const Route> wk = wukongim::routes();
            const auto wk_found = std::find_if(wk.begin(), wk.end(), by_path);
            if (wk_found == wk.end()) return error(404, "not found");
            found = &*wk_found;
        }
        if (request.method != found->method) {
            Response response = error(405, "method not allowed");
            response.allow = found->method;
            return response;
        }
        // GET endpoints read the query string; every other endpoint reads a JSON body.
        const json body = std::string_view(found->method) == "GET" ? query_object(request.query)
                                                                     : json::parse(request.body);
        return found->endpoint(service_, body, message_bytes_budget_);
    } catch (const Invalid& invalid) {
        return error(400, invalid.message);
    } catch (const json::exception& e) {
        return error(400, std::string("malformed JSON: ") + e.what());
    } catch (const std::exception& e) {
        return error(500, e.what());
    }
}

}  // namespace limaoim::http
