// One table describes every option; the flag, the TOML key and the LIMAOIM_*
// variable are all derived from its key, so the three spellings cannot drift
// apart. Every source hands the option its value as text (TOML values after a
// type check), so one parser and one set of range checks serve all three.
#include "limaoim/config.h"

#include "limaoim/log/log.h"
#include "limaoim/net/address.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <limits>
#include <memory>
#include <string_view>
#include <variant>

#include <CLI/CLI.hpp>
#include <toml++/toml.h>

#ifndef LIMAOIM_VERSION
#error "meson passes LIMAOIM_VERSION (the project version) to src/config"
#endif

namespace limaoim {
namespace {

// Options whose text sets more than one field (addr may carry a port).
using Parser = std::string (*)(Config&, std::string_view text);

using Target = std::variant<std::string Config::*, uint16_t Config::*, uint32_t Config::*, uint64_t Config::*,
                            bool Config::*, Mode Config::*, Parser>;

// A rule beyond the range, checked on the Config once the value is stored.
using Rule = std::string (*)(const Config&);

struct Option {
    std::string_view key;  // TOML key; the flag and variable are derived from it
    std::string_view help;
    Target target;
    uint64_t min = 0;  // integer targets only, inclusive
    uint64_t max = 0;
    Rule rule = nullptr;
};

struct ModeName {
    Mode mode;
    std::string_view name;
};
constexpr ModeName kModeNames[] = {{Mode::Release, "release"}, {Mode::Test, "test"}, {Mode::Debug, "debug"}};

constexpr std::string_view kTokensKey = "tokens";
constexpr std::string_view kTokenForm = "UID:DEVICE_FLAG:TOKEN";
constexpr std::string_view kEnvPrefix = "LIMAOIM_";

std::string in_quotes(std::string_view text) { return "'" + std::string(text) + "'"; }

std::string range_problem(std::string_view key, uint64_t min, uint64_t max, std::string_view got) {
    std::string limits = max == std::numeric_limits<uint64_t>::max()
                             ? "must be at least " + std::to_string(min)
                             : "must be between " + std::to_string(min) + " and " + std::to_string(max);
    return std::string(key) + " " + limits + ", got " + std::string(got);
}

// Digits only: no sign, spaces, hex or suffix, so "12x" and "1e3" are refused
// rather than half-read. A leading '-' is a number out of range, not a typo.
std::string parse_integer(std::string_view key, std::string_view text, uint64_t min, uint64_t max, uint64_t& out) {
    std::string_view digits = text.starts_with('-') ? text.substr(1) : text;
    uint64_t value = 0;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (digits.empty() || end != digits.data() + digits.size() || (ec != std::errc() && ec != std::errc::result_out_of_range))
        return in_quotes(text) + " is not a number";
    if (text.starts_with('-') || ec == std::errc::result_out_of_range || value < min || value > max)
        return range_problem(key, min, max, text);
    out = value;
    return {};
}

std::string parse_bool(std::string_view text, bool& out) {
    constexpr std::string_view yes[] = {"true", "1", "yes", "on"};
    constexpr std::string_view no[] = {"false", "0", "no", "off"};
    if (std::ranges::find(yes, text) != std::end(yes)) {
        out = true;
    } else if (std::ranges::find(no, text) != std::end(no)) {
        out = false;
    } else {
        return in_quotes(text) + " is not one of true, false, 1, 0, yes, no, on, off";
    }
    return {};
}

std::string parse_mode(std::string_view text, Mode& out) {
    for (const ModeName& entry : kModeNames) {
        if (entry.name == text) {
            out = entry.mode;
            return {};
        }
    }
    return in_quotes(text) + " is not one of release, test, debug";
}

// "HOST", "HOST:PORT", "tcp://HOST:PORT" or "[V6]:PORT": the original writes
// its listen address as tcp://host:port. A bare IPv6 address has no port.
std::string parse_listen_address(Config& config, std::string_view text) {
    std::string_view rest = text;
    if (rest.starts_with("tcp://")) rest.remove_prefix(6);
    std::string_view host = rest;
    std::string_view port;
    if (rest.starts_with('[')) {
        size_t close = rest.find(']');
        if (close == std::string_view::npos) return in_quotes(text) + " has an unclosed '['";
        host = rest.substr(1, close - 1);
        std::string_view after = rest.substr(close + 1);
        if (!after.empty() && !after.starts_with(':')) return in_quotes(text) + " is not HOST, HOST:PORT or tcp://HOST:PORT";
        if (!after.empty()) port = after.substr(1);
    } else if (size_t colon = rest.find(':'); colon != std::string_view::npos && rest.find(':', colon + 1) == std::string_view::npos) {
        host = rest.substr(0, colon);
        port = rest.substr(colon + 1);
    }
    if (host.empty()) return in_quotes(text) + " has no host";
    if (rest.size() != host.size()) {
        uint64_t number = 0;
        if (std::string problem = parse_integer("port", port, 1, 65535, number); !problem.empty()) return problem;
        config.port = static_cast<uint16_t>(number);
    }
    config.addr = host;
    return {};
}

std::string power_of_two_buffers(const Config& config) {
    uint32_t n = config.recv_buffers;
    if ((n & (n - 1)) != 0) return "recv_buffers must be a power of two, got " + std::to_string(n);
    return {};
}

std::string shown_url(std::string_view url);

std::string known_store(const Config& config) {
    // The URL itself is parsed at start (redis/client.h): a bad one stops --check-config too.
    if (config.store == "embedded" || config.store.starts_with("redis://") || config.store.starts_with("redis+sentinel://"))
        return {};
    return "store must be 'embedded', a redis:// or a redis+sentinel:// URL, got " + shown_url(config.store);
}

std::string known_log_level(const Config& config) {
    if (config.log_level.empty() || log::parse_level(config.log_level)) return {};
    return "log_level must be 'error', 'warn', 'info' or 'debug', got " + in_quotes(config.log_level);
}

std::string known_durability(const Config& config) {
    if (config.durability == "group" || config.durability == "sync" || config.durability == "none") return {};
    return "durability must be 'group', 'sync' or 'none', got " + in_quotes(config.durability);
}

// HOST:PORT; an address other than loopback needs a secret: the API can
// create tokens, so an open one hands out every account. Checked once all
// sources are read (the secret may come from another one).
std::string guarded_http_addr(const Config& config) {
    const std::string& a = config.http_addr;
    if (a.empty()) return {};  // no HTTP API
    const size_t colon = a.rfind(':');
    if (colon == std::string::npos || colon == 0) return "http_addr must be HOST:PORT, got " + in_quotes(a);
    uint64_t port = 0;
    if (std::string problem = parse_integer("http_addr's port", std::string_view(a).substr(colon + 1), 1, 65535, port);
        !problem.empty())
        return problem;
    std::string host = a.substr(0, colon);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    if (!net::is_loopback_host(host) && config.http_secret.empty() && config.http_secret_file.empty())
        return "http_addr " + in_quotes(a) +
               " is not a loopback address: set http_secret (clients then send Authorization: Bearer SECRET)";
    return {};
}

// HOST:PORT (or [V6]:PORT) of an optional listener; empty = none.
std::string valid_host_port(const char* name, const std::string& a) {
    if (a.empty()) return {};
    const size_t colon = a.rfind(':');
    if (colon == std::string::npos || colon == 0) return std::string(name) + " must be HOST:PORT, got " + in_quotes(a);
    uint64_t port = 0;
    return parse_integer(std::string(name) + "'s port", std::string_view(a).substr(colon + 1), 1, 65535, port);
}

std::string known_recv_mode(const Config& config) {
    if (config.recv_mode == "multishot" || config.recv_mode == "poll") return {};
    return "recv_mode must be 'multishot' or 'poll', got " + in_quotes(config.recv_mode);
}

std::string known_io_backend(const Config& config) {
    if (config.io_backend == "auto" || config.io_backend == "io_uring" || config.io_backend == "epoll") return {};
    return "io_backend must be 'auto', 'io_uring' or 'epoll', got " + in_quotes(config.io_backend);
}

// scheme://host[:port] of a URL, without credentials, path or query: what
// messages show (webhook URLs often carry a secret in their credentials,
// path or query; Redis URLs a password). An '@' past the first '/', '?' or
// '#' may end credentials that contain one of those (the Redis URL parser
// reads them so): then nothing of the authority is shown.
std::string scheme_and_host(std::string_view url) {
    const size_t scheme_end = url.find("://");
    if (scheme_end == std::string_view::npos) return "a value without '://' (not shown)";
    const std::string_view rest = url.substr(scheme_end + 3);
    const size_t authority_end = std::min(rest.find_first_of("/?#"), rest.size());
    const size_t at = rest.rfind('@');
    std::string_view host = rest.substr(0, authority_end);
    if (at != std::string_view::npos && at >= authority_end) {
        host = "(not shown: credentials or '@' in the path)";
    } else if (at != std::string_view::npos) {
        host.remove_prefix(at + 1);
    }
    return std::string(url.substr(0, scheme_end + 3)) + std::string(host);
}

std::string shown_url(std::string_view url) {
    const std::string shown = scheme_and_host(url);
    if (url.find("://") == std::string_view::npos) return shown;
    return in_quotes(shown + (shown.size() < url.size() ? "/..." : ""));
}

// An http:// or https:// URL with a host, no blanks or control characters;
// empty = off. libcurl takes it as is (the query string is appended to it).
std::string http_url(std::string_view key, const std::string& url) {
    if (url.empty()) return {};
    std::string_view rest = url;
    if (rest.starts_with("http://")) {
        rest.remove_prefix(7);
    } else if (rest.starts_with("https://")) {
        rest.remove_prefix(8);
    } else {
        return std::string(key) + " must be an http:// or https:// URL (empty = off), got " + shown_url(url);
    }
    if (std::ranges::any_of(url, [](char c) { return uint8_t(c) <= ' ' || c == 0x7f; }))
        return std::string(key) + " must not contain spaces or control characters, got " + shown_url(url);
    std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
    if (size_t at = authority.rfind('@'); at != std::string_view::npos) authority.remove_prefix(at + 1);
    if (authority.empty() || authority.starts_with(':'))
        return std::string(key) + " has no host, got " + shown_url(url);
    return {};
}

// Each origin as browsers send it: scheme://host[:port], no path, no slash.
std::string origin_list(const Config& config) {
    for (const std::string& origin : allowed_origins(config)) {
        const size_t scheme_end = origin.find("://");
        const std::string_view scheme = std::string_view(origin).substr(0, scheme_end);
        const bool plain = scheme_end != std::string::npos && (scheme == "http" || scheme == "https") &&
                           origin.size() > scheme_end + 3 &&
                           origin.find_first_of("/?#@ \t", scheme_end + 3) == std::string::npos;
        if (!plain)
            return "http_allowed_origins takes origins like http://127.0.0.1:8080 (scheme://host[:port], no path), got " +
                   in_quotes(origin);
    }
    return {};
}

std::string webhook_url(const Config& config) { return http_url("webhook", config.webhook); }
std::string datasource_url(const Config& config) { return http_url("datasource", config.datasource); }

// The instance names a file in /dev/shm.
std::string plain_instance_name(const Config& config) {
    if (config.instance.find('/') == std::string::npos) return {};
    return "instance must not contain '/', got " + in_quotes(config.instance);
}

template <typename T>
Option number(std::string_view key, std::string_view help, T Config::*member, uint64_t min,
              uint64_t max = std::numeric_limits<T>::max(), Rule rule = nullptr) {
    return Option{key, help, member, min, max, rule};
}

constexpr uint64_t kMinTimeoutMs = 100;
constexpr uint64_t kMaxRemainingLength = 268435455;  // four varint bytes

const std::vector<Option>& options() {
    static const std::vector<Option> table = {
        {"mode", "release (tokens checked), test (token check skipped) or debug (release + per-connection logs)",
         &Config::mode},
        {"addr", "TCP listen address: HOST, HOST:PORT or tcp://HOST:PORT (a port here sets port)",
         parse_listen_address},
        number("port", "TCP listen port", &Config::port, 1, 65535),
        {"http_addr", "HTTP API listen address, HOST:PORT (not loopback: http_secret required); empty = no API",
         &Config::http_addr},
        {"ws_addr", "WebSocket listen address, HOST:PORT (the original's wsAddr); empty = no WebSocket listener",
         &Config::ws_addr},
        {"wk_addr", "WuKongIM protocol (WKProto) TCP listen address, HOST:PORT (WuKongIM's default is port 5100); "
                    "empty = none", &Config::wk_addr},
        {"wk_ws_addr", "WuKongIM protocol (WKProto) WebSocket listen address, HOST:PORT (WuKongIM's default is "
                       "port 5200); empty = none", &Config::wk_ws_addr},
        number("ws_max_message", "largest WebSocket frame or message payload, bytes (checked on the frame header)",
               &Config::ws_max_message, 1024, 256u << 20),
        {"http_secret",
         "secret every HTTP API request must carry (Authorization: Bearer, or a token header); empty = none "
         "(loopback only)",
         &Config::http_secret},
        {"http_secret_file", "file holding http_secret (one line), read at start", &Config::http_secret_file},
        number("http_body_limit", "largest HTTP API request body, bytes", &Config::http_body_limit, 1024, 64u << 20),
        {"http_allowed_origins",
         "web origins (scheme://host[:port], comma-separated) whose pages may call the HTTP API from a browser; "
         "empty = none but the API's own pages (the demo)",
         &Config::http_allowed_origins, 0, 0, origin_list},
        number("http_max_connections",
               "open HTTP API connections, server-wide (each worker takes its share); at it the oldest one without "
               "an authorized request makes room, else new ones are refused",
               &Config::http_max_connections, 1),
        number("api_threads", "threads that run HTTP API requests (they may wait for the store)",
               &Config::api_threads, 1, 64),
        {"data_dir", "directory for the embedded store's files", &Config::data_dir},
        {"durability",
         "when a SENDACK may go: group (one fsync per commit window), sync (one fsync per batch, no window) or "
         "none (no fsync: benchmarks only, a crash loses messages)",
         &Config::durability, 0, 0, known_durability},
        number("commit_window_us", "group durability: how long a batch gathers SENDs before its fsync, microseconds",
               &Config::commit_window_us, 0, 100000),
        number("msg_timeout_ms", "RECV without RECVACK -> retransmission, milliseconds", &Config::msg_timeout_ms,
               kMinTimeoutMs),
        number("retry_scan_ms", "how often RECVs are checked against msg_timeout_ms, milliseconds",
               &Config::retry_scan_ms, 10, 60000),
        number("max_deliveries", "RECVs of one message to one session, the first included; then left to sync",
               &Config::max_deliveries, 1, 100),
        number("max_inflight", "RECVs awaiting RECVACK per session; past it the oldest is left to sync",
               &Config::max_inflight, 2, 65536),
        number("max_sends_in_flight", "SENDs of one session awaiting their SENDACK; past it its input waits",
               &Config::max_sends_in_flight, 1, 4096),
        number("dedupe_window_ms", "a SEND re-sent (same uid, client_msg_no) within this is stored once, milliseconds",
               &Config::dedupe_window_ms, 0, 86400000),
        number("dedupe_max", "(uid, client_msg_no) pairs remembered at most; then the oldest is forgotten",
               &Config::dedupe_max, 1, 100000000),
        {"store", "message store: embedded, redis://HOST:PORT[/DB] or redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER[/DB] "
                  "(several nodes on one Redis act as one server)",
         &Config::store, 0, 0, known_store},
        number("node_id", "this node's id in a cluster, unique per node (message ids embed it)", &Config::node_id, 0, 1023),
        number("redis_timeout_ms", "Redis connect and command timeout, milliseconds", &Config::redis_timeout_ms, 50,
               600000),
        number("redis_wait_replicas", "after each commit, WAIT until this many Redis replicas have it "
                                      "(0: the master's appendfsync is the durability)",
               &Config::redis_wait_replicas, 0, 64),
        number("redis_log_max", "messages kept per channel in Redis, the oldest trimmed first (0: all)",
               &Config::redis_log_max, 0, 4000000000u),
        number("redis_bus_max", "events kept in each node's stream in Redis for a node that falls behind or "
                                "reconnects; past it the oldest are trimmed (counted as missed by that node)",
               &Config::redis_bus_max, 100, 100000000),
        {"redis_password_file",
         "file holding the Redis AUTH password (one line), instead of one in the store URL; the URL's user, if any, "
         "goes with it",
         &Config::redis_password_file},
        {"redis_durability_unchecked",
         "start although Redis's appendonly/appendfsync make a SENDACK less durable than durability promises "
         "(warned, not refused)",
         &Config::redis_durability_unchecked},
        {"cluster_secret",
         "key (16+ bytes) of the HMAC that signs every event between nodes; required with a Redis store "
         "(prefer cluster_secret_file)",
         &Config::cluster_secret},
        {"cluster_secret_file", "file holding cluster_secret (one line), read at start", &Config::cluster_secret_file},
        {"instance", "stats segment name (/dev/shm/limaoim-NAME); empty = the port number", &Config::instance, 0, 0,
         plain_instance_name},
        number("workers", "io_uring worker threads; 0 = as many as max_conns needs under the fd limit",
               &Config::workers, 0, 4096),
        number("max_conns", "maximum simultaneous connections, server-wide", &Config::max_conns, 1),
        number("auth_timeout_ms", "accept -> successful CONNACK, milliseconds", &Config::auth_timeout_ms,
               kMinTimeoutMs),
        number("idle_timeout_ms", "close a session silent this long (clients ping every 20 s), milliseconds",
               &Config::idle_timeout_ms, kMinTimeoutMs),
        number("kick_delay_ms", "DISCONNECT -> close of a session replaced by a new login, milliseconds",
               &Config::kick_delay_ms, kMinTimeoutMs),
        number("shutdown_timeout_ms", "SIGTERM -> exit, flushing DISCONNECTs, milliseconds",
               &Config::shutdown_timeout_ms, kMinTimeoutMs),
        number("max_packet", "maximum remaining length of a packet, bytes", &Config::max_packet, 16,
               kMaxRemainingLength),
        number("max_connect_packet",
               "maximum remaining length of the CONNECT, the only packet taken before login, bytes "
               "(max_packet applies if smaller)",
               &Config::max_connect_packet, 16, kMaxRemainingLength),
        number("send_cap", "unsent output per session before it is dropped as a slow consumer, bytes",
               &Config::send_cap, 1024),
        number("sndbuf",
               "kernel send buffer of each connection, bytes (the kernel doubles it); 0 = kernel autotuning "
               "up to tcp_wmem's maximum",
               &Config::sndbuf, 0, 64u << 20),
        number("max_pending_handshakes",
               "connections not logged in yet, server-wide; past it accepting pauses and new connections "
               "wait in the kernel's backlog",
               &Config::max_pending_handshakes, 1),
        number("handshakes_per_iteration",
               "CONNECTs one worker handles per loop iteration; the rest wait in order, so a login storm "
               "cannot starve established sessions",
               &Config::handshakes_per_iteration, 1, 65536),
        number("reassembly_budget",
               "bytes all split packets (and paused input) may hold in reassembly buffers, server-wide, "
               "WebSocket sessions' held bytes included; when it is full the connection holding the most is "
               "closed",
               &Config::reassembly_budget, 1u << 20),
        number("reassembly_timeout_ms",
               "a packet split across reads must be whole within this long, however steadily its bytes "
               "come, or its connection is closed, milliseconds",
               &Config::reassembly_timeout_ms, kMinTimeoutMs),
        number("recv_buffers", "provided receive buffers per worker, a power of two", &Config::recv_buffers, 16,
               32768, power_of_two_buffers),
        number("recv_buffer_size", "bytes per receive buffer", &Config::recv_buffer_size, 256, 65536),
        number("server_key_reuse",
               "v3/v4 handshakes that share one server X25519 key pair per worker; 1 = a fresh pair per "
               "connection (the protocol's rule); more halves the handshake's CPU cost",
               &Config::server_key_reuse, 1, 1000000),
        {"recv_mode",
         "multishot (a receive armed per connection) or poll (a poll armed per connection, one receive per "
         "wake-up: less kernel memory per idle connection)",
         &Config::recv_mode, 0, 0, known_recv_mode},
        {"io_backend",
         "auto (io_uring, or epoll where io_uring is forbidden: a container's seccomp profile, sysctl "
         "kernel.io_uring_disabled), io_uring (refuse to start without it) or epoll",
         &Config::io_backend, 0, 0, known_io_backend},
        {"webhook",
         "business server URL (http:// or https://) for the webhooks user.onlinestatus, msg.offline and "
         "msg.notify: POST URL?event=NAME; empty = off",
         &Config::webhook, 0, 0, webhook_url},
        number("webhook_timeout_ms", "each webhook call, connect included, milliseconds; a timeout is a failure",
               &Config::webhook_timeout_ms, kMinTimeoutMs, 600000),
        number("webhook_notify_batch", "msg.notify messages per webhook call (the original's messageNotifyMaxCount)",
               &Config::webhook_notify_batch, 1, 10000),
        number("webhook_notify_scan_ms",
               "pause between msg.notify batches, milliseconds (the original's messageNotifyScanInterval)",
               &Config::webhook_notify_scan_ms, 10, 600000),
        number("webhook_queue_max",
               "msg.notify events kept in the durable queue; past it new messages' events are dropped (counted) "
               "and /health reports it",
               &Config::webhook_queue_max, 1),
        number("webhook_online_queue_max",
               "user.onlinestatus entries kept in memory for the webhook; past it entries are dropped (counted)",
               &Config::webhook_online_queue_max, 1, 100000000),
        number("webhook_online_batch", "user.onlinestatus entries per webhook call",
               &Config::webhook_online_batch, 1, 1000000),
        {"datasource",
         "business server URL (http:// or https://) asked for group subscribers, allow/deny lists and system "
         "uids instead of the store; empty = off",
         &Config::datasource, 0, 0, datasource_url},
        number("datasource_timeout_ms",
               "each datasource call, milliseconds; the committer waits for it, so SENDs wait too",
               &Config::datasource_timeout_ms, kMinTimeoutMs, 60000),
        number("datasource_cache_ms", "a channel's datasource answer is asked again after this, milliseconds",
               &Config::datasource_cache_ms, 0, 86400000),
        number("conversation_max",
               "conversations kept per user, least recently used dropped first (default 100; 100000 in test mode "
               "unless set)",
               &Config::conversation_max, 1, 1000000),
        number("conversation_flush_ms", "changed conversations are written to the store at least this often, "
               "milliseconds",
               &Config::conversation_flush_ms, 10, 3600000),
        number("conversation_flush_users", "... or as soon as this many users' conversations changed",
               &Config::conversation_flush_users, 1, 1000000),
        number("conversation_users_max",
               "users whose conversations are kept in memory, least recently used dropped first (read back from "
               "the store when asked for); users changed since the last flush are kept besides",
               &Config::conversation_users_max, 1, 100000000),
        number("max_messages_per_second",
               "SENDs from sessions per second, server-wide; past it sessions' input waits; 0 = unlimited",
               &Config::max_messages_per_second, 0),
        number("max_messages_per_user",
               "SENDs per second one user may make on one worker, weighted by receivers (a SEND costs 1 + "
               "subscribers/100); past it that user's input waits; 0 = unlimited (default 100; unlimited in "
               "test mode unless set)",
               &Config::max_messages_per_user, 0, 10000000),
        {"log_level",
         "least severe log lines written: error, warn, info or debug (debug adds every connection's open and "
         "close); empty = info, debug in --mode debug",
         &Config::log_level, 0, 0, known_log_level},
        {"verbose", "the same as log_level = debug", &Config::verbose},
    };
    return table;
}

// How a value is spelled in TOML and in the help text.
enum class Kind { Text, Integer, Boolean };

struct KindOf {
    Kind operator()(std::string Config::*) const { return Kind::Text; }
    Kind operator()(Mode Config::*) const { return Kind::Text; }
    Kind operator()(Parser) const { return Kind::Text; }
    Kind operator()(bool Config::*) const { return Kind::Boolean; }
    Kind operator()(auto) const { return Kind::Integer; }
};

Kind kind(const Option& option) { return std::visit(KindOf{}, option.target); }

std::string flag_name(std::string_view key) {
    std::string flag = "--" + std::string(key);
    std::ranges::replace(flag, '_', '-');
    return flag;
}

std::string env_name(std::string_view key) {
    std::string name(kEnvPrefix);
    for (char c : key) name += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return name;
}

struct Shower {
    const Config& config;
    std::string operator()(std::string Config::*member) const { return config.*member; }
    std::string operator()(bool Config::*member) const { return config.*member ? "true" : "false"; }
    std::string operator()(Mode Config::*member) const { return to_string(config.*member); }
    std::string operator()(Parser) const { return config.addr; }
    std::string operator()(auto member) const { return std::to_string(config.*member); }
};

std::string show(const Config& config, const Option& option) { return std::visit(Shower{config}, option.target); }

struct Setter {
    Config& config;
    const Option& option;
    std::string_view text;
    std::string operator()(std::string Config::*member) const {
        config.*member = text;
        return {};
    }
    std::string operator()(bool Config::*member) const { return parse_bool(text, config.*member); }
    std::string operator()(Mode Config::*member) const { return parse_mode(text, config.*member); }
    std::string operator()(Parser parse) const { return parse(config, text); }
    template <typename T>
    std::string operator()(T Config::*member) const {
        uint64_t value = 0;
        std::string problem = parse_integer(option.key, text, option.min, option.max, value);
        if (problem.empty()) config.*member = static_cast<T>(value);
        return problem;
    }
};

// Stores `text` in the option's field; returns the problem, empty when none.
std::string apply(Config& config, const Option& option, std::string_view text) {
    std::string problem = std::visit(Setter{config, option, text}, option.target);
    if (problem.empty() && option.rule != nullptr) problem = option.rule(config);
    return problem;
}

// --- tokens -----------------------------------------------------------------

std::string check_token(const TokenEntry& entry) {
    if (entry.uid.empty()) return "token uid must not be empty";
    if (entry.uid.find('@') != std::string::npos) return "token uid must not contain '@', got " + in_quotes(entry.uid);
    if (entry.token.empty()) return "token for uid " + in_quotes(entry.uid) + " must not be empty";
    return {};
}

// A later source's token for the same (uid, device flag) replaces the earlier one.
void add_token(Config& config, TokenEntry entry) {
    auto same_login = [&](const TokenEntry& t) { return t.uid == entry.uid && t.device_flag == entry.device_flag; };
    auto existing = std::ranges::find_if(config.tokens, same_login);
    if (existing != config.tokens.end()) {
        existing->token = std::move(entry.token);
    } else {
        config.tokens.push_back(std::move(entry));
    }
}

// A malformed entry as error messages show it: never its token part (an
// entry without ':' may be nothing but a token), so logs carry no secret.
std::string shown_entry(std::string_view text) {
    if (text.empty()) return in_quotes(text);
    const size_t colon = text.find(':');
    if (colon == std::string_view::npos) return "an entry without ':' (not shown: it may be a token)";
    return in_quotes(std::string(text.substr(0, colon + 1)) + "...");
}

// UID:DEVICE_FLAG:TOKEN; the token itself may contain ':'.
std::string parse_token_text(std::string_view text, TokenEntry& entry) {
    size_t first = text.find(':');
    size_t second = first == std::string_view::npos ? first : text.find(':', first + 1);
    if (second == std::string_view::npos) return shown_entry(text) + " is not " + std::string(kTokenForm);
    uint64_t flag = 0;
    if (std::string problem = parse_integer("device_flag", text.substr(first + 1, second - first - 1), 0, 255, flag);
        !problem.empty())
        return problem;
    entry = TokenEntry{std::string(text.substr(0, first)), static_cast<uint8_t>(flag), std::string(text.substr(second + 1))};
    return check_token(entry);
}

std::string add_token_text(Config& config, std::string_view text) {
    TokenEntry entry;
    std::string problem = parse_token_text(text, entry);
    if (problem.empty()) add_token(config, std::move(entry));
    return problem;
}

// --- sources ----------------------------------------------------------------

bool fail(std::string& error, std::string_view where, std::string_view problem) {
    error = std::string(where) + ": " + std::string(problem);
    return false;
}

struct CommandLine {
    CLI::App app{"limaoim: a LiMaoIM protocol server (io_uring)", "limaoim"};
    std::string config_path;
    std::string check_path;
    std::vector<std::string> values;  // parallel to options()
    std::vector<CLI::Option*> given;
    std::vector<std::string> tokens;
    CLI::Option* config_flag = nullptr;
    CLI::Option* check_flag = nullptr;

