// Server configuration: defaults < TOML file (--config) < LIMAOIM_* environment
// < command-line flags. Every option has the three spellings, derived from one
// name: flag --max-conns, TOML key max_conns, variable LIMAOIM_MAX_CONNS.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace limaoim {

enum class Mode : uint8_t {
    Release,  // tokens are checked
    Test,     // the token check is skipped (the original's TEST=true)
    Debug,    // as release, with per-connection debug logs
};

// A token accepted for (uid, device_flag), given in the config file
// ([[tokens]] uid/token/device_flag) or with --token UID:DEVICE_FLAG:TOKEN.
struct TokenEntry {
    std::string uid;
    uint8_t device_flag = 0;
    std::string token;

    bool operator==(const TokenEntry&) const = default;
};

// conversation_max's default in --mode test when no source sets it (the
// original's conversationOfUserMaxCount, SERVER.md §11).
inline constexpr uint32_t kTestModeConversationMax = 100000;

struct Config {
    std::string config_path;  // --config or --check-config; empty = defaults + environment + flags only
    bool check_only = false;  // --check-config FILE: load and validate, start nothing (not an option)

    Mode mode = Mode::Release;
    std::string addr = "0.0.0.0";  // TCP listen address
    uint16_t port = 6666;          // the original's published test port
    std::string http_addr = "127.0.0.1:1516";
    std::string ws_addr = "0.0.0.0:2122";  // WebSocket listener (the original's wsAddr); empty = none
    // WuKongIM's protocol (docs/WKPROTO.md) on listeners of its own; empty = none.
    std::string wk_addr;     // TCP (WuKongIM's default port is 5100)
    std::string wk_ws_addr;  // WebSocket (WuKongIM's default port is 5200)
    uint32_t ws_max_message = 2u << 20;     // largest WebSocket frame or message payload
    std::string http_secret;             // bearer secret of the HTTP API; required off loopback
    std::string http_secret_file;        // the same, read from a file at start
    uint32_t http_body_limit = 1u << 20;  // largest request body
    std::string http_allowed_origins;     // web origins whose pages may call the API, comma-separated
    uint32_t http_max_connections = 256;  // open HTTP API connections, server-wide
    uint32_t api_threads = 2;             // run API requests (they may wait for the store)
    std::string data_dir = "./data";
    std::string durability = "group";     // group | sync | none (im::Durability)
    uint32_t commit_window_us = 1000;     // group: a batch gathers this long before its fsync
    uint32_t msg_timeout_ms = 60000;      // RECV -> retransmission without RECVACK (SERVER.md §9)
    uint32_t retry_scan_ms = 1000;        // the original's timeoutScanInterval
    uint32_t max_deliveries = 5;          // RECVs of one message to one session, then left to sync
    uint32_t max_inflight = 512;          // RECVs awaiting RECVACK per session
    uint32_t max_sends_in_flight = 64;    // SENDs awaiting SENDACK per session before its input waits
    uint32_t dedupe_window_ms = 300000;   // resends within this are stored once
    uint32_t dedupe_max = 1000000;        // (uid, client_msg_no) pairs remembered
    std::string store = "embedded";    // or a redis:// / redis+sentinel:// URL (docs/REDIS.md)
    uint32_t node_id = 1;
    uint32_t redis_timeout_ms = 2000;  // Redis connect and command timeout
    uint32_t redis_wait_replicas = 0;  // WAIT for this many replicas after each commit
    uint32_t redis_log_max = 0;        // messages kept per channel log in Redis (0: all)
    uint32_t redis_bus_max = 100000;   // events kept in each node's stream (docs/REDIS.md "Nodes")
    std::string redis_password_file;   // AUTH password, read at start (instead of the URL's)
    bool redis_durability_unchecked = false;  // start although Redis's appendfsync is weaker than durability
    std::string cluster_secret;        // HMAC key of the events between nodes; required with a Redis store
    std::string cluster_secret_file;   // the same, read from a file at start
    // Read from redis_password_file by load_config (not an option: never shown).
    std::string redis_password;
    std::string instance;  // stats segment name; empty = the port number

    uint32_t workers = 0;        // 0 = enough rings for max_conns given the fd limit
    uint64_t max_conns = 200000;

