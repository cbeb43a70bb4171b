// The shared engine: store/store.h on Redis (docs/REDIS.md), written by
// several nodes at once.
//
// Every key starts with "lim:"; the part in braces is its Redis Cluster hash
// tag, so one user's or one log's keys would share a slot. Uids, channel ids
// and log names are arbitrary bytes: a key is its fixed prefix, the bytes,
// then a fixed suffix, so it never stands for two things; the dedupe key,
// which has two variable parts, carries the uid's length first.
//
//   lim:tok:{UID}                 HASH   field device_flag byte -> digest[32] device_level
//   lim:ch:{TYPE:ID}              STRING channel record (below); TYPE decimal
//   lim:sysuids                   SET    system uids
//   lim:log:{LOG}                 ZSET   score seq, member BE-u32 seq + message bytes
//   lim:seq:{LOG}                 STRING decimal, last channel seq
//   lim:q:{UID}                   ZSET   the SyncOnce queue, as a log
//   lim:qseq:{UID}                STRING decimal, last queue seq
//   lim:cur:{UID}                 STRING decimal, SyncOnce cursor (only grows)
//   lim:dd:LEN:{UID}:CMN          STRING "time_ms message_id message_seq" decimal, PX dedupe window
//   lim:conv:{UID}                STRING conversation list (below)
//   lim:convseq:{LOG}             STRING decimal, last seq in the conversations (only grows)
//   lim:notify:{NODE}             ZSET   score 0, member BE-u64 (id, sign bit flipped) + event bytes
//   lim:maxid:{NODE}              STRING decimal, max message id (only grows)
//   lim:batch:{NODE}:ID           STRING "written" or "fenced": a commit's outcome (below)
//
// LOG is store::log_name (type byte + id), LEN the uid's length in decimal,
// CMN the client_msg_no, NODE RedisOptions::node_id in decimal. Members of a
// log start with their seq, so they are unique; notify members sort by id
// under ZRANGEBYLEX (a score, a double, cannot hold every int64).
// The channel record and the conversation list are in store/record_codec.h.
//
// commit() is one Lua script (atomic on a master): it first checks the
// batch's channel and queue counters and dedupe keys, then writes. It also
// sets the batch's marker (WriteBatch::id): when the reply is lost,
// commit_outcome() reads the marker, or fences the batch (sets it to
// "fenced", which a late copy of the script finds and stops at). The
// marker of the last batch known to be written is deleted by the next
// commit; markers of lost replies expire after a day. Threads:
// calls take a connection from a pool (redis/pool.h), so they do not queue on one socket.
#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <limits>
#include <mutex>
#include <set>

#include "limaoim/log/log.h"
#include "limaoim/redis/client.h"
#include "limaoim/redis/pool.h"
#include "limaoim/store/record_codec.h"
#include "limaoim/store/store.h"

