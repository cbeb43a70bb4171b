// What the HTTP API (http/) asks of the IM core (SERVER.md §16.1-16.3).
//
// Every call runs on an API pool thread, never on a worker ring: it may wait
// for the store or for the committer. Each returns when its effect is in
// place (durable, and seen by every worker's next SEND: §7.6 compatible rule).
// The HTTP layer validates the request's shape; the core validates meaning.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "limaoim/im/conversations.h"
#include "limaoim/im/message.h"

namespace limaoim::im {

struct Outcome {
    enum class Code : uint8_t {
        Ok,
        BadRequest,   // the request makes no sense (HTTP 400)
        Unavailable,  // the store failed or the server is overloaded (HTTP 500/503)
    };
    Code code = Code::Ok;
    std::string message;

    static Outcome ok() { return {}; }
    static Outcome bad_request(std::string m) { return {Code::BadRequest, std::move(m)}; }
    static Outcome unavailable(std::string m) { return {Code::Unavailable, std::move(m)}; }
    explicit operator bool() const { return code == Code::Ok; }
};

// POST /message/send (§16.2).
struct ApiSend {
    uint8_t header_flags = 0;  // RedDot | SyncOnce | NoPersist bits (proto::flag)
    std::string client_msg_no;  // empty: a random 32-hex string is chosen
    std::string from_uid;
    std::string channel_id;  // empty with subscribers: a temporary channel
    uint8_t channel_type = 0;
    std::vector<std::string> subscribers;  // non-empty: exactly these receive it
    std::string payload;                   // plaintext, non-empty
    uint32_t expire = 0;                   // seconds it may be delivered and synced; 0 = always
};

// What a stored send became (WuKongIM's /message/send answers it).
struct ApiSent {
    int64_t message_id = 0;
    uint32_t message_seq = 0;  // 0 when not persisted in a channel log
    std::string client_msg_no;
};

// GET /conversations (§16.4): a conversation and its last message (null
// when it cannot be read, e.g. a temporary channel's, never stored).
struct ConversationView {
    Conversation conversation;
    std::optional<Message> last_message;
};

// How much one page of messages the API reads may hold (§16.2-16.4): at
// most `count` messages, and the read stops after the message that brings
// the stored (encoded) bytes it read past `bytes`. That one is kept, so a
// page holds one message at least and a client pages on; the store reads no
// further (store::ReadLimit), so a page costs about `bytes` of memory however
// big its messages are.
struct PageLimit {
    uint32_t count = 0;
    size_t bytes = std::numeric_limits<size_t>::max();
};

enum class ListKind : uint8_t { Deny, Allow };
enum class ListEdit : uint8_t { Add, Set, Remove };

class Service {
public:
    virtual ~Service() = default;

    // ---- users ----
    // Stores the token, kicks the session of (uid, device_flag) if any
    // (S15 compatible rule), creates the user's person channel if missing.
    // A uid containing '@' is refused (§7.1).
    virtual Outcome set_token(std::string_view uid, std::string_view token, uint8_t device_flag,
                              uint8_t device_level) = 0;
    // The uids of `uids` with at least one live session (S10 compatible rule).
    virtual std::vector<std::string> online_uids(const std::vector<std::string>& uids) = 0;
    virtual Outcome add_system_uids(const std::vector<std::string>& uids) = 0;
    virtual Outcome remove_system_uids(const std::vector<std::string>& uids) = 0;

    // ---- channels ----
    // Creates or replaces a group channel's info and subscriber list; keeps its lists.
    virtual Outcome put_channel(std::string_view id, uint8_t type, std::string_view parent,
                                const std::vector<std::string>& subscribers) = 0;
    virtual Outcome add_subscribers(std::string_view id, uint8_t type, const std::vector<std::string>& uids,
                                    bool reset) = 0;
    virtual Outcome remove_subscribers(std::string_view id, uint8_t type, const std::vector<std::string>& uids) = 0;
    virtual Outcome delete_channel(std::string_view id, uint8_t type) = 0;
    virtual Outcome edit_list(std::string_view id, uint8_t type, ListKind list, ListEdit edit,
                              const std::vector<std::string>& uids) = 0;

    // ---- messages ----
    // Stored (by the durability policy) and handed to delivery when it returns Ok.
    virtual Outcome send(const ApiSend& message, ApiSent& sent) = 0;
    // The SyncOnce queue of `uid` after max(after_seq, cursor), ascending,
    // within `limit` from the oldest.
    virtual Outcome sync(std::string_view uid, uint32_t after_seq, PageLimit limit, std::vector<Message>& out) = 0;
    // cursor = max(cursor, min(seq, last queue seq)) (§10.2 compatible rule).
    virtual Outcome sync_ack(std::string_view uid, uint32_t seq) = 0;
    // A channel's history: from_seq <= seq < to_seq (0: no bound), ascending,
    // within `limit`, taken from the newest of that window down when
    // `keep_newest` (a client paging back continues from the oldest it got),
    // else from the oldest up. `cut`: the byte limit ended the page (more may
    // follow). Person channels: the fake channel of (login_uid, channel_id).
    virtual Outcome channel_messages(std::string_view login_uid, std::string_view channel_id, uint8_t type,
                                     uint32_t from_seq, uint32_t to_seq, PageLimit limit, bool keep_newest,
                                     std::vector<Message>& out, bool& cut) = 0;

    // ---- conversations (§11, §16.4) ----
    // Timestamp descending.
    virtual Outcome conversations(std::string_view uid, std::vector<ConversationView>& out) = 0;
    // unread := `unread` (clearUnread: 0), durable when it returns; a
    // conversation the user does not have is left alone (Ok).
    virtual Outcome set_unread(std::string_view uid, std::string_view channel_id, uint8_t type, uint32_t unread) = 0;
    virtual Outcome delete_conversation(const std::vector<std::string>& uids, std::string_view channel_id,
                                        uint8_t type) = 0;
    // Those changed after `version` (ms; <= 0: all), timestamp descending.
    virtual Outcome sync_conversations(std::string_view uid, int64_t version, std::vector<Conversation>& out) = 0;
    // The last messages of the user's conversation log with seq > after_seq
    // (0: no bound), within `limit` from the newest, newest first
    // (/conversation/syncMessages).
    virtual Outcome recent_messages(std::string_view uid, std::string_view channel_id, uint8_t type,
                                    uint32_t after_seq, PageLimit limit, std::vector<Message>& out) = 0;
};

}  // namespace limaoim::im
