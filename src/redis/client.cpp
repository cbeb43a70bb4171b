#include "limaoim/redis/client.h"

#include <algorithm>
#include <charconv>
#include <chrono>

namespace limaoim::redis {

namespace {

constexpr uint32_t first_backoff_ms = 100, max_backoff_ms = 2000;

int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

template <typename Number>
bool parse_number(std::string_view text, Number& out) {
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    return ec == std::errc() && end == text.data() + text.size() && !text.empty();
}

// HOST:PORT, HOST possibly a bracketed IPv6 address.
bool parse_endpoint(std::string_view text, Endpoint& out, std::string& error) {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) {
        error = "\"" + std::string(text) + "\" has no :PORT";
        return false;
    }
    std::string_view host = text.substr(0, colon), port = text.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    if (host.empty()) {
        error = "\"" + std::string(text) + "\" has no host";
        return false;
    }
    if (!parse_number(port, out.port) || out.port == 0) {
        error = "\"" + std::string(text) + "\" has no valid port (1-65535)";
        return false;
    }
    out.host = host;
    return true;
}

std::string where(const Endpoint& endpoint) { return endpoint.host + ":" + std::to_string(endpoint.port); }

timeval as_timeval(uint32_t ms) { return {time_t(ms / 1000), suseconds_t(ms % 1000 * 1000)}; }

// A connected context, or null with `error`.
redisContext* open_context(const Endpoint& endpoint, uint32_t timeout_ms, std::string& error) {
    redisContext* context = redisConnectWithTimeout(endpoint.host.c_str(), endpoint.port, as_timeval(timeout_ms));
    if (context == nullptr) {
        error = where(endpoint) + ": cannot allocate a connection";
        return nullptr;
    }
    if (context->err == 0 && redisSetTimeout(context, as_timeval(timeout_ms)) == REDIS_OK) return context;
    error = where(endpoint) + ": " + (context->err ? context->errstr : "cannot set the socket timeout");
    redisFree(context);
    return nullptr;
}

// One command on a bare context (sentinels, the checks after connecting).
Reply run(redisContext* context, const std::vector<std::string_view>& args, std::string& error) {
    std::vector<const char*> argv;
    std::vector<size_t> lengths;
    for (std::string_view arg : args) {
        argv.push_back(arg.data());
        lengths.push_back(arg.size());
    }
    Reply reply(static_cast<redisReply*>(redisCommandArgv(context, int(argv.size()), argv.data(), lengths.data())));
    if (!reply) {
        error = context->errstr[0] ? context->errstr : "connection lost";
        return nullptr;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        error = std::string(reply->str, reply->len);
        return nullptr;
    }
    return reply;
}

}  // namespace

bool parse_url(std::string_view text, Url& out, std::string& error) {
    out = Url{};
    constexpr std::string_view plain = "redis://", sentinel = "redis+sentinel://";
    const bool via_sentinel = text.starts_with(sentinel);
    if (!via_sentinel && !text.starts_with(plain)) {
        error = "a Redis URL starts with redis:// or redis+sentinel://";
        return false;
    }
    std::string_view rest = text.substr(via_sentinel ? sentinel.size() : plain.size());
    // Never echo credentials back into a log line.
    if (rest.find('@') != std::string_view::npos) {
        error = "credentials in a Redis URL are not supported";
        return false;
    }
    if (rest.find_first_of("?#") != std::string_view::npos) {
        error = "a Redis URL takes no query or fragment: " + std::string(text);
        return false;
    }
    const size_t slash = rest.find('/');
    std::string_view hosts = rest.substr(0, slash);
    std::string_view path = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash + 1);
    if (hosts.empty()) {
        error = "no HOST:PORT in " + std::string(text);
        return false;
    }
    while (!hosts.empty()) {
        const size_t comma = hosts.find(',');
        Endpoint endpoint;
        if (!parse_endpoint(hosts.substr(0, comma), endpoint, error)) return false;
        out.servers.push_back(std::move(endpoint));
        hosts = comma == std::string_view::npos ? std::string_view{} : hosts.substr(comma + 1);
        if (comma != std::string_view::npos && hosts.empty()) {
            error = "trailing comma in " + std::string(text);
            return false;
        }
    }
    bool db_given = slash != std::string_view::npos;
    if (via_sentinel) {
        const size_t next = path.find('/');
        out.master_name = path.substr(0, next);
        db_given = next != std::string_view::npos;
        path = db_given ? path.substr(next + 1) : std::string_view{};
        if (out.master_name.empty()) {
            error = "redis+sentinel:// needs the master's name: redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER_NAME[/DB]";
            return false;
        }
    } else if (out.servers.size() > 1) {
        error = "redis:// takes one HOST:PORT (several are sentinels: redis+sentinel://)";
        return false;
    }
    if (db_given && !parse_number(path, out.db)) {
        error = "database \"" + std::string(path) + "\" is not a number";
        return false;
    }
    return true;
}