namespace limaoim::store {

namespace {

using log::printable;

template <typename Number>
bool decimal(std::string_view text, Number& out) {
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    return ec == std::errc() && end == text.data() + text.size() && !text.empty();
}

std::string dedupe_value(const DedupeRecord& d) {
    return std::to_string(d.time_ms) + " " + std::to_string(d.message_id) + " " + std::to_string(d.message_seq);
}

bool decode_dedupe_value(std::string_view value, DedupeRecord& d) {
    const size_t first = value.find(' '), second = value.find(' ', first + 1);
    return first != std::string_view::npos && second != std::string_view::npos &&
           decimal(value.substr(0, first), d.time_ms) &&
           decimal(value.substr(first + 1, second - first - 1), d.message_id) &&
           decimal(value.substr(second + 1), d.message_seq);
}

std::string_view text(const redisReply* reply) { return {reply->str, reply->len}; }
std::string_view text(const redis::Reply& reply) { return text(reply.get()); }

// ---- keys ----

namespace prefix {
constexpr std::string_view token = "lim:tok:{", channel = "lim:ch:{", log = "lim:log:{", seq = "lim:seq:{",
                           queue = "lim:q:{", queue_seq = "lim:qseq:{", cursor = "lim:cur:{", dedupe = "lim:dd:",
                           conversations = "lim:conv:{", conversation_seq = "lim:convseq:{", notify = "lim:notify:{",
                           max_id = "lim:maxid:{", batch = "lim:batch:{", replicated = "lim:repl:{";
}
const std::string system_uids_key = "lim:sysuids";

std::string tagged(std::string_view key_prefix, std::string_view tag) {
    std::string key(key_prefix);
    key.append(tag);
    key.push_back('}');
    return key;
}

// What tagged() put between the braces, or false for a key of another form.
bool tag_of(std::string_view key, std::string_view key_prefix, std::string_view& tag) {
    if (!key.starts_with(key_prefix) || !key.ends_with('}') || key.size() <= key_prefix.size()) return false;
    tag = key.substr(key_prefix.size(), key.size() - key_prefix.size() - 1);
    return true;
}

std::string channel_key(uint8_t type, std::string_view id) {
    return tagged(prefix::channel, std::to_string(type) + ":" + std::string(id));
}

std::string dedupe_key(std::string_view uid, std::string_view client_msg_no) {
    std::string key(prefix::dedupe);
    key += std::to_string(uid.size()) + ":{";
    key.append(uid);
    key += "}:";
    key.append(client_msg_no);
    return key;
}

bool parse_dedupe_key(std::string_view key, DedupeRecord& d) {
    key.remove_prefix(std::min(key.size(), prefix::dedupe.size()));
    const size_t colon = key.find(':');
    size_t length = 0;
    if (colon == std::string_view::npos || !decimal(key.substr(0, colon), length)) return false;
    key.remove_prefix(colon + 1);
    if (key.size() < length + 4 || key[0] != '{' || key.substr(length + 1, 2) != "}:") return false;
    d.uid = key.substr(1, length);
    d.client_msg_no = key.substr(length + 3);
    return true;
}

std::string entry_member(uint32_t seq, const std::vector<uint8_t>& bytes) {
    std::string member;
    put_be(member, seq, 4);
    member.append(bytes.begin(), bytes.end());
    return member;
}

std::string notify_bound(int64_t id) {
    std::string bound;
    put_be(bound, order_preserving(id), 8);
    return bound;
}

// KEYS and ARGV are consumed in order, section by section, as commit()
// lays them out; every section starts with its count in ARGV. Phase 1 only
// reads, so a conflict leaves everything as it was.
constexpr const char* commit_script = R"lua(
-- KEYS[1] this batch's marker, KEYS[2] the previous one to delete; ARGV[1] the marker's time to live.
local k, a = 2, 1
local function key() k = k + 1 return KEYS[k] end
local function arg() a = a + 1 return ARGV[a] end
-- Canonical non-negative decimals: the longer is larger, else compare bytes.
local function larger(x, y) if #x ~= #y then return #x > #y end return x > y end

if redis.call('GET', KEYS[1]) == 'fenced' then return {'fenced', KEYS[1]} end

for _ = 1, tonumber(arg()) do
  local name, previous = key(), arg()
  arg()
  local stored = redis.call('GET', name) or '0'
  if stored ~= previous then return {'moved', name, stored, previous} end
end
local dedupes = tonumber(arg())
arg()
for _ = 1, dedupes do
  local name = key()
  arg()
  if redis.call('EXISTS', name) == 1 then return {'exists', name} end
end

k, a = 2, 1
redis.call('DEL', KEYS[2])
redis.call('SET', KEYS[1], 'written', 'PX', ARGV[1])
for _ = 1, tonumber(arg()) do
  local name = key()
  arg()
  redis.call('SET', name, arg())
end
dedupes = tonumber(arg())
local window = arg()
for _ = 1, dedupes do redis.call('SET', key(), arg(), 'PX', window) end
for _ = 1, tonumber(arg()) do
  local name, seq = key(), arg()
  redis.call('ZREMRANGEBYSCORE', name, seq, seq)
  redis.call('ZADD', name, seq, arg())
end
for _ = 1, tonumber(arg()) do
  local name, value = key(), arg()
  local stored = redis.call('GET', name)
  if not stored or larger(value, stored) then redis.call('SET', name, value) end
end
for _ = 1, tonumber(arg()) do
  local name, value = key(), arg()
  if value == '' then redis.call('DEL', name) else redis.call('SET', name, value) end
end
local events = tonumber(arg())
if events > 0 then
  local name = key()
  for _ = 1, events do redis.call('ZADD', name, 0, arg()) end
end
local trims, keep = tonumber(arg()), tonumber(arg())
for _ = 1, trims do redis.call('ZREMRANGEBYRANK', key(), 0, -keep - 1) end
return 'OK'
)lua";

// commit_outcome(): a lost reply's batch was written, or is fenced now.
constexpr const char* outcome_script = R"lua(
local marker = redis.call('GET', KEYS[1])
if marker then return marker end
redis.call('SET', KEYS[1], 'fenced', 'PX', ARGV[1])
return 'fenced'
)lua";

// How long the marker of a batch whose reply was lost stays: far longer
// than a committer waits for its outcome.
constexpr uint32_t kLostReplyMarkerTtlMs = 24 * 3600 * 1000;

// The arguments of one EVALSHA, kept alive while it runs.
struct ScriptCall {
    std::vector<std::string> keys, args;

