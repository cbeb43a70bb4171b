// A blocking Redis client for the threads that may wait (the committer, the
// fan-out and API threads, the cluster bus): hiredis's redisContext with a
// connect/command timeout, the master found through Sentinel when the URL
// names sentinels, and reconnection after any I/O error.
//
// URLs (docs/REDIS.md):
//   redis://[[USER]:PASSWORD@]HOST:PORT[/DB]
//   redis+sentinel://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER_NAME[/DB]
// The credentials (percent-encoded where they hold ':', '@' or '/') are
// sent with AUTH to the master; the sentinels are asked without them.
//
// A Client is used by one thread at a time. After an error the connection
// is dropped; the next call connects again (through the sentinels, so a
// failover is followed), at most once per backoff interval, which doubles
// from 100 ms up to 2 s while connecting fails and resets on success.
// Nothing here logs; errors come back as text for the caller to log.
#pragma once

#include <hiredis/hiredis.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace limaoim::redis {

struct Endpoint {
    std::string host;
    uint16_t port = 0;
};

struct Url {
    std::vector<Endpoint> servers;  // the server, or the sentinels
    std::string master_name;        // set: `servers` are sentinels
    uint32_t db = 0;
    std::string user;      // ACL user; empty: the default user
    std::string password;  // empty: no AUTH
    bool sentinel() const { return !master_name.empty(); }
};

// False with `error` (naming what is wrong, never a password) on a bad URL.
bool parse_url(std::string_view text, Url& out, std::string& error);
// `text` with the password of its credentials, if any, replaced by "***":
// what logs and error messages may show of a URL.
std::string masked(std::string_view text);

struct ReplyFree {
    void operator()(redisReply* reply) const { freeReplyObject(reply); }
};
using Reply = std::unique_ptr<redisReply, ReplyFree>;

class Client {
public:
    Client(Url url, uint32_t timeout_ms);
    ~Client();
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;

    // Connects now if not connected (and the backoff allows): resolves the
    // master through the sentinels, AUTHs, checks ROLE is master, SELECTs
    // the db.
    bool connect(std::string& error);
    bool connected() const { return context_ != nullptr; }
    void disconnect();

    // One command, binary-safe arguments. Null with `error` when the
    // connection fails (it is dropped) or the reply is an error reply (the
    // connection stays, except after READONLY: the server became a replica).
    Reply command(const std::vector<std::string_view>& args, std::string& error);
    // Pipelining: append() queues commands, read() takes their replies in
    // order. A failed append or read drops the connection; the rest of the
    // replies are gone with it.
    bool append(const std::vector<std::string_view>& args, std::string& error);
    Reply read(std::string& error);  // error replies come back as replies (type REDIS_REPLY_ERROR)

    const Endpoint& master() const { return master_; }  // where the last connection went

private:
    bool resolve_master(std::string& error);
    bool authenticate(std::string& error);

    Url url_;
    uint32_t timeout_ms_;
    redisContext* context_ = nullptr;
    Endpoint master_;
    int64_t next_attempt_ms_ = 0;
    uint32_t backoff_ms_ = 0;
    std::string last_error_;  // why the last connect failed, repeated while the backoff waits
};

// How durable a write acknowledged by the master is: only appendonly yes
// with appendfsync always survives the master's crash (docs/REDIS.md).
enum class Fsync {
    Always,   // every write is on disk before the reply
    Weaker,   // appendonly no, or appendfsync everysec/no
    Unknown,  // CONFIG GET refused (renamed, ACL) or failed
};
// CONFIG GET appendonly and appendfsync on `client`'s master; `detail`
// says what was found or why it could not be asked.
Fsync check_fsync(Client& client, std::string& detail);

}  // namespace limaoim::redis
