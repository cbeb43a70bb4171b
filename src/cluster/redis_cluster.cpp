#include "limaoim/cluster/redis_cluster.h"

#include <pthread.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "limaoim/im/message.h"
#include "limaoim/log/clock.h"
#include "limaoim/log/log.h"

namespace limaoim::cluster {

namespace {

// Event kinds, the first byte of every event; the node that sent it follows (u16).
constexpr char kMessage = 'M';
constexpr char kLogin = 'L';
constexpr char kToken = 'T';
constexpr char kChannel = 'C';
constexpr char kSystemUids = 'S';
constexpr char kUnreadSet = 'U';
constexpr char kConversationRemoved = 'R';
// A node registered (again) or left, sent to every other live node: they
// need not wait for their next registry read to include it.
constexpr char kJoined = 'J';
constexpr char kLeft = 'X';

constexpr uint32_t kNullReceivers = 0xffffffff;

// Presence is removed only while it still names the node removing it: a
// newer login on another node has overwritten it and stays.
constexpr const char* kRemoveIfMine =
    "if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end return 0";
// The registry (docs/REDIS.md "Nodes"): `lim:node:{ID}` keeps ids unique
// (SET NX with a TTL, refreshed only while it holds this run's token: 1;
// taken again when it expired during an outage: 2; held by another run: 0),
// and the ZSET `lim:nodes:live` lists the live ids by expiry time (Redis's
// clock), so the live nodes are one read, not a scan of the keyspace.
// Returns {result, live ids}.
constexpr const char* kRefresh =
    "local t = redis.call('TIME') "
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "
    "local r = 0 "
    "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) r = 1 "
    "elseif redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then r = 2 end "
    "if r ~= 0 then redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[3]) end "
    "redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now) "
    "return {r, redis.call('ZRANGE', KEYS[2], 0, -1)}";
constexpr const char* kLeave =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) redis.call('ZREM', KEYS[2], ARGV[2]) "
    "return 1 end return 0";
constexpr const char* kLiveNodesKey = "lim:nodes:live";

std::string node_key(uint32_t node) { return "lim:node:{" + std::to_string(node) + "}"; }
std::string bus_key(uint32_t node) { return "lim:bus:{" + std::to_string(node) + "}"; }
std::string presence_key(std::string_view uid) {
    std::string key = "lim:pres:{";
    key.append(uid).push_back('}');
    return key;
}

using clock::steady_ms;

// Wall clock: the nodes compare seal times, as they compare login times.
uint64_t unix_ms() { return uint64_t(clock::wall_ms()); }

// The store's token record (store/redis_store.cpp, docs/REDIS.md): HASH
// lim:tok:{UID}, field = device flag byte, value = SHA-256 digest[32] + device level.
std::string token_key(std::string_view uid) {
    std::string key = "lim:tok:{";
    key.append(uid).push_back('}');
    return key;
}

constexpr size_t kMacSize = 32;
constexpr size_t kSealSize = 3 * sizeof(uint64_t) + kMacSize;  // boot, seq, time, MAC

// HMAC-SHA256(secret, signed); false only if OpenSSL fails.
bool mac_of(std::string_view secret, std::string_view signed_bytes, uint8_t (&mac)[kMacSize]) {
    unsigned length = 0;
    return HMAC(EVP_sha256(), secret.data(), int(secret.size()), reinterpret_cast<const uint8_t*>(signed_bytes.data()),
                signed_bytes.size(), mac, &length) != nullptr &&
           length == kMacSize;
}

void put_u16(std::string& out, uint16_t v) { out.append(reinterpret_cast<const char*>(&v), 2); }
void put_u32(std::string& out, uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); }
void put_str16(std::string& out, std::string_view s) {
    put_u16(out, uint16_t(s.size()));
    out.append(s);
}

// Reads from the front of an event; any short read leaves it failed.
struct Reader {
    std::string_view rest;
    bool ok = true;
    template <typename T>
    T number() {
        T v{};
        if (rest.size() < sizeof(T)) {
            ok = false;
            return v;
        }
        std::memcpy(&v, rest.data(), sizeof(T));
        rest.remove_prefix(sizeof(T));
        return v;
    }
    std::string_view bytes(size_t n) {
        if (rest.size() < n) {
            ok = false;
            return {};
        }
        std::string_view v = rest.substr(0, n);
        rest.remove_prefix(n);
        return v;
    }
    std::string_view str16() { return bytes(number<uint16_t>()); }
};

std::string event_head(char kind, uint32_t node) {
    std::string out(1, kind);
    put_u16(out, uint16_t(node));
    return out;
}

}  // namespace

