#include "limaoim/im/api_service.h"
#include "limaoim/log/clock.h"

#include <openssl/rand.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <limits>

namespace limaoim::im {

namespace {

using clock::wall_seconds;

// 32 lowercase hex characters from the CSPRNG (client_msg_no and @tmp ids, §7.3, §16.2).
std::string random_hex32() {
    uint8_t bytes[16];
    if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
        // Fall back to the clock and a counter: unique, merely guessable.
        static std::atomic<uint64_t> counter{0};
        const uint64_t a = uint64_t(std::chrono::steady_clock::now().time_since_epoch().count());
        const uint64_t b = counter.fetch_add(1);
        std::memcpy(bytes, &a, 8);
        std::memcpy(bytes + 8, &b, 8);
    }
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out(32, '0');
    for (int i = 0; i < 16; ++i) {
        out[2 * i] = kHex[bytes[i] >> 4];
        out[2 * i + 1] = kHex[bytes[i] & 15];
    }
    return out;
}

Outcome from(const store::Status& s) { return s ? Outcome::ok() : Outcome::unavailable("store: " + s.error); }

}  // namespace

ApiService::ApiService(store::Store& store, TokenCache& tokens, const Directory& directory, Channels& channels,
                       Conversations& conversations, Committer& committer, const SessionKicker& kicker,
                       std::mutex& channel_write, uint32_t max_temporary_channels)
    : store_(store), tokens_(tokens), directory_(directory), channels_(channels), conversations_(conversations),
      committer_(committer), kicker_(kicker), channel_write_(channel_write),
      max_temporary_channels_(max_temporary_channels) {}

// ---- users ----

Outcome ApiService::set_token(std::string_view uid, std::string_view token, uint8_t device_flag, uint8_t device_level) {
    if (uid.find('@') != std::string_view::npos)
        return Outcome::bad_request("uid must not contain '@' (person channel ids are uid@uid)");
    if (uid.size() > Directory::kMaxUid) return Outcome::bad_request("uid too long");
    store::TokenRecord record{std::string(uid), device_flag, {}, device_level};
    if (!TokenCache::digest(token, record.digest)) return Outcome::unavailable("out of memory");
    if (Outcome o = from(store_.put_token(record)); !o) return o;
    tokens_.set_digest(uid, device_flag, record.digest);
    {
        // The user's own person channel holds its allow and deny lists (§7.1).
        std::lock_guard lock(channel_write_);
        if (!channels_.find(kPersonChannel, uid)) {
            Channel own;
            own.id = std::string(uid);
            own.type = kPersonChannel;
            own.subscribers.push_back(own.id);
            own.subscriber_set.insert(own.id);
            if (Outcome o = install(std::move(own)); !o) return o;
        }
    }
    // The old token is void: its session goes as for a login kick (S15
    // compatible rule), here and on the other nodes.
    kicker_.kick(uid, device_flag, kKickByToken);
    if (cluster_) cluster_->token_changed(uid, device_flag, record.digest);
    return Outcome::ok();
}

std::vector<std::string> ApiService::online_uids(const std::vector<std::string>& uids) {
    std::vector<std::string> online;
    std::vector<DirectoryEntry> sessions;
    std::vector<std::string> elsewhere;
    for (const std::string& uid : uids) {
        sessions.clear();
        if (directory_.find_all(uid, sessions))
            online.push_back(uid);
        else
            elsewhere.push_back(uid);
    }
    // A uid whose presence cannot be read counts as offline (logged by the cluster).
    if (cluster_ && !elsewhere.empty()) cluster_->online_elsewhere(elsewhere, online);
    return online;
}

Outcome ApiService::add_system_uids(const std::vector<std::string>& uids) {
    std::lock_guard lock(channel_write_);
    std::vector<std::string> all = channels_.system_uids();
    for (const std::string& uid : uids)
        if (std::find(all.begin(), all.end(), uid) == all.end()) all.push_back(uid);
    if (Outcome o = from(store_.put_system_uids(all)); !o) return o;
    channels_.set_system_uids(std::move(all));
    if (cluster_) cluster_->system_uids_changed();
    return Outcome::ok();
}