    void count(size_t n) { args.push_back(std::to_string(n)); }
    void add(std::string key, std::initializer_list<std::string> values) {
        keys.push_back(std::move(key));
        for (const auto& value : values) args.push_back(value);
    }
    // EVALSHA sha or EVAL script, then numkeys, KEYS and ARGV.
    std::vector<std::string_view> command(std::string_view verb, std::string_view script,
                                          const std::string& numkeys) const {
        std::vector<std::string_view> out{verb, script, numkeys};
        out.insert(out.end(), keys.begin(), keys.end());
        out.insert(out.end(), args.begin(), args.end());
        return out;
    }
};

Status failed(std::string_view operation, std::string_view error) {
    return Status::failure("redis: " + std::string(operation) + ": " + std::string(error));
}

class RedisStore final : public Store {
public:
    RedisStore(const RedisOptions& options, redis::Url url, std::string script_sha)
        : options_(options),
          pool_(std::move(url), options.timeout_ms),
          script_sha_(std::move(script_sha)),
          notify_key_(tagged(prefix::notify, std::to_string(options.node_id))),
          max_id_key_(tagged(prefix::max_id, std::to_string(options.node_id))),
          replicated_key_(tagged(prefix::replicated, std::to_string(options.node_id))) {}

    const char* engine() const override { return "redis"; }
    bool shared() const override { return true; }

    Status put_token(const TokenRecord& token) override {
        std::string value(token.digest.begin(), token.digest.end());
        value.push_back(char(token.device_level));
        const std::string key = tagged(prefix::token, token.uid), field(1, char(token.device_flag));
        return run("put_token", {"HSET", key, field, value});
    }

    Status load_tokens(const std::function<void(TokenRecord&&)>& each) override {
        return scan_fetch("load_tokens", "lim:tok:*", "HGETALL", [&](std::string_view key, const redisReply* reply) {
            std::string_view uid;
            if (!tag_of(key, prefix::token, uid) || reply->type != REDIS_REPLY_ARRAY)
                return failed("load_tokens", "unexpected key or value " + printable(key));
            for (size_t i = 0; i + 1 < reply->elements; i += 2) {
                TokenRecord token;
                std::string_view field = text(reply->element[i]), value = text(reply->element[i + 1]);
                if (field.size() != 1 || value.size() != token.digest.size() + 1)
                    return failed("load_tokens", "corrupt token record " + printable(key));
                token.uid = uid;
                token.device_flag = uint8_t(field[0]);
                std::memcpy(token.digest.data(), value.data(), token.digest.size());
                token.device_level = uint8_t(value.back());
                each(std::move(token));
            }
            return Status::success();
        });
    }

    Status put_channel(const ChannelRecord& channel) override {
        return run("put_channel", {"SET", channel_key(channel.type, channel.id), encode_channel(channel)});
    }

    Status delete_channel(uint8_t type, std::string_view id) override {
        return run("delete_channel", {"DEL", channel_key(type, id), tagged(prefix::log, log_name(type, id))});
    }

    Status load_channels(const std::function<void(ChannelRecord&&)>& each) override {
        return scan_fetch("load_channels", "lim:ch:*", "GET", [&](std::string_view key, const redisReply* reply) {
            if (reply->type == REDIS_REPLY_NIL) return Status::success();  // deleted since the SCAN
            std::string_view tag;
            ChannelRecord channel;
            const size_t colon = tag_of(key, prefix::channel, tag) ? tag.find(':') : std::string_view::npos;
            if (colon == std::string_view::npos || !decimal(tag.substr(0, colon), channel.type) ||
                reply->type != REDIS_REPLY_STRING || !decode_channel(text(reply), channel))
                return failed("load_channels", "corrupt channel record " + printable(key));
            channel.id = tag.substr(colon + 1);
            each(std::move(channel));
            return Status::success();
        });
    }

    Status get_channel(uint8_t type, std::string_view id, ChannelRecord& out, bool& found) override {
        found = false;
        redis::Reply reply;
        Status status = run("get_channel", {"GET", channel_key(type, id)}, &reply);
        if (!status || reply->type == REDIS_REPLY_NIL) return status;
        out = ChannelRecord{};
        if (reply->type != REDIS_REPLY_STRING || !decode_channel(text(reply), out))
            return failed("get_channel", "corrupt channel record " + printable(log_name(type, id)));
        out.type = type;
        out.id = id;
        found = true;
        return Status::success();
    }

    Status put_system_uids(const std::vector<std::string>& uids) override {
        // MULTI/EXEC: readers see the old set or the new one.
        std::vector<std::string_view> add{"SADD", system_uids_key};
        add.insert(add.end(), uids.begin(), uids.end());
        std::vector<std::vector<std::string_view>> commands{{"MULTI"}, {"DEL", system_uids_key}};
        if (!uids.empty()) commands.push_back(add);
        commands.push_back({"EXEC"});
        std::vector<redis::Reply> replies;
        return pipeline("put_system_uids", commands, replies);
    }

