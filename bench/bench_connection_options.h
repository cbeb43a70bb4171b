// Command line of bench_connection: Go-style flags as the original load tool
// spelled them (`-cids 1-25000 -hostname 127.0.0.1 -timeout 10m`), also
// accepting `--flag value` and `-flag=value`.
#pragma once

#include <netinet/in.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "limaoim/proto/dialect.h"

namespace limaoim::bench {

struct Options {
    uint64_t first_cid = 0;  // inclusive
    uint64_t last_cid = 0;   // inclusive
    in_addr server{};
    uint16_t port = 6666;
    int64_t timeout_ns = 600'000'000'000;
    std::vector<in_addr> sources;  // empty: the kernel picks
    uint32_t rate = 0;             // new connections per second, 0 = unlimited
    int64_t heartbeat_ns = 20'000'000'000;
    uint8_t version = 4;  // 1..the dialect's latest_version (LiMaoIM 4, WKProto 5)
    // -dialect: the protocol the clients speak; the server listens for
    // WKProto on its own port (limaoim --wk-addr).
    limaoim::proto::DialectId dialect = limaoim::proto::DialectId::LiMaoIM;
    std::string token = "token";
    std::string token_prefix;  // non-empty: token = prefix + uid
    uint8_t device_flag = 0;
    std::string report_path;
    uint32_t procs = 0;  // 0: derived from the client count
    int64_t connect_timeout_ns = 10'000'000'000;
    bool quiet = false;
    // 0: each v3/v4 client makes its own X25519 key pair at connect time and
    // derives the shared secret, as the original client does. N > 0: each
    // worker makes N key pairs before the clock starts, clients take them
    // round robin and skip the shared secret, so the load generator's X25519
    // cost does not compete with the server's for the CPUs.
    uint32_t client_keys = 0;
    // Handshakes in flight per worker for the -cids clients (512 by default,
    // 0 = no cap). The -storm-cids clients are never capped: a storm offers
    // connections at its rate whatever the server does with them.
    uint32_t max_inflight = 512;

    // Storm: after the -cids clients ("established") have all come online (or
    // given up), wait -storm-delay, then offer the -storm-cids clients at
    // -storm-rate per second, open loop. storm_last_cid < storm_first_cid: no
    // storm.
    uint64_t storm_first_cid = 1;
    uint64_t storm_last_cid = 0;
    uint32_t storm_rate = 0;  // 0 = as fast as possible
    int64_t storm_delay_ns = 5'000'000'000;
    int64_t storm_hold_ns = -1;  // >= 0: stop this long after the last storm client was offered
    // > 0: a connect reset, refused or timed out before its CONNACK is
    // retried after a backoff: retry_ms x 2^(attempt-1), at most 32 x
    // retry_ms, times a random factor in [0.5, 1.5).
    uint32_t retry_ms = 0;
    // -ws: WebSocket (RFC 6455) instead of raw TCP: each client upgrades
    // (GET / with Upgrade: websocket) and then sends its packets in masked
    // binary frames.
    bool ws = false;

    uint64_t client_count() const { return last_cid - first_cid + 1; }
    bool storm() const { return storm_last_cid >= storm_first_cid; }
    uint64_t storm_count() const { return storm() ? storm_last_cid - storm_first_cid + 1 : 0; }
    uint64_t total_count() const { return client_count() + storm_count(); }
};

struct ParseResult {
    std::optional<Options> options;
    bool help = false;   // -h/-help: print usage, exit 0
    std::string error;   // set when neither options nor help
};

ParseResult parse_options(int argc, char** argv);

// Go's time.ParseDuration subset: one or more <decimal><unit> groups with
// units ns, us, ms, s, m, h ("30s", "10m", "1h30m", "1.5s"). Nullopt when
// malformed or negative.
std::optional<int64_t> parse_duration_ns(std::string_view text);

const char* usage_text();

}  // namespace limaoim::bench