Client::Client(Url url, uint32_t timeout_ms) : url_(std::move(url)), timeout_ms_(timeout_ms) {}

Client::~Client() { disconnect(); }

void Client::disconnect() {
    if (context_ != nullptr) redisFree(context_);
    context_ = nullptr;
}

bool Client::resolve_master(std::string& error) {
    if (!url_.sentinel()) {
        master_ = url_.servers.front();
        return true;
    }
    std::string tried;
    for (const Endpoint& sentinel : url_.servers) {
        std::string why;
        redisContext* context = open_context(sentinel, timeout_ms_, why);
        if (context != nullptr) {
            Reply reply = run(context, {"SENTINEL", "get-master-addr-by-name", url_.master_name}, why);
            redisFree(context);
            if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2) {
                Endpoint found;
                found.host.assign(reply->element[0]->str, reply->element[0]->len);
                if (parse_number(std::string_view(reply->element[1]->str, reply->element[1]->len), found.port)) {
                    master_ = std::move(found);
                    return true;
                }
                why = where(sentinel) + ": unreadable master address";
            } else if (reply) {
                why = where(sentinel) + ": knows no master named " + url_.master_name;
            } else {
                why = where(sentinel) + ": " + why;
            }
        }
        tried += (tried.empty() ? "" : "; ") + why;
    }
    error = "no sentinel named the master " + url_.master_name + " (" + tried + ")";
    return false;
}

bool Client::connect(std::string& error) {
    if (context_ != nullptr) return true;
    const int64_t now = now_ms();
    if (now < next_attempt_ms_) {
        error = "not connected (" + last_error_ + "); next attempt in " + std::to_string(next_attempt_ms_ - now) + " ms";
        return false;
    }
    if (resolve_master(error) && (context_ = open_context(master_, timeout_ms_, error)) != nullptr) {
        // A sentinel's answer may be stale and a plain URL may name a replica:
        // only a master takes the writes.
        Reply role = run(context_, {"ROLE"}, error);
        if (role && role->type == REDIS_REPLY_ARRAY && role->elements > 0 &&
            std::string_view(role->element[0]->str, role->element[0]->len) == "master") {
            const std::string db = std::to_string(url_.db);
            if (url_.db == 0 || run(context_, {"SELECT", db}, error)) {
                backoff_ms_ = 0;
                next_attempt_ms_ = 0;
                return true;
            }
            error = where(master_) + ": SELECT " + db + ": " + error;
        } else if (role) {
            error = where(master_) + ": not a master";
        } else {
            error = where(master_) + ": ROLE: " + error;
        }
        disconnect();
    }
    backoff_ms_ = backoff_ms_ == 0 ? first_backoff_ms : std::min(backoff_ms_ * 2, max_backoff_ms);
    next_attempt_ms_ = now + backoff_ms_;
    last_error_ = error;
    return false;
}

Reply Client::command(const std::vector<std::string_view>& args, std::string& error) {
    if (!connect(error)) return nullptr;
    Reply reply = run(context_, args, error);
    // An I/O error leaves the connection unusable; READONLY means the server
    // became a replica (a failover): the next connect finds the new master.
    if (context_->err != 0 || (!reply && error.starts_with("READONLY"))) disconnect();
    return reply;
}

bool Client::append(const std::vector<std::string_view>& args, std::string& error) {
    if (!connect(error)) return false;
    std::vector<const char*> argv;
    std::vector<size_t> lengths;
    for (std::string_view arg : args) {
        argv.push_back(arg.data());
        lengths.push_back(arg.size());
    }
    if (redisAppendCommandArgv(context_, int(argv.size()), argv.data(), lengths.data()) == REDIS_OK) return true;
    error = context_->errstr[0] ? context_->errstr : "cannot queue the command";
    disconnect();
    return false;
}

Reply Client::read(std::string& error) {
    if (context_ == nullptr) {
        error = "not connected";
        return nullptr;
    }
    void* raw = nullptr;
    if (redisGetReply(context_, &raw) != REDIS_OK || raw == nullptr) {
        error = context_->errstr[0] ? context_->errstr : "connection lost";
        disconnect();
        return nullptr;
    }
    return Reply(static_cast<redisReply*>(raw));
}

int Client::fd() const { return context_ != nullptr ? context_->fd : -1; }

}  // namespace limaoim::redis