namespace detail {

std::string encode_message(uint32_t from_node, const im::FanoutItem& item) {
    std::string out = event_head(kMessage, from_node);
    out.push_back(char(item.sender_device));
    if (!item.receivers) {
        put_u32(out, kNullReceivers);
    } else {
        put_u32(out, uint32_t(item.receivers->size()));
        for (const std::string& uid : *item.receivers) put_str16(out, uid);
    }
    put_u32(out, uint32_t(item.queue_seqs.size()));
    for (const auto& [uid, seq] : item.queue_seqs) {
        put_str16(out, uid);
        put_u32(out, seq);
    }
    const std::span<const uint8_t> bytes = item.message.bytes();
    out.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    return out;
}

std::string seal(std::string_view secret, std::string_view event, uint64_t now_ms, uint64_t boot, uint64_t seq) {
    std::string out;
    out.reserve(event.size() + kSealSize);
    out.append(event);
    for (const uint64_t v : {boot, seq, now_ms}) out.append(reinterpret_cast<const char*>(&v), sizeof(v));
    uint8_t mac[kMacSize];
    // OpenSSL cannot fail here short of memory: an all-zero MAC is then
    // dropped by the receivers like any forged one.
    if (!mac_of(secret, out, mac)) std::memset(mac, 0, sizeof(mac));
    out.append(reinterpret_cast<const char*>(mac), sizeof(mac));
    return out;
}

Unsealed unseal(std::string_view secret, std::string_view sealed, uint64_t added_ms, uint64_t now_ms,
                uint32_t max_age_ms, std::string_view& event, Origin& origin) {
    if (sealed.size() < kSealSize + 1) return Unsealed::Forged;  // an event has a kind byte at least
    const std::string_view signed_bytes = sealed.substr(0, sealed.size() - kMacSize);
    uint8_t mac[kMacSize];
    if (!mac_of(secret, signed_bytes, mac) || CRYPTO_memcmp(mac, sealed.data() + signed_bytes.size(), kMacSize) != 0)
        return Unsealed::Forged;
    const char* tail = signed_bytes.data() + signed_bytes.size() - 3 * sizeof(uint64_t);
    Origin got;
    std::memcpy(&got.boot, tail, sizeof(uint64_t));
    std::memcpy(&got.seq, tail + sizeof(uint64_t), sizeof(uint64_t));
    std::memcpy(&got.sealed_ms, tail + 2 * sizeof(uint64_t), sizeof(uint64_t));
    // Old by when Redis added it (a node reading late after a reconnection
    // is not late) or by now (an entry id far ahead, set by whoever can
    // write to the stream, does not make every event fresh or stale).
    const uint64_t reference_ms = std::min(added_ms, now_ms);
    if (got.sealed_ms + max_age_ms < reference_ms || got.sealed_ms > now_ms + max_age_ms) return Unsealed::Stale;
    event = signed_bytes.substr(0, signed_bytes.size() - 3 * sizeof(uint64_t));
    origin = got;
    return Unsealed::Ok;
}

namespace {
std::pair<uint64_t, uint64_t> stream_id_parts(std::string_view id) {
    uint64_t ms = 0, seq = 0;
    size_t i = 0;
    for (; i < id.size() && id[i] >= '0' && id[i] <= '9'; ++i) ms = ms * 10 + uint64_t(id[i] - '0');
    if (i < id.size() && id[i] == '-')
        for (++i; i < id.size() && id[i] >= '0' && id[i] <= '9'; ++i) seq = seq * 10 + uint64_t(id[i] - '0');
    return {ms, seq};
}
}  // namespace

uint64_t stream_id_ms(std::string_view id) { return stream_id_parts(id).first; }

bool stream_id_less(std::string_view a, std::string_view b) { return stream_id_parts(a) < stream_id_parts(b); }

bool ReplayGuard::fresh(uint16_t node, const Origin& origin) {
    auto [it, first] = senders_.try_emplace(node);
    Sender& s = it->second;
    if (first && origin.sealed_ms < not_before_ms_) {
        senders_.erase(it);
        return false;  // sealed before this node listened: maybe a recorded copy
    }
    if (origin.boot != s.boot) {
        if (origin.sealed_ms <= s.newest_ms) return false;  // a copy from an earlier run
        s = Sender{origin.boot, origin.seq, 1, origin.sealed_ms};
        return true;
    }
    s.newest_ms = std::max(s.newest_ms, origin.sealed_ms);
    if (origin.seq > s.highest) {
        const uint64_t ahead = origin.seq - s.highest;
        s.window = ahead >= 64 ? 1 : (s.window << ahead) | 1;
        s.highest = origin.seq;
        return true;
    }
    const uint64_t behind = s.highest - origin.seq;
    if (behind >= 64) return false;  // too far behind to tell: dropped as a replay
    const uint64_t bit = uint64_t(1) << behind;
    if (s.window & bit) return false;
    s.window |= bit;
    return true;
}

bool decode_message(std::string_view event, im::FanoutItem& out) {
    Reader r{event};
    if (r.number<char>() != kMessage) return false;
    r.number<uint16_t>();  // the sending node
    out.sender_device = r.number<uint8_t>();
    const uint32_t receivers = r.number<uint32_t>();
    if (receivers != kNullReceivers) {
        auto list = std::make_shared<std::vector<std::string>>();
        for (uint32_t i = 0; i < receivers && r.ok; ++i) list->emplace_back(r.str16());
        out.receivers = std::move(list);
    }
    const uint32_t queue_seqs = r.number<uint32_t>();
    for (uint32_t i = 0; i < queue_seqs && r.ok; ++i) {
        std::string uid(r.str16());
        out.queue_seqs.emplace_back(std::move(uid), r.number<uint32_t>());
    }
    if (!r.ok) return false;
    const auto* bytes = reinterpret_cast<const uint8_t*>(r.rest.data());
    if (!im::decode(std::span<const uint8_t>(bytes, r.rest.size()))) return false;
    out.message = net::Payload::copy_of(std::span<const uint8_t>(bytes, r.rest.size()));
    return bool(out.message);  // out of memory: not deliverable (the fan-out decodes it unchecked)
}

}  // namespace detail

