#include "wk_api.h"

#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace limaoim::http::wukongim {

namespace {

using namespace endpoint;

// WuKongIM's message seqs are 64-bit, this server's 32-bit: a larger one
// lies past every message, as UINT32_MAX does.
int64_t seq_field(const json& body, const char* key) {
    return integer(body, key, 0, std::numeric_limits<int64_t>::max());
}
uint32_t clamped_seq(int64_t seq) { return uint32_t(std::min<int64_t>(seq, std::numeric_limits<uint32_t>::max())); }

bool names_any(const json& body, std::initializer_list<const char*> keys) {
    return body.is_object() && std::any_of(keys.begin(), keys.end(), [&](const char* key) { return body.contains(key); });
}

// ---- users ----

// A token nobody is told: the device's old one stops working and its
// session is kicked (set_token), and no client can log in with the new one.
std::string unguessable_token() {
    std::array<uint8_t, 32> bytes{};
    if (RAND_bytes(bytes.data(), int(bytes.size())) != 1) throw std::runtime_error("no randomness for a token");
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    for (uint8_t b : bytes) {
        out.push_back(kHex[b >> 4]);
        out.push_back(kHex[b & 15]);
    }
    return out;
}

// POST /user/device_quit {uid, device_flag}: -1 quits the APP, WEB and PC
// devices. WuKongIM clears the token; here it becomes one nobody knows (an
// empty token is a valid token here), which logs the device out the same
// way until the business server sets a new one with /user/token.
Response device_quit(im::Service& service, const json& body, size_t) {
    object(body);
    const std::string uid = text(body, "uid", Need::Required);
    const int64_t flag = integer(body, "device_flag", -1, 255);
    std::vector<uint8_t> flags;
    if (flag == -1) {
        flags = {0, 1, 2};  // APP, WEB, PC
    } else {
        flags = {uint8_t(flag)};
    }
    for (uint8_t device : flags)
        if (im::Outcome outcome = service.set_token(uid, unguessable_token(), device, 1); !outcome)
            return from_outcome(outcome);
    return ok();
}

// ---- channels ----

// WuKongIM's channel info flags this server has no rule for: refused when
// set rather than stored and ignored (a business server would believe a
// banned group banned). `large` changes nothing here: every channel's
// fan-out is the same, so it is accepted.
void refuse_unsupported_flags(const json& body) {
    for (const char* flag : {"ban", "send_ban", "disband", "allow_stranger"})
        if (is_one(body, flag))
            throw Invalid{std::string(flag) + " is not supported by this server (docs/WKAPI.md)"};
    is_one(body, "large");  // must be an integer, like the others
}

// POST /channel/info {channel_id, channel_type, large, ban, ...}: makes
// sure the channel exists, subscribers untouched. A person channel exists
// with its user (POST /user/token): nothing to make.
Response channel_info(im::Service& service, const json& body, size_t) {
    object(body);
    const std::string id = text(body, "channel_id", Need::Required);
    const uint8_t type = nonzero_channel_type(body);
    refuse_unsupported_flags(body);
    if (type == im::kPersonChannel) return ok();
    return from_outcome(service.add_subscribers(id, type, {}, false));
}

// The {channel_id, channel_type} of the *_remove_all calls (type not 0).
struct ChannelKey {
    std::string id;
    uint8_t type;
};
ChannelKey channel_key(const json& body) {
    object(body);
    ChannelKey key;
    key.id = text(body, "channel_id", Need::Required);
    key.type = nonzero_channel_type(body);
    return key;
}

Response subscriber_remove_all(im::Service& service, const json& body, size_t) {
    const ChannelKey key = channel_key(body);
    if (key.type == im::kPersonChannel) throw Invalid{"person channels have fixed subscribers"};
    return from_outcome(service.add_subscribers(key.id, key.type, {}, true));
}

template <im::ListKind kList>
Response list_remove_all(im::Service& service, const json& body, size_t) {
    const ChannelKey key = channel_key(body);
    return from_outcome(service.edit_list(key.id, key.type, kList, im::ListEdit::Set, {}));
}

// ---- messages ----

// POST /message/sendbatch {header, from_uid, subscribers, payload}: the
// message to each subscriber's person channel, one send each; answers
// {"fail_uids": [...], "reason": [...]} (no "status", as WuKongIM does).
Response send_batch(im::Service& service, const json& body, size_t) {
    object(body);
    im::ApiSend send;
    send.header_flags = header_flags(body);
    send.from_uid = text(body, "from_uid", Need::Required);
    const std::vector<std::string> subscribers = strings(body, "subscribers", Need::Required);
    send.payload = payload_field(body);
    send.channel_type = im::kPersonChannel;
    ordered_json failed = ordered_json::array();
    ordered_json reasons = ordered_json::array();
    for (const std::string& uid : subscribers) {
        send.channel_id = uid;
        im::ApiSent sent;
        if (im::Outcome outcome = service.send(send, sent); !outcome) {
            failed.push_back(uid);
            reasons.push_back(outcome.message);
        }
    }
    ordered_json out;
    out["fail_uids"] = std::move(failed);
    out["reason"] = std::move(reasons);
    return data(out);
}

// GET /channel/max_message_seq and /channel/last_message read the query:
// channel_id, channel_type, login_uid (a person channel is the login user's
// with channel_id).
struct ChannelQuery {
    std::string login_uid, id;
    uint8_t type = 0;
};
ChannelQuery channel_query(const json& query) {
    ChannelQuery q;
    q.id = text(query, "channel_id", Need::Required);
    q.login_uid = text(query, "login_uid");
    const std::string type = text(query, "channel_type");
    unsigned value = 0;
    const auto [end, failed] = std::from_chars(type.data(), type.data() + type.size(), value);
    if (!type.empty() && (failed != std::errc() || end != type.data() + type.size() || value > 255))
        throw Invalid{"channel_type must be an integer from 0 to 255"};
    q.type = uint8_t(value);
    if (q.type == im::kPersonChannel && blank(q.login_uid)) throw Invalid{"login_uid is required for a person channel"};
    return q;
}

// The channel's newest message, if it has one.
im::Outcome newest_message(im::Service& service, const ChannelQuery& q, size_t message_bytes_budget,
                           std::vector<im::Message>& out) {
    bool cut = false;
    return service.channel_messages(q.login_uid, q.id, q.type, 0, 0, {1, message_bytes_budget}, true, out, cut);
}

// {"message_seq": the newest message's seq, 0 for none}.
Response max_message_seq(im::Service& service, const json& query, size_t message_bytes_budget) {
    std::vector<im::Message> newest;
    if (im::Outcome outcome = newest_message(service, channel_query(query), message_bytes_budget, newest); !outcome)
        return from_outcome(outcome);
    ordered_json out;
    out["message_seq"] = newest.empty() ? 0 : newest.back().message_seq;
    return data(out);
}

// The newest message as MessageResp; none: 200 {"status":404}, as WuKongIM answers.
Response last_message(im::Service& service, const json& query, size_t message_bytes_budget) {
    std::vector<im::Message> newest;
    if (im::Outcome outcome = newest_message(service, channel_query(query), message_bytes_budget, newest); !outcome)
        return from_outcome(outcome);
    if (newest.empty()) return {200, R"({"status":404})"};
    return data(message_resp(newest.back()));
}

// ---- conversations ----

// POST /conversation/channels {uid}: [{channel_id, channel_type}] of the
// user's conversations, newest first.
Response conversation_channels(im::Service& service, const json& body, size_t) {
    object(body);
    const std::string uid = text(body, "uid", Need::Required);
    std::vector<im::ConversationView> views;
    if (im::Outcome outcome = service.conversations(uid, views); !outcome) return from_outcome(outcome);
    ordered_json list = ordered_json::array();
    for (const im::ConversationView& view : views) {
        ordered_json item;
        item["channel_id"] = view.conversation.channel_id;
        item["channel_type"] = view.conversation.channel_type;
        list.push_back(std::move(item));
    }
    return data(list);
}

constexpr Route kRoutes[] = {
    {"/user/device_quit", "POST", device_quit},
    {"/channel/info", "POST", channel_info},
    {"/channel/subscriber_remove_all", "POST", subscriber_remove_all},
    {"/channel/blacklist_remove_all", "POST", list_remove_all<im::ListKind::Deny>},
    {"/channel/whitelist_remove_all", "POST", list_remove_all<im::ListKind::Allow>},
    {"/message/sendbatch", "POST", send_batch},
    {"/channel/max_message_seq", "GET", max_message_seq},
    {"/channel/last_message", "GET", last_message},
    {"/conversation/channels", "POST", conversation_channels},
};

}  // namespace