    CommandLine() : values(options().size()) {
        const Config defaults;
        app.footer(
            "Every option is also a key in the TOML file (--max-conns = max_conns) and an environment variable "
            "(LIMAOIM_MAX_CONNS).\nPrecedence: defaults < --config file < LIMAOIM_* environment < flags. "
            "See docs/CONFIG.md.");
        app.set_version_flag("--version", "limaoim " LIMAOIM_VERSION);
        config_flag = app.add_option("-c,--config", config_path, "TOML configuration file (also LIMAOIM_CONFIG)")
                          ->type_name("FILE");
        check_flag = app.add_option("--check-config", check_path,
                                    "load and validate FILE with the environment and the other flags, as a start "
                                    "would; print 'config OK' and a summary, or the error (exit 0 or 2); starts "
                                    "nothing")
                         ->type_name("FILE")
                         ->excludes(config_flag);
        for (size_t i = 0; i < options().size(); ++i) given.push_back(add(options()[i], defaults, values[i]));
        app.add_option("--token", tokens, "accept TOKEN for UID on DEVICE_FLAG (0 app, 1 web, 2 pc); repeatable")
            ->type_name(std::string(kTokenForm))
            ->allow_extra_args(false);
    }

    CLI::Option* add(const Option& option, const Config& defaults, std::string& value) {
        std::string help(option.help);
        if (kind(option) == Kind::Boolean) {
            return app.add_flag(flag_name(option.key), value, help)->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
        }
        return app.add_option(flag_name(option.key), value, help)
            ->type_name(kind(option) == Kind::Text ? "TEXT" : "INT")
            ->default_str(show(defaults, option))
            ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
    }
};

// Renders a TOML value as the text a flag would carry, after checking that its
// TOML type suits the option (so max_conns = "10" is an error, not a guess).
std::string toml_text(const Option& option, const toml::node& node, std::string& text) {
    switch (kind(option)) {
    case Kind::Boolean:
        if (!node.is_boolean()) return std::string(option.key) + " must be true or false";
        text = node.as_boolean()->get() ? "true" : "false";
        break;
    case Kind::Integer:
        if (!node.is_integer()) return std::string(option.key) + " must be an integer";
        text = std::to_string(node.as_integer()->get());
        break;
    case Kind::Text:
        if (!node.is_string()) return std::string(option.key) + " must be a string";
        text = node.as_string()->get();
        break;
    }
    return {};
}

std::string with_line(std::string problem, const toml::node& node) {
    return problem + " (line " + std::to_string(node.source().begin.line) + ")";
}

std::string toml_token(Config& config, const toml::node& node, size_t index) {
    std::string where = "tokens[" + std::to_string(index) + "]: ";
    const toml::table* table = node.as_table();
    if (table == nullptr) return with_line(where + "must be a table ([[tokens]])", node);
    TokenEntry entry;
    for (const auto& [key, value] : *table) {
        if (key == "uid" && value.is_string()) {
            entry.uid = value.as_string()->get();
        } else if (key == "token" && value.is_string()) {
            entry.token = value.as_string()->get();
        } else if (key == "device_flag" && value.is_integer()) {
            uint64_t flag = 0;
            std::string problem = parse_integer("device_flag", std::to_string(value.as_integer()->get()), 0, 255, flag);
            if (!problem.empty()) return with_line(where + problem, value);
            entry.device_flag = static_cast<uint8_t>(flag);
        } else if (key == "uid" || key == "token" || key == "device_flag") {
            return with_line(where + std::string(key.str()) + " has the wrong type", value);
        } else {
            return with_line(where + "unknown key " + in_quotes(key.str()) + " (expected uid, token, device_flag)", value);
        }
    }
    if (std::string problem = check_token(entry); !problem.empty()) return with_line(where + problem, node);
    add_token(config, std::move(entry));
    return {};
}

std::string toml_tokens(Config& config, const toml::node& node) {
    const toml::array* array = node.as_array();
    if (array == nullptr) return with_line("tokens must be an array of tables ([[tokens]])", node);
    for (size_t i = 0; i < array->size(); ++i) {
        if (std::string problem = toml_token(config, *array->get(i), i); !problem.empty()) return problem;
    }
    return {};
}

const Option* find_option(std::string_view key) {
    auto found = std::ranges::find(options(), key, &Option::key);
    return found == options().end() ? nullptr : &*found;
}

std::string toml_entry(Config& config, std::string_view key, const toml::node& node) {
    if (key == kTokensKey) return toml_tokens(config, node);
    const Option* option = find_option(key);
    if (option == nullptr) return with_line("unknown key " + in_quotes(key), node);
    std::string text;
    std::string problem = toml_text(*option, node, text);
    if (problem.empty()) problem = apply(config, *option, text);
    return problem.empty() ? problem : with_line(problem, node);
}

// stdio rather than ifstream: a directory opens fine but its read fails, and
// only the errno of that read says why.
bool read_file(const std::string& path, std::string& contents, std::string& error) {
    std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "rb"), std::fclose);
    if (!file) return fail(error, path, std::string("cannot read: ") + std::strerror(errno));
    char chunk[4096];
    size_t got = 0;
    while ((got = std::fread(chunk, 1, sizeof chunk, file.get())) > 0) contents.append(chunk, got);
    if (std::ferror(file.get())) return fail(error, path, std::string("cannot read: ") + std::strerror(errno));
    return true;
}