Outcome ApiService::remove_system_uids(const std::vector<std::string>& uids) {
    std::lock_guard lock(channel_write_);
    std::vector<std::string> all = channels_.system_uids();
    std::erase_if(all, [&](const std::string& uid) { return std::find(uids.begin(), uids.end(), uid) != uids.end(); });
    if (Outcome o = from(store_.put_system_uids(all)); !o) return o;
    channels_.set_system_uids(std::move(all));
    if (cluster_) cluster_->system_uids_changed();
    return Outcome::ok();
}

// ---- channels ----

Outcome ApiService::install(Channel&& channel) {
    if (channel.temporary) {
        channels_.put(std::move(channel));
        return Outcome::ok();
    }
    if (Outcome o = from(store_.put_channel(channel.record())); !o) return o;
    const uint8_t type = channel.type;
    const std::string id = channel.id;
    channels_.put(std::move(channel));
    if (cluster_) cluster_->channel_changed(type, id);
    return Outcome::ok();
}

Outcome ApiService::put_channel(std::string_view id, uint8_t type, std::string_view parent,
                                const std::vector<std::string>& subscribers) {
    if (type == kPersonChannel) return Outcome::bad_request("person channels are not created with /channel");
    std::lock_guard lock(channel_write_);
    Channel c = channels_.copy_or_new(type, id);  // the lists stay (§16.3)
    c.parent = std::string(parent);
    c.set_subscribers(subscribers);
    return install(std::move(c));
}

Outcome ApiService::add_subscribers(std::string_view id, uint8_t type, const std::vector<std::string>& uids, bool reset) {
    if (type == kPersonChannel) return Outcome::bad_request("person channels have fixed subscribers");
    std::lock_guard lock(channel_write_);
    Channel c = channels_.copy_or_new(type, id);
    if (reset) c.set_subscribers({});
    for (const std::string& uid : uids)
        if (c.subscriber_set.insert(uid).second) c.subscribers.push_back(uid);
    return install(std::move(c));
}

Outcome ApiService::remove_subscribers(std::string_view id, uint8_t type, const std::vector<std::string>& uids) {
    std::lock_guard lock(channel_write_);
    std::shared_ptr<const Channel> existing = channels_.find(type, id);
    if (!existing) return Outcome::ok();  // nothing to remove from
    Channel c = *existing;
    std::erase_if(c.subscribers, [&](const std::string& uid) { return std::find(uids.begin(), uids.end(), uid) != uids.end(); });
    for (const std::string& uid : uids) c.subscriber_set.erase(uid);
    if (Outcome o = install(std::move(c)); !o) return o;
    // Their conversation with the channel goes too, durably (§11 compatible rule).
    return delete_conversation(uids, id, type);
}

Outcome ApiService::delete_channel(std::string_view id, uint8_t type) {
    std::lock_guard lock(channel_write_);
    if (Outcome o = from(store_.delete_channel(type, id)); !o) return o;
    channels_.erase(type, id);
    if (cluster_) cluster_->channel_changed(type, id);
    return Outcome::ok();
}

Outcome ApiService::edit_list(std::string_view id, uint8_t type, ListKind list, ListEdit edit,
                              const std::vector<std::string>& uids) {
    std::lock_guard lock(channel_write_);
    Channel c = channels_.copy_or_new(type, id);
    if (type == kPersonChannel && c.subscribers.empty()) {
        c.subscribers.push_back(c.id);
        c.subscriber_set.insert(c.id);
    }
    UidSet& set = list == ListKind::Deny ? c.denylist : c.allowlist;
    switch (edit) {
    case ListEdit::Set:
        set.clear();
        [[fallthrough]];
    case ListEdit::Add:
        set.insert(uids.begin(), uids.end());
        break;
    case ListEdit::Remove:
        for (const std::string& uid : uids) set.erase(uid);
        break;
    }
    return install(std::move(c));
}