    Status load_system_uids(std::vector<std::string>& uids) override {
        redis::Reply reply;
        Status status = run("load_system_uids", {"SMEMBERS", system_uids_key}, &reply);
        if (status)
            for (size_t i = 0; i < reply->elements; ++i) uids.emplace_back(text(reply->element[i]));
        return status;
    }

    // `sync` has nothing to do here: durability is the server's appendfsync
    // (always: on disk before the script's reply) plus WAIT (docs/REDIS.md).
    // What a commit's reply promises is Redis's to keep (docs/REDIS.md, Durability).
    Status sync() override { return Status::success(); }

    Status commit(const WriteBatch& batch, bool /*sync*/) override {
        if (batch.empty()) return Status::success();
        ScriptCall call;
        const std::string marker = marker_key(batch);
        call.keys.push_back(marker);
        const std::string previous = previous_marker();
        call.keys.push_back(previous.empty() ? marker : previous);
        call.args.push_back(std::to_string(kLostReplyMarkerTtlMs));
        call.count(batch.channel_seqs.size() + batch.queue_seqs.size());
        for (const auto& c : batch.channel_seqs)
            call.add(tagged(prefix::seq, c.log), {std::to_string(c.previous), std::to_string(c.value)});
        for (const auto& c : batch.queue_seqs)
            call.add(tagged(prefix::queue_seq, c.log), {std::to_string(c.previous), std::to_string(c.value)});
        call.count(batch.dedupe.size());
        call.args.push_back(std::to_string(options_.dedupe_window_ms));
        for (const auto& d : batch.dedupe) call.add(dedupe_key(d.uid, d.client_msg_no), {dedupe_value(d)});
        call.count(batch.messages.size() + batch.queue_messages.size());
        for (const auto& m : batch.messages)
            call.add(tagged(prefix::log, m.log), {std::to_string(m.seq), entry_member(m.seq, m.bytes)});
        for (const auto& m : batch.queue_messages)
            call.add(tagged(prefix::queue, m.log), {std::to_string(m.seq), entry_member(m.seq, m.bytes)});
        call.count(batch.cursors.size() + batch.conversation_seqs.size() + (batch.max_message_id != 0));
        for (const auto& c : batch.cursors) call.add(tagged(prefix::cursor, c.log), {std::to_string(c.value)});
        for (const auto& c : batch.conversation_seqs)
            call.add(tagged(prefix::conversation_seq, c.log), {std::to_string(c.value)});
        if (batch.max_message_id != 0) call.add(max_id_key_, {std::to_string(batch.max_message_id)});
        call.count(batch.conversations.size());
        for (const UserConversations& user : batch.conversations)
            call.add(tagged(prefix::conversations, user.uid),
                     {user.conversations.empty() ? std::string() : encode_conversations(user.conversations)});
        call.count(batch.notify.size());
        if (!batch.notify.empty()) call.keys.push_back(notify_key_);
        for (const NotifyEvent& event : batch.notify) {
            std::string member = notify_bound(event.id);
            member.append(event.bytes.begin(), event.bytes.end());
            call.args.push_back(std::move(member));
        }
        // The history cap: each log written keeps its newest log_max entries.
        std::set<std::string> trimmed;
        if (options_.log_max > 0)
            for (const auto& m : batch.messages) trimmed.insert(tagged(prefix::log, m.log));
        call.count(trimmed.size());
        call.args.push_back(std::to_string(options_.log_max));
        call.keys.insert(call.keys.end(), trimmed.begin(), trimmed.end());

        auto client = pool_.take();
        std::string error;
        if (!client->connect(error)) return failed("commit", error);  // nothing sent
        const std::string numkeys = std::to_string(call.keys.size());
        redis::Reply reply = client->command(call.command("EVALSHA", script_sha_, numkeys), error);
        // The script cache is gone after a restart or a failover: EVAL loads it again.
        if (!reply && error.starts_with("NOSCRIPT"))
            reply = client->command(call.command("EVAL", commit_script, numkeys), error);
        if (!reply) {
            // An error reply keeps the connection: the server refused the
            // script (READONLY too: a replica runs nothing). An I/O error or
            // a timeout drops it: the script may have run all the same.
            if (client->connected() || error.starts_with("READONLY")) return failed("commit", error);
            return Status::outcome_unknown("redis: commit: " + error + " (the script may have run)");
        }
        if (reply->type == REDIS_REPLY_ARRAY && reply->elements >= 2) {
            const std::string key = printable(text(reply->element[1]));
            if (text(reply->element[0]) == "fenced")
                return Status::failure("redis: commit: " + key + " is fenced (a late copy of a lost batch); nothing written");
            if (text(reply->element[0]) == "moved" && reply->elements == 4)
                return Status::conflicted("redis: commit conflict: " + key + " holds " +
                                          std::string(text(reply->element[2])) + ", this batch expected " +
                                          std::string(text(reply->element[3])) + " (another node wrote it)");
            return Status::conflicted("redis: commit conflict: " + key +
                                      " exists (another node stored this SEND); nothing written");
        }
        set_previous_marker(marker);
        if (options_.wait_replicas == 0) return Status::success();
        // The batch is on the master, which every node reads, but a failover
        // may lose it: written, without the durability asked for.
        redis::Reply acks = client->command(
            {"WAIT", std::to_string(options_.wait_replicas), std::to_string(options_.wait_timeout_ms)}, error);
        if (!acks) return Status::written_unreplicated("redis: commit: written, but WAIT failed: " + error);
        if (acks->integer < int64_t(options_.wait_replicas))
            return Status::written_unreplicated("redis: commit: written but acknowledged by only " +
                                                std::to_string(acks->integer) + " of " +
                                                std::to_string(options_.wait_replicas) + " replicas");
        return Status::success();
    }