bool load_file(Config& config, const std::string& path, std::string& error) {
    std::string contents;
    if (!read_file(path, contents, error)) return false;
    toml::table table;
    try {
        table = toml::parse(contents, path);
    } catch (const toml::parse_error& e) {
        const auto& at = e.source().begin;
        return fail(error, path + ":" + std::to_string(at.line) + ":" + std::to_string(at.column), e.description());
    }
    for (const auto& [key, node] : table) {
        if (std::string problem = toml_entry(config, key.str(), node); !problem.empty())
            return fail(error, path, problem);
    }
    return true;
}

// Comma-separated UID:DEVICE_FLAG:TOKEN entries; an empty variable means none.
bool load_env_tokens(Config& config, std::string& error) {
    std::string name = env_name(kTokensKey);
    const char* value = std::getenv(name.c_str());
    if (value == nullptr || *value == '\0') return true;
    std::string_view list = value;
    while (true) {
        size_t comma = list.find(',');
        if (std::string problem = add_token_text(config, list.substr(0, comma)); !problem.empty())
            return fail(error, name, problem);
        if (comma == std::string_view::npos) return true;
        list.remove_prefix(comma + 1);
    }
}

bool load_env(Config& config, std::string& error) {
    for (const Option& option : options()) {
        std::string name = env_name(option.key);
        const char* value = std::getenv(name.c_str());
        if (value == nullptr) continue;
        if (std::string problem = apply(config, option, value); !problem.empty()) return fail(error, name, problem);
    }
    return load_env_tokens(config, error);
}