RedisCluster::RedisCluster(const Options& options, im::ClusterListener& listener, stats::PipelineBlock& stats)
    : options_(options), listener_(listener), stats_(stats), bus_max_(std::to_string(options.bus_max_events)),
      token_reader_(options.url, options.timeout_ms), presence_clients_(options.url, options.timeout_ms) {
    uint8_t random[12];
    if (RAND_bytes(random, sizeof(random)) != 1) std::memcpy(random, &options_, std::min(sizeof(random), sizeof(options_)));
    char host[64] = "?";
    gethostname(host, sizeof(host) - 1);
    boot_token_ = std::string(host) + " pid " + std::to_string(getpid()) + " ";
    for (uint8_t b : random) boot_token_ += "0123456789abcdef"[b >> 4], boot_token_ += "0123456789abcdef"[b & 15];
    std::memcpy(&boot_id_, random, sizeof(boot_id_));
}

RedisCluster::~RedisCluster() { stop(); }

bool RedisCluster::start(std::string& error) {
    redis::Client client(options_.url, options_.timeout_ms);
    const int64_t give_up = steady_ms() + options_.node_ttl_ms + options_.refresh_ms;
    std::string holder;
    for (;;) {
        std::string e;
        if (!client.connect(e)) {
            error = "cluster: connecting to Redis: " + e;
            return false;
        }
        const std::string key = node_key(options_.node_id);
        const std::string ttl = std::to_string(options_.node_ttl_ms);
        redis::Reply set = client.command({"SET", key, boot_token_, "NX", "PX", ttl}, e);
        if (!set) {
            error = "cluster: registering the node: " + e;
            return false;
        }
        if (set->type == REDIS_REPLY_STATUS) break;  // OK: ours
        // Held: by a node that died with this id (its key expires within
        // the TTL) or by a live one (refreshed: still held when we give up).
        if (redis::Reply held = client.command({"GET", key}, e); held && held->type == REDIS_REPLY_STRING)
            holder.assign(held->str, held->len);
        if (steady_ms() >= give_up) {
            error = "cluster: node id " + std::to_string(options_.node_id) + " is taken by a running node (" + key +
                    " = '" + holder + "'); give each node its own --node-id";
            return false;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    // Where this run starts reading its stream: before the others can
    // see this node live (refresh_registry), so nothing sent to it is
    // skipped. What is older was sent to an earlier run of this id.
    if (std::string e; !read_position(client, bus_, e)) {
        error = "cluster: reading the stream " + bus_key(options_.node_id) + ": " + e;
        return false;
    }
    replay_guard_.listening_since(unix_ms());
    if (!refresh_registry(client, error)) return false;
    if (!announce(client, kJoined, error)) {
        error = "cluster: announcing the node: " + error;
        return false;
    }
    master_address_ = client.master().host + ":" + std::to_string(client.master().port);
    if (options_.check_fsync) check_fsync(client, false);  // the caller decides (refuse, or warn)
    sender_ok_ = true;
    sender_ = std::thread([this] { send_loop(); });
    pthread_setname_np(sender_.native_handle(), "cluster-send");
    receiver_ = std::thread([this] { receive_loop(); });
    pthread_setname_np(receiver_.native_handle(), "cluster-recv");
    // Logins that need a token check wait for connected(): give the
    // subscription its moment before the listeners open.
    const int64_t subscribed_by = steady_ms() + options_.timeout_ms;
    while (!connected_ && steady_ms() < subscribed_by) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (!connected_) log::write(log::Level::Warn, "cluster", "not yet hearing the other nodes; logins with tokens wait for it");
    return true;
}

void RedisCluster::stop_receiving() {
    receiver_stop_ = true;
    if (receiver_.joinable()) receiver_.join();
}

void RedisCluster::stop() {
    stop_receiving();
    {
        std::lock_guard lock(queue_mutex_);
        if (stopping_ && !sender_.joinable()) return;
        stopping_ = true;
    }
    queue_wake_.notify_one();
    if (sender_.joinable()) sender_.join();
}

// ---- queueing (any thread, never waits for Redis) ----

void RedisCluster::queue(Outgoing&& item) {
    const size_t bytes = item.event.size() + item.presence_uid.size() + sizeof(Outgoing);
    std::unique_lock lock(queue_mutex_);
    // While Redis is down nothing could be sent: dropping at once keeps the
    // queue from holding stale logins and messages for the reconnection.
    if (stopping_ || !sender_ok_ || queued_bytes_ + bytes > options_.max_queued_bytes) {
        stats_.cluster_events_dropped.add_shared();
        return;
    }
    const bool was_empty = queued_.empty();
    queued_.push_back(std::move(item));
    queued_bytes_ += bytes;
    lock.unlock();
    if (was_empty) queue_wake_.notify_one();
}

void RedisCluster::message_stored(const im::FanoutItem& item) {
    if (live_nodes().size() < 2) return;  // alone: nobody to tell
    queue(Outgoing{.event = detail::encode_message(options_.node_id, item)});
}

void RedisCluster::session_online(std::string_view uid, uint8_t device_flag, bool online, uint64_t login_ms) {
    Outgoing item{.presence_uid = std::string(uid), .device_flag = device_flag, .presence_online = online, .has_presence = true};
    if (online) {
        // The other nodes kick their session of the pair.
        item.event = event_head(kLogin, options_.node_id);
        item.event.push_back(char(device_flag));
        item.event.append(reinterpret_cast<const char*>(&login_ms), sizeof(login_ms));
        item.event.append(uid);
    }
    queue(std::move(item));
}

// Only which token changed: the receivers read it from the store (an event
// that carried the digest would let whoever forges one set a user's token).
void RedisCluster::token_changed(std::string_view uid, uint8_t device_flag, const std::array<uint8_t, 32>&) {
    std::string event = event_head(kToken, options_.node_id);
    event.push_back(char(device_flag));
    event.append(uid);
    queue(Outgoing{.event = std::move(event)});
}

void RedisCluster::channel_changed(uint8_t type, std::string_view id) {
    std::string event = event_head(kChannel, options_.node_id);
    event.push_back(char(type));
    event.append(id);
    queue(Outgoing{.event = std::move(event)});
}

void RedisCluster::system_uids_changed() { queue(Outgoing{.event = event_head(kSystemUids, options_.node_id)}); }

void RedisCluster::conversation_unread_set(std::string_view uid, std::string_view channel_id, uint8_t type,
                                           uint32_t unread) {
    std::string event = event_head(kUnreadSet, options_.node_id);
    event.push_back(char(type));
    put_u32(event, unread);
    put_str16(event, uid);
    event.append(channel_id);
    queue(Outgoing{.event = std::move(event)});
}

void RedisCluster::conversation_removed(const std::vector<std::string>& uids, std::string_view channel_id, uint8_t type) {
    std::string event = event_head(kConversationRemoved, options_.node_id);
    event.push_back(char(type));
    put_u32(event, uint32_t(uids.size()));
    for (const std::string& uid : uids) put_str16(event, uid);
    event.append(channel_id);
    queue(Outgoing{.event = std::move(event)});
}

void RedisCluster::check_fsync(redis::Client& client, bool say) {
    std::string detail;
    const redis::Fsync found = redis::check_fsync(client, detail);
    if (!say) {
    } else if (found == redis::Fsync::Weaker)
        log::write(log::Level::Error, "cluster",
                   "Redis durability is weaker than --durability promises: %s (a SENDACK may be lost with the "
                   "master; set appendonly yes and appendfsync always)",
                   detail.c_str());
    else if (found == redis::Fsync::Unknown)
        log::write(log::Level::Warn, "cluster", "cannot check Redis's appendfsync: %s", detail.c_str());
    std::lock_guard lock(fsync_mutex_);
    fsync_ = found;
    fsync_detail_ = std::move(detail);
}

redis::Fsync RedisCluster::fsync(std::string& detail) const {
    std::lock_guard lock(fsync_mutex_);
    detail = fsync_detail_;
    return fsync_;
}

std::vector<uint32_t> RedisCluster::live_nodes() const {
    std::lock_guard lock(nodes_mutex_);
    return live_nodes_;
}

void RedisCluster::update_connected() {
    // Both threads call this: under the lock, the last one to decide sees both flags as they are.
    std::lock_guard lock(connected_mutex_);
    const bool now = sender_ok_ && receiver_ok_ && scanned_ == subscriptions_;
    connected_ = now;
    stats_.cluster_connected.set(now ? 1 : 0);
}

// ---- the sending thread ----

bool RedisCluster::refresh_registry(redis::Client& client, std::string& error) {
    const uint64_t subscriptions = subscriptions_;
    redis::Reply r = client.command({"EVAL", kRefresh, "2", node_key(options_.node_id), kLiveNodesKey, boot_token_,
                                     std::to_string(options_.node_ttl_ms), std::to_string(options_.node_id)},
                                    error);
    if (!r) return false;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_INTEGER ||
        r->element[1]->type != REDIS_REPLY_ARRAY) {
        error = "unexpected reply to the registry refresh";
        return false;
    }
    const long long result = r->element[0]->integer;
    if (result == 0)
        log::write(log::Level::Error, "cluster", "node id %u is registered by another node; this node's id is not unique",
                   options_.node_id);
    std::vector<uint32_t> nodes;
    const redisReply* live = r->element[1];
    for (size_t i = 0; i < live->elements; ++i)
        if (live->element[i]->type == REDIS_REPLY_STRING)
            nodes.push_back(uint32_t(std::strtoul(std::string(live->element[i]->str, live->element[i]->len).c_str(), nullptr, 10)));
    std::sort(nodes.begin(), nodes.end());
    stats_.cluster_nodes.set(nodes.size());
    {
        std::lock_guard lock(nodes_mutex_);
        live_nodes_ = std::move(nodes);
    }
    scanned_ = subscriptions;
    // Registered again: the others may have dropped this node from their
    // lists meanwhile, and should not wait for their next refresh.
    if (result == 2) {
        // The registration had lapsed: the others dropped this node and
        // sent it nothing meanwhile (no event of theirs waits in its stream).
        // Asked once the others heard this node is back (the receiving
        // thread waits a refresh period more for their node lists).
        if (!announce(client, kJoined, error)) return false;
        resync_requested_ = true;
    }
    return true;
}

bool RedisCluster::append_event(redis::Client& client, const std::vector<uint32_t>& nodes,
                                std::string_view sealed_event, size_t& appended, std::string& error) {
    for (uint32_t node : nodes) {
        if (node == options_.node_id) continue;
        if (!client.append({"XADD", bus_key(node), "MAXLEN", "~", bus_max_, "*", "e", sealed_event}, error))
            return false;
        ++appended;
    }
    return true;
}

bool RedisCluster::read_replies(redis::Client& client, size_t count, std::string& error) {
    for (size_t i = 0; i < count; ++i) {
        redis::Reply r = client.read(error);
        if (!r) return false;
        if (r->type == REDIS_REPLY_ERROR) {
            stats_.cluster_redis_errors.add_shared();
            log::write(log::Level::Warn, "cluster", "Redis refused a command: %.*s", int(r->len), r->str);
        }
    }
    return true;
}

bool RedisCluster::announce(redis::Client& client, char kind, std::string& error) {
    size_t appended = 0;
    return append_event(client, live_nodes(), sealed(event_head(kind, options_.node_id)), appended, error) &&
           read_replies(client, appended, error);
}

bool RedisCluster::send_batch(redis::Client& client, std::deque<Outgoing>& batch, std::string& error) {
    const std::vector<uint32_t> nodes = live_nodes();
    const std::string self = std::to_string(options_.node_id);
    size_t sent = 0;
    for (const Outgoing& item : batch) {
        if (item.has_presence) {
            const std::string key = presence_key(item.presence_uid);
            const std::string field(1, char(item.device_flag));
            const bool ok = item.presence_online ? client.append({"HSET", key, field, self}, error)
                                                 : client.append({"EVAL", kRemoveIfMine, "1", key, field, self}, error);
            if (!ok) return false;
            ++sent;
        }
        if (item.event.empty()) continue;
        if (!append_event(client, nodes, sealed(item.event), sent, error)) return false;
        stats_.cluster_events_out.add();
    }
    return read_replies(client, sent, error);
}

void RedisCluster::send_loop() {
    redis::Client client(options_.url, options_.timeout_ms);
    std::deque<Outgoing> batch;
    int64_t next_refresh = steady_ms() + options_.refresh_ms;
    for (;;) {
        bool stopping = false;
        {
            std::unique_lock lock(queue_mutex_);
            queue_wake_.wait_until(lock, std::chrono::steady_clock::now() + std::chrono::milliseconds(std::max<int64_t>(0, next_refresh - steady_ms())),
                                   [this] { return stopping_ || !queued_.empty() || (sender_ok_ && scanned_ != subscriptions_); });
            batch.swap(queued_);
            queued_bytes_ = 0;
            stopping = stopping_;
        }
        std::string error;
        bool ok = client.connect(error);
        if (ok && (steady_ms() >= next_refresh || (sender_ok_ && scanned_ != subscriptions_))) {
            ok = refresh_registry(client, error);
            next_refresh = steady_ms() + options_.refresh_ms;
        }
        if (ok && !batch.empty()) ok = send_batch(client, batch, error);
        if (!ok) {
            // Down: what was queued is dropped (see queue()); the receivers
            // of those messages sync, as for a RECV lost with a connection.
            if (!batch.empty()) stats_.cluster_events_dropped.add_shared(batch.size());
            stats_.cluster_redis_errors.add_shared();
            if (sender_ok_) log::write(log::Level::Warn, "cluster", "Redis unreachable: %s", error.c_str());
            sender_ok_ = false;
            client.disconnect();
            next_refresh = steady_ms() + std::min<uint32_t>(options_.refresh_ms, 200);
        } else if (!sender_ok_) {
            log::write(log::Level::Info, "cluster", "Redis reachable again");
            sender_ok_ = true;
            // Perhaps another master now (a failover), perhaps reconfigured.
            if (options_.check_fsync) check_fsync(client, true);
        }
        update_connected();
        batch.clear();
        if (stopping) break;
    }
    // Leaving: the id is free at once, and the others stop sending here.
    std::string error;
    if (client.connect(error) &&
        client.command({"EVAL", kLeave, "2", node_key(options_.node_id), kLiveNodesKey, boot_token_,
                        std::to_string(options_.node_id)},
                       error))
        announce(client, kLeft, error);
}

// ---- the receiving thread ----

bool RedisCluster::read_position(redis::Client& client, BusPosition& out, std::string& error) {
    redis::Reply r = client.command({"XINFO", "STREAM", bus_key(options_.node_id)}, error);
    out = BusPosition{};
    if (!r) {
        // The stream does not exist (yet, or any more); any other error
        // (LOADING after a restart, NOPERM) is no answer.
        return client.connected() && error.find("no such key") != std::string::npos;
    }
    if (r->type != REDIS_REPLY_ARRAY) {
        error = "unexpected reply to XINFO STREAM";
        return false;
    }
    out.exists = true;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const std::string_view field(r->element[i]->str, r->element[i]->len);
        const redisReply* value = r->element[i + 1];
        if (value->type == REDIS_REPLY_INTEGER && field == "entries-added") {
            out.entries_added = uint64_t(value->integer);
            out.counted = true;
        }
        if (value->type == REDIS_REPLY_INTEGER && field == "length") out.length = uint64_t(value->integer);
        if (value->type == REDIS_REPLY_STRING && field == "last-generated-id") out.last_id.assign(value->str, value->len);
    }
    // What this run has read is what Redis counts as added up to last_id.
    out.entries_read = out.entries_added;
    return true;
}