    Status commit_outcome(const WriteBatch& batch, bool& written) override {
        written = false;
        const std::string marker = marker_key(batch);
        redis::Reply reply;
        Status status = run("commit_outcome", {"EVAL", outcome_script, "1", marker, std::to_string(kLostReplyMarkerTtlMs)}, &reply);
        if (!status) return status;
        if (reply->type != REDIS_REPLY_STRING) return failed("commit_outcome", "unexpected reply");
        written = text(reply) == "written";
        if (!written) return Status::success();
        set_previous_marker(marker);
        // WAIT counts the writes of the connection that asks: this one wrote
        // nothing of the batch, so whether its replicas have it is unknown.
        if (options_.wait_replicas > 0)
            return Status::written_unreplicated("redis: commit: written (its reply was lost); not known to be on " +
                                                std::to_string(options_.wait_replicas) + " replicas");
        return Status::success();
    }

    Status channel_seq(std::string_view log, uint32_t& seq) override {
        return get_number("channel_seq", tagged(prefix::seq, log), seq);
    }
    Status queue_seq(std::string_view uid, uint32_t& seq) override {
        return get_number("queue_seq", tagged(prefix::queue_seq, uid), seq);
    }
    Status cursor(std::string_view uid, uint32_t& seq) override {
        return get_number("cursor", tagged(prefix::cursor, uid), seq);
    }
    Status max_message_id(int64_t& id) override { return get_number("max_message_id", max_id_key_, id); }

    Status read_messages(std::string_view log, uint32_t from_seq, uint32_t to_seq, const ReadLimit& limit,
                         std::vector<std::string>& out) override {
        return read_entries("read_messages", tagged(prefix::log, log), from_seq,
                            to_seq == 0 ? uint64_t(1) << 32 : to_seq, limit, out);
    }

    Status read_queue(std::string_view uid, uint32_t after_seq, const ReadLimit& limit,
                      std::vector<std::string>& out) override {
        return read_entries("read_queue", tagged(prefix::queue, uid), uint64_t(after_seq) + 1, uint64_t(1) << 32,
                            limit, out);
    }

    Status load_channel_seqs(const std::function<void(std::string_view, uint32_t)>& each) override {
        return load_counters("load_channel_seqs", "lim:seq:*", prefix::seq, each);
    }

    Status load_conversations(const std::function<void(UserConversations&&)>& each) override {
        return scan_fetch("load_conversations", "lim:conv:*", "GET", [&](std::string_view key, const redisReply* reply) {
            if (reply->type == REDIS_REPLY_NIL) return Status::success();
            std::string_view uid;
            UserConversations user;
            if (!tag_of(key, prefix::conversations, uid) || reply->type != REDIS_REPLY_STRING ||
                !decode_conversations(text(reply), user.conversations))
                return failed("load_conversations", "corrupt list under " + printable(key));
            user.uid = uid;
            each(std::move(user));
            return Status::success();
        });
    }

    Status get_conversations(std::span<const std::string> uids,
                             std::vector<std::vector<ConversationRecord>>& out) override {
        out.assign(uids.size(), {});
        constexpr size_t chunk = 512;  // GETs per round trip
        std::vector<std::string> keys;
        for (size_t first = 0; first < uids.size(); first += chunk) {
            const size_t end = std::min(uids.size(), first + chunk);
            keys.clear();
            for (size_t i = first; i < end; ++i) keys.push_back(tagged(prefix::conversations, uids[i]));
            std::vector<std::vector<std::string_view>> commands;
            for (const std::string& key : keys) commands.push_back({"GET", key});
            std::vector<redis::Reply> replies;
            if (Status status = pipeline("get_conversations", commands, replies); !status) return status;
            for (size_t i = first; i < end; ++i) {
                const redisReply* reply = replies[i - first].get();
                if (reply->type == REDIS_REPLY_NIL) continue;
                if (reply->type != REDIS_REPLY_STRING || !decode_conversations(text(reply), out[i]))
                    return failed("get_conversations", "corrupt list of " + printable(uids[i]));
            }
        }
        return Status::success();
    }