bool load_flags(Config& config, const CommandLine& line, std::string& error) {
    for (size_t i = 0; i < options().size(); ++i) {
        if (line.given[i]->count() == 0) continue;
        if (std::string problem = apply(config, options()[i], line.values[i]); !problem.empty())
            return fail(error, flag_name(options()[i].key), problem);
    }
    for (const std::string& text : line.tokens) {
        if (std::string problem = add_token_text(config, text); !problem.empty()) return fail(error, "--token", problem);
    }
    return true;
}

// --help and --version print and stop; any other CLI11 error is a config error.
bool parse_command_line(CommandLine& line, int argc, char** argv, std::string& error, bool& exit_now) {
    try {
        line.app.parse(argc, argv);
        return true;
    } catch (const CLI::CallForHelp&) {
        std::cout << line.app.help() << std::flush;
        exit_now = true;
    } catch (const CLI::CallForVersion& version) {
        std::cout << version.what() << std::endl;
        exit_now = true;
    } catch (const CLI::ParseError& e) {
        error = e.what();
    }
    return false;
}

std::string config_path(const CommandLine& line) {
    if (line.check_flag->count() > 0) return line.check_path;
    if (line.config_flag->count() > 0) return line.config_path;
    const char* from_env = std::getenv(env_name("config").c_str());
    return from_env == nullptr ? std::string() : std::string(from_env);
}

}  // namespace