void RedisCluster::resync() {
    stats_.cluster_resyncs.add();
    // A failed reload (Redis still loading, a timeout) leaves stale caches:
    // asked again a second later until it works.
    resync_retry_ms_ = listener_.on_resync() ? 0 : steady_ms() + 1000;
}

// Compares this node's stream as Redis has it now with what this run read:
// after each reconnection and once a second (the node may fall behind while
// connected: its fan-out queue full, say).
void RedisCluster::check_missed(const BusPosition& now) {
    // (Before Redis 7.0 there is no entries-added: only the ids are compared.)
    const bool counted = now.counted;
    if (!now.exists || (counted && now.entries_added < bus_.entries_read) ||
        detail::stream_id_less(now.last_id, bus_.last_id)) {
        if (bus_.last_id.empty()) return;  // nothing read, nothing lost
        // Gone, or behind what this node read: a Redis that lost data, a
        // replica promoted before it had everything, a stream deleted by
        // hand. What was in it cannot be told: the caches are read again,
        // and reading goes on from where the stream is now.
        log::write(log::Level::Warn, "cluster",
                   "this node's stream %s is behind what the node read (Redis lost data or failed over): caches "
                   "read again, messages sent meanwhile left to sync",
                   now.exists ? "is" : "is gone and");
        bus_.last_id = now.last_id;
        bus_.entries_read = now.entries_added;
        return resync();
    }
    if (!counted) return;
    // Trimming deletes from the front: more deleted than this run has read
    // (up to last_id) means unread ones went too. (Redis 7.0 does not
    // record trimmed ids in max-deleted-entry-id; the counts it keeps.)
    const uint64_t deleted = now.entries_added - std::min(now.length, now.entries_added);
    if (deleted <= bus_.entries_read) return;
    const uint64_t missed = deleted - bus_.entries_read;
    stats_.cluster_events_missed.add(missed);
    log::write(log::Level::Warn, "cluster",
               "%llu events for this node were trimmed from its stream before it read them (more than "
               "--redis-bus-max sent while it was away or behind): caches read again, messages left to sync",
               (unsigned long long)missed);
    bus_.entries_read = deleted;
    resync();
}