    Status load_conversation_seqs(const std::function<void(std::string_view, uint32_t)>& each) override {
        return load_counters("load_conversation_seqs", "lim:convseq:*", prefix::conversation_seq, each);
    }

    Status read_notify(int64_t after_id, uint32_t limit, std::vector<NotifyEvent>& out) override {
        if (limit == 0 || after_id == std::numeric_limits<int64_t>::max()) return Status::success();
        redis::Reply reply;
        Status status = run("read_notify",
                            {"ZRANGEBYLEX", notify_key_, "[" + notify_bound(after_id + 1), "+", "LIMIT", "0",
                             std::to_string(limit)},
                            &reply);
        for (size_t i = 0; status && i < reply->elements; ++i) {
            RecordReader in{text(reply->element[i])};
            NotifyEvent event;
            event.id = from_order_preserving(in.be(8));
            if (!in.ok) return failed("read_notify", "corrupt member in " + notify_key_);
            event.bytes.assign(in.rest.begin(), in.rest.end());
            out.push_back(std::move(event));
        }
        return status;
    }

    Status delete_notify(int64_t first_id, int64_t last_id) override {
        if (first_id > last_id) return Status::success();
        return run("delete_notify", {"ZREMRANGEBYLEX", notify_key_, "[" + notify_bound(first_id),
                                     last_id == std::numeric_limits<int64_t>::max() ? std::string("+")
                                                                                    : "(" + notify_bound(last_id + 1)});
    }

    Status count_notify(uint64_t& count) override {
        redis::Reply reply;
        Status status = run("count_notify", {"ZCARD", notify_key_}, &reply);
        count = status ? uint64_t(reply->integer) : 0;
        return status;
    }

    bool writable(std::string& why) override {
        auto client = pool_.take();
        std::string error;
        redis::Reply role = client->command({"ROLE"}, error);
        if (!role) {
            why = "redis: " + error;
            return false;
        }
        if (role->type != REDIS_REPLY_ARRAY || role->elements == 0 || text(role->element[0]) != "master") {
            why = "redis: " + client->master().host + ":" + std::to_string(client->master().port) + " is not a master";
            client->disconnect();  // the next call asks the sentinels again
            return false;
        }
        return true;
    }

    Status load_dedupe(int64_t since_ms, const std::function<void(DedupeRecord&&)>& each) override {
        std::vector<DedupeRecord> records;
        Status status =
            scan_fetch("load_dedupe", "lim:dd:*", "GET", [&](std::string_view key, const redisReply* reply) {
                if (reply->type == REDIS_REPLY_NIL) return Status::success();  // expired since the SCAN
                DedupeRecord record;
                if (!parse_dedupe_key(key, record) || reply->type != REDIS_REPLY_STRING ||
                    !decode_dedupe_value(text(reply), record))
                    return failed("load_dedupe", "corrupt dedupe record " + printable(key));
                if (record.time_ms >= since_ms) records.push_back(std::move(record));
                return Status::success();
            });
        if (!status) return status;
        std::stable_sort(records.begin(), records.end(),
                         [](const DedupeRecord& a, const DedupeRecord& b) { return a.time_ms < b.time_ms; });
        for (DedupeRecord& record : records) each(std::move(record));
        return Status::success();
    }

    // Each dedupe key expires by itself (its PX).
    Status expire_dedupe(int64_t) override { return Status::success(); }

    Status find_dedupe(std::string_view uid, std::string_view client_msg_no, int64_t since_ms, DedupeRecord& out,
                       bool& found) override {
        found = false;
        redis::Reply reply;
        Status status = run("find_dedupe", {"GET", dedupe_key(uid, client_msg_no)}, &reply);
        if (!status || reply->type == REDIS_REPLY_NIL) return status;
        DedupeRecord record{0, std::string(uid), std::string(client_msg_no), 0, 0};
        if (reply->type != REDIS_REPLY_STRING || !decode_dedupe_value(text(reply), record))
            return failed("find_dedupe", "corrupt dedupe record of " + printable(uid));
        found = record.time_ms >= since_ms;
        if (found) out = std::move(record);
        return Status::success();
    }

