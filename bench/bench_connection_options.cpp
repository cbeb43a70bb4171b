#include "bench_connection_options.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <functional>
#include <cstring>
#include <map>

namespace limaoim::bench {

namespace proto = limaoim::proto;

namespace {

constexpr uint64_t kMaxClients = 1'000'000;
constexpr size_t kMaxSources = 256;
constexpr uint32_t kMaxProcs = 64;
constexpr uint32_t kMaxClientKeys = 65536;  // 64 bytes each: at most 4 MiB per worker
constexpr int64_t kSecond = 1'000'000'000;

template <typename T>
std::optional<T> parse_number(std::string_view text) {
    T value{};
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
    return value;
}

bool assigned_to_local_interface(in_addr address) {
    ifaddrs* list = nullptr;
    if (getifaddrs(&list) != 0) return false;
    bool found = false;
    for (const ifaddrs* entry = list; entry != nullptr && !found; entry = entry->ifa_next) {
        if (entry->ifa_addr == nullptr || entry->ifa_addr->sa_family != AF_INET) continue;
        found = reinterpret_cast<const sockaddr_in*>(entry->ifa_addr)->sin_addr.s_addr == address.s_addr;
    }
    freeifaddrs(list);
    return found;
}

// The kernel driver of a network interface ("veth", "virtio_net", ...), by
// the SIOCETHTOOL ETHTOOL_GDRVINFO ioctl; empty when unknown.
std::string interface_driver(const char* name) {
    const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return {};
    ethtool_drvinfo info{};
    info.cmd = ETHTOOL_GDRVINFO;
    ifreq request{};
    std::strncpy(request.ifr_name, name, IFNAMSIZ - 1);
    request.ifr_data = reinterpret_cast<char*>(&info);
    const bool ok = ioctl(fd, SIOCETHTOOL, &request) == 0;
    close(fd);
    if (!ok) return {};
    return std::string(info.driver, strnlen(info.driver, sizeof info.driver));
}

// True when the address is on the IPv4 subnet of a directly attached veth
// interface. A veth's peer is always an interface of a network namespace of
// this machine, so such a subnet reaches only this machine (bench/online.sh
// --netns puts the server in its own namespace behind veth pairs).
bool on_veth_subnet(in_addr address) {
    ifaddrs* list = nullptr;
    if (getifaddrs(&list) != 0) return false;
    bool found = false;
    for (const ifaddrs* entry = list; entry != nullptr && !found; entry = entry->ifa_next) {
        if (entry->ifa_addr == nullptr || entry->ifa_netmask == nullptr || entry->ifa_addr->sa_family != AF_INET) continue;
        const uint32_t own = reinterpret_cast<const sockaddr_in*>(entry->ifa_addr)->sin_addr.s_addr;
        const uint32_t mask = reinterpret_cast<const sockaddr_in*>(entry->ifa_netmask)->sin_addr.s_addr;
        found = (own & mask) == (address.s_addr & mask) && interface_driver(entry->ifa_name) == "veth";
    }
    freeifaddrs(list);
    return found;
}

// Load may only hit this host: loopback, or an address of one of its own
// interfaces (which inside a network namespace are the namespace's own).
bool is_own_host(in_addr address) {
    return (ntohl(address.s_addr) >> 24) == 127 || assigned_to_local_interface(address);
}

// A server bench_connection may load: this host's own (above), or one in a
// network namespace of this machine reached over a veth pair.
bool is_loadable_server(in_addr address) { return is_own_host(address) || on_veth_subnet(address); }

std::optional<in_addr> parse_ipv4(std::string_view text) {
    if (text == "localhost") text = "127.0.0.1";
    const std::string owned(text);
    in_addr address{};
    if (inet_pton(AF_INET, owned.c_str(), &address) != 1) return std::nullopt;
    return address;
}

// "A-B" (inclusive) or a single "A".
template <typename T, typename Parse>
std::optional<std::pair<T, T>> parse_range(std::string_view text, Parse parse) {
    const size_t dash = text.find('-');
    const auto first = parse(text.substr(0, dash));
    if (!first) return std::nullopt;
    if (dash == std::string_view::npos) return std::pair{*first, *first};
    const auto last = parse(text.substr(dash + 1));
    if (!last) return std::nullopt;
    return std::pair{*first, *last};
}

// Comma-separated addresses or inclusive ranges: "127.0.0.2-127.0.0.9,127.0.1.1".
std::string parse_sources(std::string_view text, std::vector<in_addr>& out) {
    while (!text.empty()) {
        const size_t comma = text.find(',');
        const auto range = parse_range<in_addr>(text.substr(0, comma), parse_ipv4);
        if (!range) return "-srcs: expected A-B or a list of IPv4 addresses";
        const uint32_t first = ntohl(range->first.s_addr);
        const uint32_t last = ntohl(range->second.s_addr);
        if (first > last) return "-srcs: range is reversed";
        if (last - first + 1 > kMaxSources - out.size()) return "-srcs: more than 256 addresses";
        for (uint64_t host = first; host <= last; ++host) {
            const in_addr address{htonl(static_cast<uint32_t>(host))};
            if (!is_own_host(address)) return "-srcs: " + std::string(inet_ntoa(address)) + " is not an address of this host";
            out.push_back(address);
        }
        text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
    }
    return {};
}

using Setter = std::function<std::string(Options&, std::string_view)>;

template <typename T>
Setter number_in(T Options::*field, T min, T max, const char* name) {
    return [=](Options& options, std::string_view value) -> std::string {
        const auto number = parse_number<T>(value);
        if (!number || *number < min || *number > max)
            return std::string(name) + ": expected a number in " + std::to_string(min) + ".." + std::to_string(max);
        options.*field = *number;
        return {};
    };
}

Setter duration_in(int64_t Options::*field, int64_t min, int64_t max, const char* name) {
    return [=](Options& options, std::string_view value) -> std::string {
        const auto ns = parse_duration_ns(value);
        if (!ns || *ns < min || *ns > max) return std::string(name) + ": expected a duration such as 30s, 10m, 1h within the allowed range";
        options.*field = *ns;
        return {};
    };
}

Setter text_into(std::string Options::*field) {
    return [=](Options& options, std::string_view value) -> std::string {
        options.*field = std::string(value);
        return {};
    };
}

std::string set_cids(Options& options, std::string_view value) {
    const auto range = parse_range<uint64_t>(value, parse_number<uint64_t>);
    if (!range || range->first > range->second) return "-cids: expected A-B with A <= B";
    if (range->second - range->first >= kMaxClients) return "-cids: at most 1000000 clients";
    options.first_cid = range->first;
    options.last_cid = range->second;
    return {};
}

std::string set_storm_cids(Options& options, std::string_view value) {
    const auto range = parse_range<uint64_t>(value, parse_number<uint64_t>);
    if (!range || range->first > range->second) return "-storm-cids: expected A-B with A <= B";
    if (range->second - range->first >= kMaxClients) return "-storm-cids: at most 1000000 clients";
    options.storm_first_cid = range->first;
    options.storm_last_cid = range->second;
    return {};
}

std::string set_hostname(Options& options, std::string_view value) {
    const auto address = parse_ipv4(value);
    if (!address) return "-hostname: expected an IPv4 address";
    if (!is_loadable_server(*address))
        return "-hostname: only loopback, this host's own addresses or the subnet of a veth interface (a network "
               "namespace of this machine) may be loaded";
    options.server = *address;
    return {};
}

std::string set_srcs(Options& options, std::string_view value) {
    options.sources.clear();
    return parse_sources(value, options.sources);
}

std::optional<bool> parse_bool(std::string_view value) {
    if (value == "true" || value == "1") return true;
    if (value == "false" || value == "0") return false;
    return std::nullopt;
}

std::string set_quiet(Options& options, std::string_view value) {
    const auto flag = parse_bool(value);
    if (!flag) return "-quiet: expected true or false";
    options.quiet = *flag;
    return {};
}

std::string set_dialect(Options& options, std::string_view value) {
    for (const auto id : {proto::DialectId::LiMaoIM, proto::DialectId::WuKongIM})
        if (value == proto::dialect(id).name) return options.dialect = id, std::string();
    return "-dialect: expected limaoim or wukongim";
}

std::string set_ws(Options& options, std::string_view value) {
    const auto flag = parse_bool(value);
    if (!flag) return "-ws: expected true or false";
    options.ws = *flag;
    return {};
}

// Go booleans take no separate value (-quiet, -ws; -quiet=false works).
bool is_boolean_flag(std::string_view name) { return name == "quiet" || name == "ws"; }

const std::map<std::string_view, Setter>& value_flags() {
    static const std::map<std::string_view, Setter> flags = {
        {"cids", set_cids},
        {"hostname", set_hostname},
        {"port", number_in<uint16_t>(&Options::port, 1, 65535, "-port")},
        {"timeout", duration_in(&Options::timeout_ns, kSecond, 24 * 3600 * kSecond, "-timeout")},
        {"srcs", set_srcs},
        {"rate", number_in<uint32_t>(&Options::rate, 0, 10'000'000, "-rate")},
        {"heartbeat", duration_in(&Options::heartbeat_ns, kSecond, 3600 * kSecond, "-heartbeat")},
        {"version", number_in<uint8_t>(&Options::version, 1, 5, "-version")},
        {"dialect", set_dialect},
        {"token", text_into(&Options::token)},
        {"token-prefix", text_into(&Options::token_prefix)},
        {"device-flag", number_in<uint8_t>(&Options::device_flag, 0, 255, "-device-flag")},
        {"report", text_into(&Options::report_path)},
        {"procs", number_in<uint32_t>(&Options::procs, 1, kMaxProcs, "-procs")},
        {"connect-timeout", duration_in(&Options::connect_timeout_ns, kSecond / 10, 600 * kSecond, "-connect-timeout")},
        {"quiet", set_quiet},
        {"client-keys", number_in<uint32_t>(&Options::client_keys, 0, kMaxClientKeys, "-client-keys")},
        {"max-inflight", number_in<uint32_t>(&Options::max_inflight, 0, 1'000'000, "-max-inflight")},
        {"storm-cids", set_storm_cids},
        {"storm-rate", number_in<uint32_t>(&Options::storm_rate, 0, 10'000'000, "-storm-rate")},
        {"storm-delay", duration_in(&Options::storm_delay_ns, 0, 3600 * kSecond, "-storm-delay")},
        {"storm-hold", duration_in(&Options::storm_hold_ns, 0, 24 * 3600 * kSecond, "-storm-hold")},
        {"retry-ms", number_in<uint32_t>(&Options::retry_ms, 0, 600'000, "-retry-ms")},
        {"ws", set_ws},
    };
    return flags;
}

}  // namespace

std::optional<int64_t> parse_duration_ns(std::string_view text) {
    static const std::pair<std::string_view, double> kUnits[] = {
        {"ns", 1.0}, {"us", 1e3}, {"µs", 1e3}, {"ms", 1e6}, {"s", 1e9}, {"m", 60e9}, {"h", 3600e9},
    };
    if (text == "0") return 0;
    if (text.empty()) return std::nullopt;
    double total = 0;
    while (!text.empty()) {
        size_t digits = 0;
        while (digits < text.size() && (std::isdigit(static_cast<unsigned char>(text[digits])) || text[digits] == '.')) ++digits;
        const auto number = parse_number<double>(text.substr(0, digits));
        if (digits == 0 || !number) return std::nullopt;
        text.remove_prefix(digits);
        size_t unit_length = 0;
        while (unit_length < text.size() && !std::isdigit(static_cast<unsigned char>(text[unit_length])) && text[unit_length] != '.')
            ++unit_length;
        const std::string_view unit = text.substr(0, unit_length);
        const auto* match = std::find_if(std::begin(kUnits), std::end(kUnits), [&](const auto& u) { return u.first == unit; });
        if (match == std::end(kUnits)) return std::nullopt;
        total += *number * match->second;
        text.remove_prefix(unit_length);
    }
    if (total > 9.2e18) return std::nullopt;
    return static_cast<int64_t>(std::llround(total));
}

ParseResult parse_options(int argc, char** argv) {
    ParseResult result;
    Options options;
    options.server.s_addr = htonl(INADDR_LOOPBACK);
    bool have_cids = false;
    for (int i = 1; i < argc; ++i) {
        std::string_view arg = argv[i];
        if (arg.size() < 2 || arg[0] != '-') return {std::nullopt, false, "unexpected argument: " + std::string(arg)};
        arg.remove_prefix(arg[1] == '-' ? 2 : 1);
        if (arg == "h" || arg == "help") return {std::nullopt, true, {}};
        const size_t equals = arg.find('=');
        const std::string_view name = arg.substr(0, equals);
        const auto flag = value_flags().find(name);
        if (flag == value_flags().end()) return {std::nullopt, false, "unknown flag: -" + std::string(name)};
        std::string_view value;
        if (equals != std::string_view::npos) value = arg.substr(equals + 1);
        else if (is_boolean_flag(name)) value = "true";
        else if (i + 1 < argc) value = argv[++i];
        else return {std::nullopt, false, "flag needs a value: -" + std::string(name)};
        if (std::string error = flag->second(options, value); !error.empty()) return {std::nullopt, false, error};
        have_cids |= name == "cids";
    }
    if (!have_cids) return {std::nullopt, false, "-cids A-B is required"};
    if (const auto& dialect = proto::dialect(options.dialect); options.version > dialect.latest_version)
        return {std::nullopt, false,
                "-version: " + std::string(dialect.name) + " goes up to " + std::to_string(dialect.latest_version)};
    if (options.storm()) {
        if (options.storm_first_cid <= options.last_cid && options.first_cid <= options.storm_last_cid)
            return {std::nullopt, false, "-storm-cids must not overlap -cids"};
        if (options.total_count() > kMaxClients) return {std::nullopt, false, "-cids and -storm-cids: at most 1000000 clients together"};
    } else if (options.storm_hold_ns >= 0) {
        return {std::nullopt, false, "-storm-hold needs -storm-cids"};
    }
    result.options = options;
    return result;
}

const char* usage_text() {
    return R"(usage: bench_connection -cids A-B [flags]

Opens one TCP (or with -ws WebSocket) client per client id, logs each in (CONNECT, uid = the id) and
keeps it online with a PING every heartbeat interval, the way the original
LiMaoIM load tool did. Only load your own hosts: the server must be on
loopback (127.0.0.0/8), on an address of one of this host's interfaces, or on
the subnet of a veth interface (whose peer is a network namespace of this
machine, as bench/online.sh --netns sets up).

  -cids A-B              client ids, inclusive (required)
  -hostname ADDR         server IPv4 address (default 127.0.0.1)
  -port N                server port (default 6666)
  -timeout D             total run time, then a clean stop (default 10m)
  -srcs A-B[,C...]       source addresses used round-robin (default: kernel picks)
  -rate N                new connections per second, 0 = as fast as possible (default 0)
  -heartbeat D           PING interval (default 20s)
  -version N             protocol version (default 4): limaoim 1-4 (3 and 4 do the
                         X25519 handshake), wukongim 1-5 (every version does)
  -dialect D             limaoim (default) or wukongim: WuKongIM's WKProto, to the
                         server's WKProto listener (limaoim --wk-addr)
  -token S               login token (default "token")
  -token-prefix S        if set, token = S + uid
  -device-flag N         CONNECT device flag (default 0)
  -report FILE.csv       one CSV row per second
  -procs N               worker processes (default: at most 15000 sockets each)
  -connect-timeout D     TCP connect + CONNACK deadline per client (default 10s)
  -quiet                 no per-second lines, only the summary
  -client-keys N         0 (default): each v3/v4 client makes its own X25519 key
                         pair and derives the shared secret, as the original
                         client does. N > 0: each worker makes N key pairs before
                         the clock starts, clients take them round robin and do
                         not derive the shared secret (the CONNACK's key and salt
                         are still checked). Measures the server's handshake rate
                         without the load generator's own X25519 (~64 us per
                         client) competing for the same cores.
  -max-inflight N        handshakes in flight per worker for the -cids clients
                         (default 512; 0 = no cap)
  -retry-ms N            0 (default): a failed connect ends the client. N > 0: a
                         connect reset, refused or timed out before its CONNACK
                         is retried after N ms x 2^(attempt-1) (at most 32 x N),
                         times a random factor in [0.5, 1.5), until the run ends
  -ws                    WebSocket (RFC 6455) instead of raw TCP: -port is the
                         server's WebSocket listener (limaoim --ws-addr); each
                         client upgrades (GET /, checks the 101 and its
                         Sec-WebSocket-Accept), then sends CONNECT and PINGs in
                         masked binary frames and reads the server's frames
                         as a byte stream (answers ping, a close ends it);
                         a bad upgrade counts as failed (bad_upgrade)

Storm (a login storm against established clients):
  -storm-cids A-B        the storm's client ids. After every -cids client has
                         come online (or given up) and -storm-delay has passed,
                         they are offered at -storm-rate, open loop: no cap on
                         the handshakes in flight, each CONNECT sent as soon as
                         its TCP connect completes
  -storm-rate N          storm connections per second, 0 = as fast as possible
  -storm-delay D         pause between the established ramp and the storm
                         (default 5s)
  -storm-hold D          stop D after the last storm client was offered
                         (default: at -timeout)

Durations are Go style: 500ms, 30s, 10m, 1h30m. Flags may be written -flag value,
--flag value or -flag=value.
Exit status: 0 every client came online and none was dropped or closed by the
server; 1 otherwise; 2 usage error. With -storm-cids: 0 when every -cids client
came online, no online client was dropped or closed by the server and no
connect was reset or refused (storm clients that time out do not fail it).
)";
}

}  // namespace limaoim::bench