// ---- messages ----

Outcome ApiService::send(const ApiSend& in, ApiSent& sent) {
    if (in.client_msg_no.size() > kMaxMessageString || in.from_uid.size() > kMaxMessageString ||
        in.channel_id.size() > kMaxMessageString)
        return Outcome::bad_request("client_msg_no, from_uid and channel_id take at most 65535 bytes each");
    CommitRequest request;
    request.sender_device = 2;  // SYSTEM: every APP/WEB session of from_uid receives it (§8 step 2)
    Message m;
    m.header_flags = uint8_t(in.header_flags & kKeptHeaderFlags);
    m.client_msg_no = in.client_msg_no.empty() ? random_hex32() : in.client_msg_no;
    m.from_uid = in.from_uid;
    m.channel_id = in.channel_id;
    m.channel_type = in.channel_type;
    m.timestamp = int32_t(wall_seconds());
    m.payload = in.payload;
    m.expire = in.expire;
    if (!in.subscribers.empty()) {
        auto receivers = std::make_shared<std::vector<std::string>>();
        for (const std::string& uid : in.subscribers)
            if (std::find(receivers->begin(), receivers->end(), uid) == receivers->end()) receivers->push_back(uid);
        if (in.channel_id.empty()) {
            // A temporary channel with exactly these subscribers (§7.3): in
            // memory, so clients may SEND to it until the server restarts.
            Channel tmp;
            tmp.id = random_hex32() + std::string(kTemporarySuffix);
            tmp.type = kGroupChannel;
            tmp.temporary = true;
            tmp.set_subscribers(*receivers);
            m.channel_id = tmp.id;
            m.channel_type = kGroupChannel;
            add_temporary(std::move(tmp));
            request.transient = true;
        }
        request.receivers = std::move(receivers);
    } else if (in.channel_id.empty()) {
        return Outcome::bad_request("channel_id or subscribers required");
    }
    request.message = net::Payload::allocate(encoded_size(m.view()));
    if (!request.message) return Outcome::unavailable("out of memory");
    encode(m.view(), request.message.writable_bytes());
    auto waiter = std::make_shared<CommitWaiter>();
    request.waiter = waiter;
    if (!committer_.submit(std::move(request))) {
        // Nobody was told of a temporary channel made for it.
        if (m.channel_id != in.channel_id) remove_temporary(m.channel_id);
        return Outcome::unavailable("the committer's queue is full");
    }
    waiter->wait();
    if (!waiter->ok) return Outcome::unavailable(waiter->error);
    sent.message_id = waiter->message_id;
    sent.message_seq = waiter->value;
    sent.client_msg_no = std::move(m.client_msg_no);
    return Outcome::ok();
}

void ApiService::add_temporary(Channel&& channel) {
    std::lock_guard lock(channel_write_);
    temporary_ids_.push_back(channel.id);
    channels_.put(std::move(channel));
    // The oldest go first: their clients' SENDs then get reason 3, as after a restart.
    while (temporary_ids_.size() > max_temporary_channels_) {
        channels_.erase(kGroupChannel, temporary_ids_.front());
        temporary_ids_.pop_front();
    }
}

void ApiService::remove_temporary(const std::string& id) {
    std::lock_guard lock(channel_write_);
    channels_.erase(kGroupChannel, id);
    if (auto it = std::find(temporary_ids_.rbegin(), temporary_ids_.rend(), id); it != temporary_ids_.rend())
        temporary_ids_.erase(std::next(it).base());
}