    // One connection, so one master: each record read again there, then a
    // write of its own, then WAIT (which counts the writes of the connection
    // that asks): replicas that acknowledge that write have everything the
    // master wrote before it, the records included.
    Status confirm_dedupe(const std::vector<DedupeRecord>& records) override {
        if (options_.wait_replicas == 0 || records.empty()) return Status::success();
        std::vector<std::string> keys;
        keys.reserve(records.size());
        for (const DedupeRecord& record : records) keys.push_back(dedupe_key(record.uid, record.client_msg_no));
        const std::string wait_replicas = std::to_string(options_.wait_replicas);
        const std::string wait_timeout = std::to_string(options_.wait_timeout_ms);
        std::vector<std::vector<std::string_view>> commands;
        for (const std::string& key : keys) commands.push_back({"GET", key});
        commands.push_back({"INCR", replicated_key_});
        commands.push_back({"WAIT", wait_replicas, wait_timeout});
        std::vector<redis::Reply> replies;
        if (Status status = pipeline("confirm_dedupe", commands, replies); !status) return status;
        for (size_t i = 0; i < records.size(); ++i) {
            DedupeRecord now{0, records[i].uid, records[i].client_msg_no, 0, 0};
            if (replies[i]->type != REDIS_REPLY_STRING || !decode_dedupe_value(text(replies[i]), now) ||
                now.message_id != records[i].message_id || now.message_seq != records[i].message_seq)
                return failed("confirm_dedupe", "the record of " + printable(records[i].uid) +
                                                    "'s resend is no longer on the master");
        }
        const int64_t acks = replies.back()->integer;
        if (acks < int64_t(options_.wait_replicas))
            return failed("confirm_dedupe",
                          "on " + std::to_string(acks) + " of " + wait_replicas + " replicas");
        return Status::success();
    }

private:
    using Visit = std::function<Status(std::string_view key, const redisReply* value)>;

    std::string marker_key(const WriteBatch& batch) const {
        return tagged(prefix::batch, std::to_string(options_.node_id)) + ":" + std::to_string(batch.id);
    }
    // The marker the next commit deletes (empty: none yet).
    std::string previous_marker() {
        std::lock_guard lock(marker_mutex_);
        return previous_marker_;
    }
    void set_previous_marker(const std::string& marker) {
        std::lock_guard lock(marker_mutex_);
        previous_marker_ = marker;
    }

    // One command; error replies are failures. `reply` (optional) gets the reply.
    Status run(std::string_view operation, const std::vector<std::string_view>& args, redis::Reply* reply = nullptr) {
        auto client = pool_.take();
        std::string error;
        redis::Reply got = client->command(args, error);
        if (!got) return failed(operation, error);
        if (reply != nullptr) *reply = std::move(got);
        return Status::success();
    }

    // Commands sent together, their replies read in order; an error reply fails the whole.
    Status pipeline(std::string_view operation, const std::vector<std::vector<std::string_view>>& commands,
                    std::vector<redis::Reply>& replies) {
        auto client = pool_.take();
        std::string error;
        for (const auto& command : commands)
            if (!client->append(command, error)) return failed(operation, error);
        for (size_t i = 0; i < commands.size(); ++i) {
            redis::Reply reply = client->read(error);
            if (!reply) return failed(operation, error);
            if (reply->type == REDIS_REPLY_ERROR) error = text(reply);
            replies.push_back(std::move(reply));
        }
        return error.empty() ? Status::success() : failed(operation, error);
    }

    template <typename Number>
    Status get_number(std::string_view operation, const std::string& key, Number& value) {
        value = 0;
        redis::Reply reply;
        Status status = run(operation, {"GET", key}, &reply);
        if (!status || reply->type == REDIS_REPLY_NIL) return status;
        if (reply->type != REDIS_REPLY_STRING || !decimal(text(reply), value)) {
            value = 0;
            return failed(operation, "corrupt value under " + printable(key));
        }
        return Status::success();
    }