std::optional<Config> load_config(int argc, char** argv, std::string& error, bool& exit_now) {
    error.clear();
    exit_now = false;
    CommandLine line;
    if (!parse_command_line(line, argc, argv, error, exit_now)) return std::nullopt;
    Config config;
    config.config_path = config_path(line);
    config.check_only = line.check_flag->count() > 0;
    // 0 (below its range, so no source can set it) until a source does: its
    // default depends on the mode, known once every source is read.
    config.conversation_max = 0;
    constexpr uint32_t kUnset = UINT32_MAX;
    config.max_messages_per_user = kUnset;  // above its range, the same way
    if (!config.config_path.empty() && !load_file(config, config.config_path, error)) return std::nullopt;
    if (!load_env(config, error) || !load_flags(config, line, error)) return std::nullopt;
    if (config.conversation_max == 0)
        config.conversation_max = config.mode == Mode::Test ? kTestModeConversationMax : Config{}.conversation_max;
    // Test mode is for load generators and tests: they send as fast as they can.
    if (config.max_messages_per_user == kUnset)
        config.max_messages_per_user = config.mode == Mode::Test ? 0 : Config{}.max_messages_per_user;
    // Rules that join two options, once every source has had its say.
    for (std::string problem : {guarded_http_addr(config), valid_host_port("ws_addr", config.ws_addr),
                                valid_host_port("wk_addr", config.wk_addr),
                                valid_host_port("wk_ws_addr", config.wk_ws_addr)}) {
        if (!problem.empty()) {
            error = problem;
            return std::nullopt;
        }
    }
    return config;
}