void RedisCluster::receive_loop() {
    redis::Client client(options_.url, options_.timeout_ms);
    const std::string key = bus_key(options_.node_id);
    // Named so that an operator (and the tests) can find it in CLIENT LIST.
    const std::string name = "limaoim-bus-" + std::to_string(options_.node_id);
    // Shorter than the command timeout, and short enough to see a stop.
    const std::string block_ms = std::to_string(std::clamp<uint32_t>(options_.timeout_ms / 2, 1, 200));
    // Entries per XREAD: a round trip waits behind the commit scripts in
    // Redis (milliseconds under load), so it takes many at once; but
    // about 16 MiB at most, judged by the largest event of the last read
    // (a message to a datasource group carries its receivers: megabytes).
    // Starts small after each connection and doubles per read that brought
    // entries (a backlog may hold big ones); halved when a read fails.
    constexpr size_t kReadMax = 1024, kReadMin = 16, kReadBytes = 16u << 20;
    size_t read_count = kReadMin;
    int64_t next_check_ms = 0;
    int64_t last_said_ms = -10000;
    auto fail = [&](const char* what, const std::string& error) {
        // Said at most every 10 s; a short pause so that an error reply
        // (LOADING while Redis reads its AOF) is not asked again at once.
        // After an error reply the connection stays.
        if (steady_ms() - last_said_ms >= 10000) {
            last_said_ms = steady_ms();
            log::write(log::Level::Warn, "cluster", "%s: %s", what, error.c_str());
        }
        receiver_ok_ = false;
        update_connected();
        read_count = std::max(kReadMin, read_count / 2);
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    };
    while (!receiver_stop_) {
        std::string error;
        if (!client.connected()) {
            // (A name refused, by an ACL, is no reason not to read.)
            if (!client.connect(error) || (!client.command({"CLIENT", "SETNAME", name}, error) && !client.connected())) {
                fail("not reading the bus", error);
                continue;
            }
            next_check_ms = 0;  // what was sent meanwhile waits in the stream, unless trimmed
            read_count = kReadMin;
            // Connected before a token event needs it: a token set through
            // another node is then usable here one round trip later.
            if (std::string unused; !token_reader_.connect(unused)) stats_.cluster_redis_errors.add_shared();
            // The sending thread reads the live nodes again before this
            // node counts as connected (see connected()).
            {
                std::lock_guard lock(queue_mutex_);
                ++subscriptions_;
            }
            queue_wake_.notify_one();
        }
        if (steady_ms() >= next_check_ms) {
            BusPosition now;
            if (!read_position(client, now, error)) {
                fail("reading this node's stream", error);
                continue;
            }
            check_missed(now);
            next_check_ms = steady_ms() + 1000;
        }
        // This node's registration had lapsed: the others sent it nothing
        // meanwhile (see refresh_registry). Once their node lists have it.
        if (resync_requested_.exchange(false)) resync_retry_ms_ = steady_ms() + options_.refresh_ms;
        if (resync_retry_ms_ != 0 && steady_ms() >= resync_retry_ms_) resync();
        const std::string after = bus_.last_id.empty() ? "0-0" : bus_.last_id;
        redis::Reply r = client.command(
            {"XREAD", "COUNT", std::to_string(read_count), "BLOCK", block_ms, "STREAMS", key, after}, error);
        if (!r) {
            fail("reading the bus", error);
            continue;
        }
        if (!receiver_ok_) {  // reading: this node hears the others
            receiver_ok_ = true;
            update_connected();
        }
        // [[key, [[id, [field, value]], ...]]]; nil when nothing came within the block time.
        size_t entries_read = 0, largest = 0;
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 && r->element[0]->type == REDIS_REPLY_ARRAY &&
            r->element[0]->elements == 2 && r->element[0]->element[1]->type == REDIS_REPLY_ARRAY) {
            const redisReply* entries = r->element[0]->element[1];
            for (size_t i = 0; i < entries->elements; ++i) {
                const redisReply* entry = entries->element[i];
                if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2 || entry->element[0]->type != REDIS_REPLY_STRING)
                    continue;
                bus_.last_id.assign(entry->element[0]->str, entry->element[0]->len);
                ++bus_.entries_read;
                ++entries_read;
                const redisReply* fields = entry->element[1];
                if (fields->type != REDIS_REPLY_ARRAY || fields->elements != 2 || fields->element[1]->type != REDIS_REPLY_STRING)
                    continue;
                stats_.cluster_events_in.add();
                largest = std::max(largest, fields->element[1]->len);
                receive(std::string_view(fields->element[1]->str, fields->element[1]->len),
                        detail::stream_id_ms(bus_.last_id));
            }
        }
        const size_t was_count = read_count;
        if (entries_read > 0)
            read_count = std::clamp(std::min(2 * read_count, kReadBytes / std::max<size_t>(largest, 1)), kReadMin, kReadMax);
        // A dropped late event may have been a token or channel change:
        // read the caches again once caught up (at most every 10 s;
        // messages are left to sync).
        if (stale_events_seen_ && entries_read < was_count &&
            steady_ms() - last_stale_resync_ms_ >= kStaleResyncIntervalMs) {
            stale_events_seen_ = false;
            last_stale_resync_ms_ = steady_ms();
            resync();
        }
    }
}

