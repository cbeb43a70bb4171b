#include "limaoim/redis/client.h"

#include <algorithm>
#include <charconv>

#include "limaoim/log/clock.h"

namespace limaoim::redis {

namespace {

constexpr uint32_t first_backoff_ms = 100, max_backoff_ms = 2000;

template <typename Number>
bool parse_number(std::string_view text, Number& out) {
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    return ec == std::errc() && end == text.data() + text.size() && !text.empty();
}

// HOST:PORT, HOST possibly a bracketed IPv6 address.
bool parse_endpoint(std::string_view text, Endpoint& out, std::string& error) {
    // (Appended, not "\"" + std::string(text): GCC 12 warns falsely (-Wrestrict) on that in release builds.)
    auto fail = [&](std::string_view what) {
        error.assign(1, '"').append(text).append("\" ").append(what);
        return false;
    };
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return fail("has no :PORT");
    std::string_view host = text.substr(0, colon), port = text.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    if (host.empty()) return fail("has no host");
    if (!parse_number(port, out.port) || out.port == 0) return fail("has no valid port (1-65535)");
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

// %XX escapes, so a password may hold ':', '@' or '/'; false on a bad escape.
bool percent_decode(std::string_view text, std::string& out) {
    out.clear();
    for (size_t i = 0; i < text.size(); ++i) {
        if (text[i] != '%') {
            out.push_back(text[i]);
            continue;
        }
        uint8_t byte = 0;
        if (i + 3 > text.size()) return false;
        auto [end, ec] = std::from_chars(text.data() + i + 1, text.data() + i + 3, byte, 16);
        if (ec != std::errc() || end != text.data() + i + 3) return false;
        out.push_back(char(byte));
        i += 2;
    }
    return true;
}

// Where the credentials of a URL end: its last '@' (a master name or a
// database never holds one), or npos.
size_t credentials_end(std::string_view after_scheme) { return after_scheme.rfind('@'); }

}  // namespace

std::string masked(std::string_view text) {
    const size_t scheme_end = text.find("://");
    if (scheme_end == std::string_view::npos) return std::string(text);
    const std::string_view rest = text.substr(scheme_end + 3);
    const size_t at = credentials_end(rest);
    if (at == std::string_view::npos) return std::string(text);
    const std::string_view userinfo = rest.substr(0, at);
    const size_t colon = userinfo.find(':');
    std::string out(text.substr(0, scheme_end + 3));
    // USER:***, or *** alone for credentials without ':' (a password perhaps).
    if (colon != std::string_view::npos) out.append(userinfo.substr(0, colon)).push_back(':');
    out.append("***");
    out.append(rest.substr(at));
    return out;
}

bool parse_url(std::string_view text, Url& out, std::string& error) {
    out = Url{};
    constexpr std::string_view plain = "redis://", sentinel = "redis+sentinel://";
    const bool via_sentinel = text.starts_with(sentinel);
    if (!via_sentinel && !text.starts_with(plain)) {
        error = "a Redis URL starts with redis:// or redis+sentinel://";
        return false;
    }
    std::string_view rest = text.substr(via_sentinel ? sentinel.size() : plain.size());
    // Errors show the URL masked: never a password in a log line.
    const std::string shown = masked(text);
    if (const size_t at = credentials_end(rest); at != std::string_view::npos) {
        const std::string_view userinfo = rest.substr(0, at);
        const size_t colon = userinfo.find(':');
        if (colon == std::string_view::npos) {
            error = "credentials in a Redis URL are USER:PASSWORD@ or :PASSWORD@ (" + shown + ")";
            return false;
        }
        if (!percent_decode(userinfo.substr(0, colon), out.user) ||
            !percent_decode(userinfo.substr(colon + 1), out.password)) {
            out = Url{};
            error = "bad %XX escape in the credentials of " + shown;
            return false;
        }
        rest = rest.substr(at + 1);
    }
    if (rest.find_first_of("?#") != std::string_view::npos) {
        error = "a Redis URL takes no query or fragment: " + shown;
        return false;
    }
    const size_t slash = rest.find('/');
    std::string_view hosts = rest.substr(0, slash);
    std::string_view path = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash + 1);
    if (hosts.empty()) {
        error = "no HOST:PORT in " + shown;
        return false;
    }
    while (!hosts.empty()) {
        const size_t comma = hosts.find(',');
        Endpoint endpoint;
        if (!parse_endpoint(hosts.substr(0, comma), endpoint, error)) return false;
        out.servers.push_back(std::move(endpoint));
        hosts = comma == std::string_view::npos ? std::string_view{} : hosts.substr(comma + 1);
        if (comma != std::string_view::npos && hosts.empty()) {
            error = "trailing comma in " + shown;
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
    const int64_t now = clock::steady_ms();
    if (now < next_attempt_ms_) {
        error = "not connected (" + last_error_ + "); next attempt in " + std::to_string(next_attempt_ms_ - now) + " ms";
        return false;
    }
    if (resolve_master(error) && (context_ = open_context(master_, timeout_ms_, error)) != nullptr) {
        // A sentinel's answer may be stale and a plain URL may name a replica:
        // only a master takes the writes.
        Reply role;
        const bool authenticated = url_.password.empty() || authenticate(error);
        if (authenticated) role = run(context_, {"ROLE"}, error);
        if (!authenticated) {
            error = where(master_) + ": AUTH" + (url_.user.empty() ? "" : " as " + url_.user) + ": " + error;
        } else if (role && role->type == REDIS_REPLY_ARRAY && role->elements > 0 &&
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

bool Client::authenticate(std::string& error) {
    if (url_.user.empty()) return bool(run(context_, {"AUTH", url_.password}, error));
    return bool(run(context_, {"AUTH", url_.user, url_.password}, error));
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

Fsync check_fsync(Client& client, std::string& detail) {
    std::string values[2];
    const char* names[2] = {"appendonly", "appendfsync"};
    for (int i = 0; i < 2; ++i) {
        std::string error;
        Reply reply = client.command({"CONFIG", "GET", names[i]}, error);
        if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
            reply->element[1]->type != REDIS_REPLY_STRING) {
            detail = "CONFIG GET " + std::string(names[i]) + " on " + where(client.master()) + ": " +
                     (reply ? "unexpected reply" : error);
            return Fsync::Unknown;
        }
        values[i].assign(reply->element[1]->str, reply->element[1]->len);
    }
    detail = where(client.master()) + " has appendonly " + values[0] + ", appendfsync " + values[1];
    return values[0] == "yes" && values[1] == "always" ? Fsync::Always : Fsync::Weaker;
}

}  // namespace limaoim::redis