std::vector<std::string> allowed_origins(const Config& config) {
    std::vector<std::string> out;
    std::string_view list = config.http_allowed_origins;
    while (!list.empty()) {
        const size_t comma = list.find(',');
        std::string_view item = list.substr(0, comma);
        list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
        while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
        while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
        if (!item.empty()) out.emplace_back(item);
    }
    return out;
}

namespace {

// A secret from a file: its contents, one trailing line end stripped.
// Messages name the file, never what it holds.
bool read_secret_file(std::string_view key, const std::string& path, std::string& secret, std::string& error) {
    std::string contents;
    if (!read_file(path, contents, error)) {
        error = std::string(key) + ": " + error;
        return false;
    }
    if (contents.ends_with('\n')) contents.pop_back();
    if (contents.ends_with('\r')) contents.pop_back();
    if (contents.empty()) return fail(error, key, path + " is empty");
    secret = std::move(contents);
    return true;
}

// An option that may be given as itself or as a file holding it, not both.
bool read_secret_option(std::string_view key, const std::string& path, std::string& secret, std::string& error) {
    if (path.empty()) return true;
    if (!secret.empty())
        return fail(error, std::string(key) + "_file", std::string(key) + " is set too: give the secret once");
    return read_secret_file(std::string(key) + "_file", path, secret, error);
}

}  // namespace