std::string RedisCluster::sealed(std::string_view event) {
    return detail::seal(options_.secret, event, unix_ms(), boot_id_, next_seq_.fetch_add(1, std::memory_order_relaxed));
}

void RedisCluster::receive(std::string_view sealed_event, uint64_t added_ms) {
    std::string_view event;
    detail::Origin origin;
    detail::Unsealed verdict =
        detail::unseal(options_.secret, sealed_event, added_ms, unix_ms(), options_.max_event_age_ms, event, origin);
    if (verdict == detail::Unsealed::Ok) {
        // Authentic: the sending node's id (after the kind byte) is its own.
        uint16_t from = 0;
        if (event.size() >= 3) std::memcpy(&from, event.data() + 1, sizeof(from));
        if (replay_guard_.fresh(from, origin)) return dispatch(event);
        stats_.cluster_events_rejected.add();
        // A copy published again, or a genuine event taken for one (a node
        // whose clock stepped back): what it said is read again.
        stale_events_seen_ = true;
        static thread_local int64_t last_replay_said_ms = -10000;
        if (const int64_t t = steady_ms(); t - last_replay_said_ms >= 10000) {
            last_replay_said_ms = t;
            log::write(log::Level::Warn, "cluster",
                       "dropped an event of node %u seen already: a copy published again (%llu events dropped so far)",
                       unsigned(from), (unsigned long long)stats_.cluster_events_rejected.get());
        }
        return;
    }
    // Someone else publishes on the bus, a node has another secret, or
    // the clocks of the nodes are apart: said at most every 10 s.
    stats_.cluster_events_rejected.add();
    if (verdict == detail::Unsealed::Stale) stale_events_seen_ = true;
    static thread_local int64_t last_said_ms = -10000;
    if (const int64_t now = steady_ms(); now - last_said_ms >= 10000) {
        last_said_ms = now;
        if (verdict == detail::Unsealed::Forged)
            log::write(log::Level::Warn, "cluster",
                       "dropped an event with a bad MAC: a publisher without the cluster secret, or another secret "
                       "on some node (%llu events dropped so far)",
                       (unsigned long long)stats_.cluster_events_rejected.get());
        else
            log::write(log::Level::Warn, "cluster",
                       "dropped an event sealed more than %u ms before Redis took it, or ahead of this node's "
                       "clock: a replay, or the clocks of the nodes and Redis are apart",
                       options_.max_event_age_ms);
    }
}