    uint32_t auth_timeout_ms = 10000;   // accept → successful CONNACK
    uint32_t idle_timeout_ms = 70000;   // the original's (SERVER.md §2.4); clients ping every 20 s
    uint32_t kick_delay_ms = 4000;      // DISCONNECT → close of a replaced session
    uint32_t shutdown_timeout_ms = 3000;  // SIGTERM → exit, flushing DISCONNECTs
    uint32_t max_packet = 1u << 20;     // maximum remaining length, inclusive
    uint32_t max_connect_packet = 4096;  // the same before login, for the CONNECT
    uint32_t send_cap = 64u << 10;      // unsent output per session before it is dropped
    uint32_t sndbuf = 64u << 10;        // kernel send buffer per connection (0 = autotuning)
    uint32_t max_pending_handshakes = 16384;  // connections not logged in, server-wide; then accepting pauses
    uint32_t handshakes_per_iteration = 16;   // CONNECTs per worker loop iteration
    uint64_t reassembly_budget = 256ull << 20;  // bytes of reassembly buffers, server-wide
    uint32_t reassembly_timeout_ms = 60000;     // a split packet not whole after this long closes its connection

    uint32_t recv_buffers = 512;        // provided buffers per worker (power of two)
    uint32_t recv_buffer_size = 2048;   // bytes each
    std::string recv_mode = "poll";  // or "multishot": see net::RecvMode (BENCHMARKS.md chose poll)
    std::string io_backend = "auto";  // or "io_uring", "epoll": see net::IoBackendKind
    uint32_t server_key_reuse = 1;        // handshakes per server X25519 key pair (1 = fresh per connection)

    // The business server (SERVER.md §12, §13). Empty URL = off.
    std::string webhook;                      // http:// or https:// URL; every event is POST {webhook}?event=...
    uint32_t webhook_timeout_ms = 10000;      // each webhook call, connect included
    uint32_t webhook_notify_batch = 20;       // msg.notify messages per call (messageNotifyMaxCount)
    uint32_t webhook_notify_scan_ms = 500;    // pause between msg.notify batches (messageNotifyScanInterval)
    uint64_t webhook_queue_max = 1000000;     // msg.notify events kept in the durable queue
    uint32_t webhook_online_queue_max = 100000;  // user.onlinestatus entries kept in memory
    uint32_t webhook_online_batch = 1000;     // user.onlinestatus entries per call
    std::string datasource;                   // http:// or https:// URL
    uint32_t datasource_timeout_ms = 2000;    // each datasource call (the committer waits for it)
    uint32_t datasource_cache_ms = 60000;     // a channel's datasource answer is asked again after this

    // Conversations (SERVER.md §11).
    uint32_t conversation_max = 100;          // per user (kTestModeConversationMax in test mode unless set)
    uint32_t conversation_flush_ms = 1000;    // changed lists are written at least this often
    uint32_t conversation_flush_users = 100;  // ... or as soon as this many users changed
    uint32_t conversation_users_max = 10000;  // users held in memory (im/conversations.h)

    uint32_t max_messages_per_second = 100000;  // SENDs from sessions, server-wide; 0 = unlimited
    uint32_t max_messages_per_user = 100;  // per user per worker, weighted by receivers; 0 = unlimited (test mode: 0 unless set)

    std::vector<TokenEntry> tokens;
    std::string log_level;  // error | warn | info | debug; empty: info (debug in --mode debug)
    bool verbose = false;   // log_level = debug

    bool operator==(const Config&) const = default;
};

// Parses argv, the environment and the TOML file named by --config (or by
// --check-config, which also sets check_only). On an error returns nullopt
// and sets `error` to a message naming the option and where it came from.
// `--help` and `--version` set `exit_now`.
std::optional<Config> load_config(int argc, char** argv, std::string& error, bool& exit_now);

// Reads redis_password_file into redis_password, http_secret_file into
// http_secret and cluster_secret_file into cluster_secret (one trailing line
// end stripped). Errors name the
// file, never its contents.
bool read_secret_files(Config& config, std::string& error);
// A Redis store needs a cluster secret of 16 bytes at least: whoever can
// PUBLISH on the Redis could otherwise speak for a node. Empty when fine.
std::string signed_cluster(const Config& config);
// http_allowed_origins as a list ("scheme://host[:port]" each; blanks around
// the commas dropped).
std::vector<std::string> allowed_origins(const Config& config);

// One line for logs and --check-config: mode, listeners, store, capacity,
// webhook and datasource (scheme and host only), token count. Never a
// secret, a token or a URL's credentials, path or query.
std::string summary(const Config& config);

// The TOML key of every option, in table order, then "tokens". The flags and
// variables derive from these; tests check the docs and example file name them all.
std::vector<std::string_view> option_keys();

const char* to_string(Mode mode);

// The log level `config` asks for (log_level, --verbose, --mode debug).
std::string_view effective_log_level(const Config& config);

}  // namespace limaoim