bool read_secret_files(Config& config, std::string& error) {
    if (!config.redis_password_file.empty() &&
        !read_secret_file("redis_password_file", config.redis_password_file, config.redis_password, error))
        return false;
    return read_secret_option("http_secret", config.http_secret_file, config.http_secret, error) &&
           read_secret_option("cluster_secret", config.cluster_secret_file, config.cluster_secret, error);
}

std::string signed_cluster(const Config& config) {
    if (config.store == "embedded") return {};
    if (config.cluster_secret.empty())
        return "a Redis store needs cluster_secret or cluster_secret_file: the key that signs the events between "
               "nodes, the same on every node (e.g. openssl rand -hex 32 > /etc/limaoim/cluster.secret)";
    if (config.cluster_secret.size() < 16) return "cluster_secret must be at least 16 bytes";
    return {};
}

std::string summary(const Config& c) {
    std::string out = std::string("mode ") + to_string(c.mode) + ", listen " + c.addr + ":" + std::to_string(c.port);
    out += ", HTTP API " + (c.http_addr.empty() ? std::string("off")
                                                : c.http_addr + (c.http_secret.empty() ? " (no secret)" : " (bearer secret set)"));
    out += ", WebSocket " + (c.ws_addr.empty() ? std::string("off") : c.ws_addr);
    if (!c.wk_addr.empty()) out += ", WuKongIM TCP " + c.wk_addr;
    if (!c.wk_ws_addr.empty()) out += ", WuKongIM WebSocket " + c.wk_ws_addr;
    if (c.store == "embedded")
        out += ", store embedded in " + c.data_dir + " (durability " + c.durability + ")";
    else
        out += ", store " + scheme_and_host(c.store) + " node " + std::to_string(c.node_id);
    out += ", max_conns " + std::to_string(c.max_conns) + ", workers " +
           (c.workers == 0 ? std::string("auto") : std::to_string(c.workers));
    out += ", webhook " + (c.webhook.empty() ? std::string("off") : scheme_and_host(c.webhook));
    out += ", datasource " + (c.datasource.empty() ? std::string("off") : scheme_and_host(c.datasource));
    out += ", conversation_max " + std::to_string(c.conversation_max) + " (" + std::to_string(c.conversation_users_max) +
           " users in memory)";
    out += ", max_messages_per_second " +
           (c.max_messages_per_second == 0 ? std::string("unlimited") : std::to_string(c.max_messages_per_second));
    out += ", max_messages_per_user " +
           (c.max_messages_per_user == 0 ? std::string("unlimited") : std::to_string(c.max_messages_per_user));
    out += ", " + std::to_string(c.tokens.size()) + " configured tokens";
    if (!c.config_path.empty()) out += ", file " + c.config_path;
    return out;
}

std::vector<std::string_view> option_keys() {
    std::vector<std::string_view> keys;
    for (const Option& option : options()) keys.push_back(option.key);
    keys.push_back(kTokensKey);
    return keys;
}

const char* to_string(Mode mode) {
    for (const ModeName& entry : kModeNames) {
        if (entry.mode == mode) return entry.name.data();
    }
    return "unknown";
}

std::string_view effective_log_level(const Config& config) {
    if (config.verbose) return "debug";
    if (!config.log_level.empty()) return config.log_level;
    return config.mode == Mode::Debug ? "debug" : "info";
}

}  // namespace limaoim