void RedisCluster::reload_token(std::string_view uid, uint8_t device_flag) {
    std::string error;
    const std::string field(1, char(device_flag));
    redis::Reply r = token_reader_.command({"HGET", token_key(uid), field}, error);
    std::array<uint8_t, 32> digest{};
    if (r && r->type == REDIS_REPLY_STRING && r->len == digest.size() + 1) {
        std::memcpy(digest.data(), r->str, digest.size());
    } else if (r && r->type == REDIS_REPLY_NIL) {
        return;  // no token stored: nothing changed that this node could apply
    } else {
        // Unknown now: fail closed. No token hashes to all zeros, so logins
        // of (uid, device) are refused until the next resync reads it.
        stats_.cluster_redis_errors.add_shared();
        log::write(log::Level::Warn, "cluster", "reading the changed token of %.*s: %s", int(uid.size()), uid.data(),
                   r ? "unexpected record" : error.c_str());
    }
    listener_.on_token_changed(uid, device_flag, digest);
}

void RedisCluster::dispatch(std::string_view event) {
    Reader r{event};
    const char kind = r.number<char>();
    const uint16_t from = r.number<uint16_t>();
    if (!r.ok || from == options_.node_id) return;
    switch (kind) {
    case kMessage: {
        im::FanoutItem item;
        if (detail::decode_message(event, item)) listener_.on_remote_message(std::move(item));
        return;
    }
    case kLogin: {
        const uint8_t device_flag = r.number<uint8_t>();
        const uint64_t login_ms = r.number<uint64_t>();
        if (r.ok) listener_.on_remote_login(r.rest, device_flag, login_ms);
        return;
    }
    case kToken: {
        const uint8_t device_flag = r.number<uint8_t>();
        if (r.ok) reload_token(r.rest, device_flag);
        return;
    }
    case kChannel: {
        const uint8_t type = r.number<uint8_t>();
        if (r.ok) listener_.on_channel_changed(type, r.rest);
        return;
    }
    case kSystemUids:
        listener_.on_system_uids_changed();
        return;
    case kUnreadSet: {
        const uint8_t type = r.number<uint8_t>();
        const uint32_t unread = r.number<uint32_t>();
        const std::string_view uid = r.str16();
        if (r.ok) listener_.on_conversation_unread_set(uid, r.rest, type, unread);
        return;
    }
    case kConversationRemoved: {
        const uint8_t type = r.number<uint8_t>();
        const uint32_t count = r.number<uint32_t>();
        if (count > r.rest.size() / 2) return;  // each uid takes 2 bytes at least: a corrupt event
        std::vector<std::string> uids(count);
        for (std::string& uid : uids) uid = r.str16();
        if (r.ok) listener_.on_conversation_removed(uids, r.rest, type);
        return;
    }
    case kJoined:
    case kLeft: {
        std::lock_guard lock(nodes_mutex_);
        auto at = std::lower_bound(live_nodes_.begin(), live_nodes_.end(), uint32_t(from));
        const bool known = at != live_nodes_.end() && *at == from;
        if (kind == kJoined && !known) live_nodes_.insert(at, from);
        if (kind == kLeft && known) live_nodes_.erase(at);
        return;
    }
    default:
        return;  // a newer node's event kind: nothing this node knows to do
    }
}