    // The entries of a log (a ZSET scored by seq) with first <= seq < end
    // (end up to 2^32), within `limit` (ReadLimit), in pages: the byte stop
    // would save nothing if one ZRANGEBYSCORE fetched all `count` entries (up
    // to the API's 1,000) first. The first page asks for kFirstPage entries;
    // each later one for as many as the bytes left would hold at the largest
    // size seen, plus one, at most kReadPage. So a log of big messages is
    // read about as far as the budget goes, and one of small messages 32 at a
    // time: a full API page of 1,000 small messages takes 32 round trips (a
    // few ms on one host), and what a read fetches past its byte stop is at
    // most a page (31 MiB at the default 1 MiB max packet, against 1,000
    // messages before). Pages are separate reads: a concurrent trim may
    // remove entries between two, never reorder or repeat them.
    Status read_entries(std::string_view operation, const std::string& key, uint64_t first, uint64_t end,
                        const ReadLimit& limit, std::vector<std::string>& out) {
        constexpr size_t kFirstPage = 8, kReadPage = 32;
        const size_t first_out = out.size();
        size_t bytes = 0, largest = 0;
        bool exhausted = first >= end;
        while (!exhausted && out.size() - first_out < limit.count && !limit.spent(bytes)) {
            const size_t wanted = limit.count - (out.size() - first_out);
            size_t page = std::min(wanted, largest == 0 ? kFirstPage : kReadPage);
            if (largest > 0) page = std::min(page, (limit.bytes - bytes) / largest + 1);
            const std::string low = std::to_string(first), high = "(" + std::to_string(end);
            const std::string count = std::to_string(page);
            redis::Reply reply;
            Status status = limit.newest
                                ? run(operation, {"ZREVRANGEBYSCORE", key, high, low, "LIMIT", "0", count}, &reply)
                                : run(operation, {"ZRANGEBYSCORE", key, low, high, "LIMIT", "0", count}, &reply);
            if (!status) return status;
            for (size_t i = 0; i < reply->elements && !limit.spent(bytes); ++i) {
                RecordReader member{text(reply->element[i])};
                const uint32_t seq = uint32_t(member.be(4));
                if (!member.ok) return failed(operation, "corrupt entry in " + printable(key));
                // The next page starts past this entry, in the direction read.
                if (limit.newest) {
                    end = seq;
                } else {
                    first = uint64_t(seq) + 1;
                }
                out.emplace_back(member.rest);
                bytes += out.back().size();
                largest = std::max(largest, out.back().size());
            }
            exhausted = reply->elements < page || first >= end;
        }
        if (limit.newest) std::reverse(out.begin() + ptrdiff_t(first_out), out.end());
        return Status::success();
    }

    // Every key matching `pattern`, fetched with `verb` (GET, HGETALL), in
    // pipelined chunks. A key SCAN returns twice is visited once.
    Status scan_fetch(std::string_view operation, std::string_view pattern, std::string_view verb,
                      const Visit& visit) {
        std::set<std::string> keys;
        std::string cursor = "0";
        do {
            redis::Reply reply;
            Status status = run(operation, {"SCAN", cursor, "MATCH", std::string(pattern), "COUNT", "1000"}, &reply);
            if (!status) return status;
            if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2)
                return failed(operation, "unexpected SCAN reply");
            cursor = text(reply->element[0]);
            for (size_t i = 0; i < reply->element[1]->elements; ++i) keys.emplace(text(reply->element[1]->element[i]));
        } while (cursor != "0");

        constexpr size_t chunk = 512;
        std::vector<std::string> batch;
        for (auto it = keys.begin(); it != keys.end();) {
            batch.clear();
            for (; it != keys.end() && batch.size() < chunk; ++it) batch.push_back(*it);
            std::vector<std::vector<std::string_view>> commands;
            for (const auto& key : batch) commands.push_back({verb, key});
            std::vector<redis::Reply> replies;
            Status status = pipeline(operation, commands, replies);
            for (size_t i = 0; status && i < batch.size(); ++i) status = visit(batch[i], replies[i].get());
            if (!status) return status;
        }
        return Status::success();
    }

    Status load_counters(std::string_view operation, std::string_view pattern, std::string_view key_prefix,
                         const std::function<void(std::string_view, uint32_t)>& each) {
        return scan_fetch(operation, pattern, "GET", [&](std::string_view key, const redisReply* reply) {
            if (reply->type == REDIS_REPLY_NIL) return Status::success();
            std::string_view log;
            uint32_t seq = 0;
            if (!tag_of(key, key_prefix, log) || reply->type != REDIS_REPLY_STRING || !decimal(text(reply), seq))
                return failed(operation, "corrupt counter under " + printable(key));
            each(log, seq);
            return Status::success();
        });
    }

    const RedisOptions options_;
    redis::Pool pool_;
    const std::string script_sha_;
    const std::string notify_key_, max_id_key_;
    const std::string replicated_key_;  // written by confirm_dedupe, for its WAIT to count
    std::mutex marker_mutex_;
    std::string previous_marker_;  // the last batch known to be written
};

}  // namespace

std::unique_ptr<Store> open_redis(const RedisOptions& options, std::string& error) {
    redis::Url url;
    if (!redis::parse_url(options.url, url, error)) {
        error = "redis: bad URL: " + error;
        return nullptr;
    }
    if (!options.password.empty()) url.password = options.password;
    if (options.dedupe_window_ms == 0) {
        error = "redis: the dedupe window must be at least 1 ms";
        return nullptr;
    }
    redis::Client client(url, options.timeout_ms);
    redis::Reply sha = client.command({"SCRIPT", "LOAD", commit_script}, error);
    if (!sha || sha->type != REDIS_REPLY_STRING) {
        error = "redis: cannot open " + redis::masked(options.url) + ": " + (sha ? "unexpected SCRIPT LOAD reply" : error);
        return nullptr;
    }
    return std::make_unique<RedisStore>(options, std::move(url), std::string(text(sha)));
}

}  // namespace limaoim::store