namespace {

size_t total_size(const std::vector<std::string>& encoded) {
    size_t bytes = 0;
    for (const std::string& e : encoded) bytes += e.size();
    return bytes;
}

// Reads the stored messages of seq in [from_seq, to_seq) (to_seq 0: open),
// ascending, within `limit`, into `out`: a channel log's or a user's queue.
using RangeReader = std::function<store::Status(uint32_t from_seq, uint32_t to_seq, const store::ReadLimit& limit,
                                                std::vector<std::string>& out)>;

// How many more reads a page makes past expired messages before it is
// answered short (and said to be cut, so the client asks again).
constexpr int kExpiredRereads = 8;

// Every read of stored messages ends here: an expired one is not synced.
// It still counts against the store's page, so a page that left some out
// reads on, a whole page at a time, past its far end (older with
// limit.newest, else newer), and keeps the `limit.count` nearest: a run of
// expired messages neither shortens a page into looking like the end nor
// hides the messages behind it. `cut`: the page stopped with messages
// perhaps left (the byte limit, the rereads).
Outcome read_live(const RangeReader& read, uint32_t from_seq, uint32_t to_seq, store::ReadLimit limit,
                  std::vector<Message>& out, bool& cut) {
    const int64_t now_s = clock::wall_seconds();
    std::vector<std::vector<Message>> reads;  // in the order read
    std::vector<std::string> encoded;
    size_t live_count = 0;
    cut = false;
    for (int round = 0;; ++round) {
        encoded.clear();
        if (Outcome o = from(read(from_seq, to_seq, limit, encoded)); !o) return o;
        std::vector<Message>& live = reads.emplace_back();
        uint32_t lowest = std::numeric_limits<uint32_t>::max(), highest = 0;
        for (const std::string& bytes : encoded) {
            std::optional<MessageView> v = decode(bytes);
            if (!v) return Outcome::unavailable("store: a corrupt message");
            lowest = std::min(lowest, v->message_seq);
            highest = std::max(highest, v->message_seq);
            if (!v->expired(now_s)) live.push_back(Message::from(*v));
        }
        const size_t read_bytes = total_size(encoded);
        live_count += live.size();
        if (limit.spent(read_bytes)) {
            cut = true;
            break;
        }
        if (live_count >= limit.count || encoded.size() < limit.count) break;  // a full page, or the range is read
        // The next read goes past this one's far end; a seq that does not
        // move it (not expected of a store) ends the page rather than loop.
        const bool moved = limit.newest ? lowest > from_seq : highest >= from_seq && highest < UINT32_MAX;
        if (round == kExpiredRereads || !moved) {
            cut = true;
            break;
        }
        limit.bytes -= read_bytes;
        if (limit.newest)
            to_seq = lowest;
        else
            from_seq = highest + 1;
    }
    if (limit.newest) std::reverse(reads.begin(), reads.end());  // each read is ascending; the later ones are older
    // The nearest limit.count: the newest with limit.newest, else the oldest.
    size_t skip = live_count > limit.count && limit.newest ? live_count - limit.count : 0;
    size_t take = std::min<size_t>(live_count, limit.count);
    for (std::vector<Message>& r : reads)
        for (Message& m : r) {
            if (skip) {
                --skip;
            } else if (take) {
                --take;
                out.push_back(std::move(m));
            }
        }
    return Outcome::ok();
}

RangeReader channel_log(store::Store& store, std::string log) {
    return [&store, log = std::move(log)](uint32_t from_seq, uint32_t to_seq, const store::ReadLimit& read,
                                          std::vector<std::string>& encoded) {
        return store.read_messages(log, from_seq, to_seq, read, encoded);
    };
}

}  // namespace

Outcome ApiService::sync(std::string_view uid, uint32_t after_seq, PageLimit limit, std::vector<Message>& out) {
    uint32_t cursor = 0;
    if (Outcome o = from(store_.cursor(uid, cursor)); !o) return o;
    const uint32_t after = std::max(after_seq, cursor);
    if (after == std::numeric_limits<uint32_t>::max()) return Outcome::ok();
    const RangeReader queue = [&](uint32_t from_seq, uint32_t, const store::ReadLimit& read,
                                  std::vector<std::string>& encoded) {
        return store_.read_queue(uid, from_seq - 1, read, encoded);
    };
    bool cut = false;
    return read_live(queue, after + 1, 0, {.count = limit.count, .bytes = limit.bytes}, out, cut);
}