// ---- presence queries (API and fan-out threads) ----

bool RedisCluster::online_elsewhere(const std::vector<std::string>& uids, std::vector<std::string>& out) {
    redis::Pool::Lease client = presence_clients_.take();
    const std::vector<uint32_t> nodes = live_nodes();
    std::string error;
    bool ok = client->connect(error);
    for (size_t i = 0; ok && i < uids.size(); ++i) ok = client->append({"HGETALL", presence_key(uids[i])}, error);
    struct Stale {
        std::string key, field, node;
    };
    std::vector<Stale> stale;  // entries of nodes no longer registered
    for (size_t i = 0; ok && i < uids.size(); ++i) {
        redis::Reply r = client->read(error);
        if (!r) {
            ok = false;
            break;
        }
        if (r->type != REDIS_REPLY_ARRAY) continue;
        bool online = false;
        for (size_t f = 0; f + 1 < r->elements; f += 2) {
            std::string value(r->element[f + 1]->str, r->element[f + 1]->len);
            const uint32_t node = uint32_t(std::strtoul(value.c_str(), nullptr, 10));
            if (node == options_.node_id) continue;  // this node's own directory answered already
            if (std::binary_search(nodes.begin(), nodes.end(), node))
                online = true;
            else
                stale.push_back({presence_key(uids[i]), std::string(r->element[f]->str, r->element[f]->len), std::move(value)});
        }
        if (online) out.push_back(uids[i]);
    }
    // A dead node's sessions: removed here, once its registration expired.
    // (Only while it still names that node: a login since has overwritten it.)
    for (const Stale& entry : stale) {
        if (!ok) break;
        ok = bool(client->command({"EVAL", kRemoveIfMine, "1", entry.key, entry.field, entry.node}, error));
    }
    if (!ok) {
        log::write(log::Level::Warn, "cluster", "reading presence: %s", error.c_str());
        client->disconnect();  // replies may be left unread on it: back to the pool without it
    }
    return ok;
}

}  // namespace limaoim::cluster