std::span<const Route> routes() { return kRoutes; }

bool is_channel_put(const json& body) {
    return names_any(body, {"reset", "large", "ban", "send_ban", "allow_stranger", "disband"});
}

// POST /channel {channel_id, channel_type, reset, subscribers, large, ...}:
// creates the channel if new, adds the subscribers (replaces them when
// reset is 1). A person channel takes no subscribers.
Response channel_put(im::Service& service, const json& body, size_t) {
    object(body);
    const std::string id = text(body, "channel_id", Need::Required);
    const uint8_t type = nonzero_channel_type(body);
    refuse_unsupported_flags(body);
    const std::vector<std::string> subscribers = strings(body, "subscribers");
    if (type == im::kPersonChannel) {
        if (!subscribers.empty()) throw Invalid{"person channels take no subscribers"};
        return ok();
    }
    return from_outcome(service.add_subscribers(id, type, subscribers, is_one(body, "reset")));
}

bool is_message_sync(const json& body) { return names_any(body, {"start_message_seq", "end_message_seq", "pull_mode"}); }

// POST /channel/messagesync in WuKongIM's terms, ascending in every mode:
//   start 0 and end 0: the newest `limit`;
//   pull_mode 1 (up): start <= seq < end (end 0: no bound), the oldest first;
//   pull_mode 0 (down): end < seq <= start, the newest first; nothing when end > start.
// Answers {start_message_seq, end_message_seq (as asked), more, messages}.
Response message_sync(im::Service& service, const json& body, size_t message_bytes_budget) {
    object(body);
    const std::string login_uid = text(body, "login_uid", Need::Required);
    const std::string id = text(body, "channel_id", Need::Required);
    const uint8_t type = byte_field(body, "channel_type");
    const int64_t start_asked = seq_field(body, "start_message_seq");
    const int64_t end_asked = seq_field(body, "end_message_seq");
    const uint32_t start = clamped_seq(start_asked);
    const uint32_t end = clamped_seq(end_asked);
    const bool up = is_one(body, "pull_mode");
    const uint32_t limit = limit_field(body);
    uint32_t from_seq = 0, to_seq = 0;  // from_seq <= seq < to_seq (0: no bound)
    bool keep_newest = true;
    bool empty = false;
    if (start == 0 && end == 0) {
        // the newest `limit`
    } else if (up) {
        from_seq = start;
        to_seq = end;
        keep_newest = false;
        empty = end != 0 && end <= start;
    } else if (end <= start && end < std::numeric_limits<uint32_t>::max()) {
        from_seq = end + 1;
        to_seq = start == std::numeric_limits<uint32_t>::max() ? 0 : start + 1;
    } else {
        empty = true;
    }
    HistoryPage page;
    if (!empty) {
        im::Outcome outcome = read_history(service, login_uid, id, type, from_seq, to_seq, limit, message_bytes_budget,
                                           keep_newest, page);
        if (!outcome) return from_outcome(outcome);
    }
    ordered_json out;
    out["start_message_seq"] = start_asked;
    out["end_message_seq"] = end_asked;
    out["more"] = page.messages.size() < limit && !page.cut ? 0 : 1;
    out["messages"] = message_list(page.messages);
    return data(out);
}

}  // namespace limaoim::http::wukongim