Outcome ApiService::sync_ack(std::string_view uid, uint32_t seq) {
    CommitRequest request;
    request.kind = CommitRequest::Kind::CursorAdvance;
    request.uid = std::string(uid);
    request.cursor = seq;
    auto waiter = std::make_shared<CommitWaiter>();
    request.waiter = waiter;
    if (!committer_.submit(std::move(request))) return Outcome::unavailable("the committer's queue is full");
    waiter->wait();
    return waiter->ok ? Outcome::ok() : Outcome::unavailable(waiter->error);
}

Outcome ApiService::channel_messages(std::string_view login_uid, std::string_view channel_id, uint8_t type,
                                     uint32_t from_seq, uint32_t to_seq, PageLimit limit, bool keep_newest,
                                     std::vector<Message>& out, bool& cut) {
    return read_live(channel_log(store_, Conversations::log_of(login_uid, channel_id, type)), from_seq, to_seq,
                     {.count = limit.count, .bytes = limit.bytes, .newest = keep_newest}, out, cut);
}

// ---- conversations ----

Outcome ApiService::conversations(std::string_view uid, std::vector<ConversationView>& out) {
    std::vector<std::string> encoded;
    std::vector<Conversation> listed;
    if (Outcome o = from(conversations_.list(uid, listed)); !o) return o;
    for (Conversation& c : listed) {
        ConversationView view{std::move(c), std::nullopt};
        encoded.clear();
        // The message at last_msg_seq; none for a temporary channel's (seq 0, never stored).
        if (const uint32_t seq = view.conversation.last_msg_seq) {
            const std::string log = Conversations::log_of(uid, view.conversation.channel_id, view.conversation.channel_type);
            if (Outcome o = from(store_.read_messages(log, seq, seq + 1, {.count = 1}, encoded)); !o) return o;
            if (!encoded.empty())
                if (std::optional<MessageView> m = decode(encoded.front()); m && !m->expired(clock::wall_seconds()))
                    view.last_message = Message::from(*m);
        }
        out.push_back(std::move(view));
    }
    return Outcome::ok();
}

Outcome ApiService::set_unread(std::string_view uid, std::string_view channel_id, uint8_t type, uint32_t unread) {
    store::Status status;
    if (conversations_.set_unread(uid, channel_id, type, unread, status) && status && cluster_)
        cluster_->conversation_unread_set(uid, channel_id, type, unread);
    return from(status);
}

Outcome ApiService::delete_conversation(const std::vector<std::string>& uids, std::string_view channel_id, uint8_t type) {
    const store::Status status = conversations_.remove(uids, channel_id, type);
    if (status && cluster_) cluster_->conversation_removed(uids, channel_id, type);
    return from(status);
}

Outcome ApiService::sync_conversations(std::string_view uid, int64_t version, std::vector<Conversation>& out) {
    return from(conversations_.changed_since(uid, version, out));
}

Outcome ApiService::recent_messages(std::string_view uid, std::string_view channel_id, uint8_t type, uint32_t after_seq,
                                    PageLimit limit, std::vector<Message>& out) {
    if (after_seq == std::numeric_limits<uint32_t>::max()) return Outcome::ok();
    // From the newest down: what the count or the byte limit leaves out is the oldest.
    bool cut = false;
    const size_t before = out.size();
    if (Outcome o = read_live(channel_log(store_, Conversations::log_of(uid, channel_id, type)), after_seq + 1, 0,
                              {.count = limit.count, .bytes = limit.bytes, .newest = true}, out, cut);
        !o)
        return o;
    std::reverse(out.begin() + before, out.end());  // newest first
    return Outcome::ok();
}

}  // namespace limaoim::im
