// The server's start and stop, step by step (server/server.h).
#include "limaoim/server/server.h"

#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "limaoim/cluster/redis_cluster.h"
#include "limaoim/datasource/http_datasource.h"
#include "limaoim/http/api.h"
#include "limaoim/http/demo.h"
#include "limaoim/http/server.h"
#include "limaoim/im/events.h"
#include "limaoim/log/clock.h"
#include "limaoim/log/log.h"
#include "limaoim/net/address.h"
#include "limaoim/net/blocking_pool.h"
#include "limaoim/redis/client.h"
#include "limaoim/stats/prometheus.h"
#include "limaoim/stats/snapshot.h"
#include "limaoim/webhook/webhook.h"
#include "limaoim/ws/websocket.h"

namespace limaoim {

namespace {

// HOST:PORT (checked by the config) into its parts; [V6] brackets dropped.
std::pair<std::string, uint16_t> split_host_port(const std::string& address) {
    const size_t colon = address.rfind(':');
    std::string host = address.substr(0, colon);
    if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
    return {host, uint16_t(std::stoul(address.substr(colon + 1)))};
}

// The stats segment's name: --instance, else the port.
std::string instance_name(const Config& config) {
    return config.instance.empty() ? std::to_string(config.port) : config.instance;
}

im::Durability durability_of(const std::string& name) {
    if (name == "sync") return im::Durability::Sync;
    if (name == "none") return im::Durability::None;
    return im::Durability::Group;
}

// Each layer names its own range of close reasons (net/handler.h): the
// loop's and the gateway's, then the WebSocket layer's, then the HTTP server's.
static_assert(net::kFirstHandlerCloseReason + std::size(gateway::kGatewayCloseNames) <= ws::kFirstCloseReason);
static_assert(ws::kFirstCloseReason + std::size(ws::kCloseNames) <= http::kFirstHttpCloseReason);
std::vector<std::string> all_close_reason_names() {
    std::vector<std::string> names = gateway::close_reason_names();
    const std::span<const char* const> http_names = http::http_close_reason_names();
    names.resize(std::max(names.size(), size_t(http::kFirstHttpCloseReason) + http_names.size()));
    for (size_t i = 0; i < std::size(ws::kCloseNames); ++i) names[ws::kFirstCloseReason + i] = ws::kCloseNames[i];
    for (size_t i = 0; i < http_names.size(); ++i) names[http::kFirstHttpCloseReason + i] = http_names[i];
    return names;
}

// The store's URL with the password of redis_password_file, if given.
bool redis_url(const Config& config, redis::Url& url, std::string& error) {
    if (!redis::parse_url(config.store, url, error)) return false;
    if (config.redis_password.empty()) return true;
    if (!url.password.empty()) {
        error = "the URL has a password and redis_password_file gives one: give it once";
        return false;
    }
    url.password = config.redis_password;
    return true;
}

// The store --store names; null with `error` when it cannot be opened.
std::unique_ptr<store::Store> open_store(const Config& config, std::string& error) {
    if (config.store == "embedded") return store::open_embedded(config.data_dir, error);
    store::RedisOptions options;
    options.url = config.store;
    options.password = config.redis_password;
    options.node_id = config.node_id;
    options.timeout_ms = config.redis_timeout_ms;
    options.wait_replicas = config.redis_wait_replicas;
    // Half the command timeout: a WAIT that runs out answers "only k
    // replicas" before the socket's own timeout drops the connection.
    options.wait_timeout_ms = std::max<uint32_t>(config.redis_timeout_ms / 2, 1);
    options.log_max = config.redis_log_max;
    options.dedupe_window_ms = config.dedupe_window_ms;
    return store::open_redis(options, error);
}

// A worker loop that has not gone round for this long is unhealthy (an idle
// loop goes round every 100 ms).
constexpr uint64_t kLoopStallMs = 5000;
// The store's write probe (a file created and fsynced in the data directory)
// runs at most this often, however often /health is asked.
constexpr uint64_t kStoreProbeEveryMs = 1000;
// One HTTP API response is queued whole (a session's send queue takes one
// packet past --send-cap): the largest the server builds.
constexpr size_t kMaxApiResponseBytes = 16u << 20;

// GET /health and GET /metrics for the HTTP layer, which knows neither the
// store, nor the webhook, nor the segment. `events` may be null (no webhook).
// Every referenced object outlives the API pool.
http::Probes make_probes(const stats::Segment& segment, uint32_t workers, store::Store& store,
                         const im::Events* events, const std::unique_ptr<cluster::RedisCluster>& nodes,
                         bool fsync_checked) {
    // One probe at a time (`running`); others answer from the last result
    // (`result`), so a hung disk holds one API thread, not all of them.
    struct StoreProbe {
        std::mutex running;
        std::mutex result;
        uint64_t checked_ms = 0;  // when the last probe ended
        uint64_t started_ms = 0;  // when the running one began
        bool ok = false;
        std::string why;
    };
    auto last = std::make_shared<StoreProbe>();
    // A worker that has not gone round yet is judged from here: the HTTP
    // port accepts as soon as the first ring listens, the others a moment later.
    const uint64_t started_ms = stats::monotonic_ms();
    http::Probes probes;
    probes.health = [&segment, workers, &store, events, &nodes, fsync_checked, last, started_ms](std::string& why) {
        std::string problems;
        const auto add = [&problems](const std::string& problem) {
            if (!problems.empty()) problems += "; ";
            problems += problem;
        };
        const uint64_t now = stats::monotonic_ms();
        for (uint32_t i = 0; i < workers; ++i) {
            const uint64_t beat = segment.view().worker(i).loop_heartbeat_ms.get();
            const uint64_t since = beat != 0 ? beat : started_ms;
            if (now > since && now - since > kLoopStallMs)
                add("worker " + std::to_string(i) + (beat != 0 ? " loop stalled for " : " has not started after ") +
                    std::to_string(now - since) + " ms");
        }
        {
            std::unique_lock probing(last->running, std::try_to_lock);
            bool due;
            {
                std::lock_guard lock(last->result);
                due = last->checked_ms == 0 || now - last->checked_ms >= kStoreProbeEveryMs;
                if (due && probing) last->started_ms = now;
            }
            if (due && probing) {
                std::string probe_why;
                const bool ok = store.writable(probe_why);
                std::lock_guard lock(last->result);
                last->ok = ok;
                last->why = std::move(probe_why);
                last->checked_ms = stats::monotonic_ms();
            }
            if (probing) probing.unlock();
            std::lock_guard lock(last->result);
            if (last->checked_ms == 0 || !last->ok) add(last->why.empty() ? "store: not probed yet" : last->why);
            if (last->started_ms > last->checked_ms && now - last->started_ms > kLoopStallMs)
                add("store: the write probe has hung for " + std::to_string(now - last->started_ms) + " ms");
        }
        if (std::string webhook_why; events && !events->healthy(webhook_why))
            add(webhook_why.empty() ? "webhook: unhealthy" : webhook_why);
        // A master found weakened after a reconnection (a failover to one
        // configured otherwise): SENDACKs are no longer what durability says.
        if (std::string fsync_why; fsync_checked && nodes && nodes->fsync(fsync_why) == redis::Fsync::Weaker)
            add("redis: durability weaker than promised: " + fsync_why);
        why = problems;
        return problems.empty();
    };
    probes.metrics = [&segment] {
        auto snapshot = std::make_unique<stats::Snapshot>();  // a few KiB: not on the pool thread's stack
        stats::take_snapshot(segment.view(), true, uint64_t(clock::wall_ms()), *snapshot);
        return stats::render_prometheus(*snapshot);
    };
    return probes;
}

// Refuses a Redis whose appendfsync is weaker than --durability promises,
// unless redis_durability_unchecked accepts it (then warns); warns when it
// cannot be checked (CONFIG renamed or denied by an ACL).
bool durable_enough(const Config& config, const cluster::RedisCluster& nodes, std::string& error) {
    if (config.durability == "none") return true;
    std::string found;
    switch (nodes.fsync(found)) {
    case redis::Fsync::Always:
        return true;
    case redis::Fsync::Unknown:
        log::write(log::Level::Warn, "limaoim",
                   "cannot check that Redis keeps what it acknowledges (%s): make sure the master has appendonly yes "
                   "and appendfsync always, or a SENDACK is less durable than --durability %s promises",
                   found.c_str(), config.durability.c_str());
        return true;
    case redis::Fsync::Weaker:
        if (config.redis_durability_unchecked) {
            log::write(log::Level::Warn, "limaoim",
                       "%s: a SENDACK may be lost with the master (accepted by --redis-durability-unchecked)",
                       found.c_str());
            return true;
        }
        error = "--durability " + config.durability + " needs Redis to fsync every write, but " + found +
                ": set appendonly yes and appendfsync always on the master (CONFIG SET, and in redis.conf), or "
                "start with --redis-durability-unchecked to accept the weaker durability";
        return false;
    }
    return true;
}

}  // namespace

std::string start_problem(const Config& config) {
    if (config.store == "embedded") return {};
    redis::Url url;
    std::string error;
    if (!redis_url(config, url, error)) return "store: " + error;
    return signed_cluster(config);
}

Server::Server(const Config& config) : config_(config) {}

Server::~Server() { stop(); }

int Server::run() {
    block_signals();
    if (!plan_capacity()) return 2;
    if (!probe_ports() || !open_store() || !create_stats() || !load_core()) return 1;
    connect_business_server();
    build_api();
    build_workers();
    join_cluster();
    if (!start_threads()) return 1;  // the destructor stops what started
    serving_ = true;
    log_listening();
    wait_for_signal();
    stop();
    log::write(log::Level::Info, "limaoim", "stopped");
    return 0;
}

void Server::block_signals() {
    // Blocked before the first thread starts (the store's, the API pool's,
    // the committer's...): every thread inherits the mask, so SIGTERM waits
    // for the main thread's sigwait. A thread created earlier without it
    // would take a SIGTERM sent during start-up and die by its default
    // action: no goodbye, no flush (seen in a test that stops a server just
    // after it started).
    sigemptyset(&signals_);
    sigaddset(&signals_, SIGINT);
    sigaddset(&signals_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals_, nullptr);
    signal(SIGPIPE, SIG_IGN);
    // Everything the server creates (the data directory, RocksDB's files,
    // the stats segment) is its user's alone: messages and token digests
    // are not for other local users.
    umask(077);
}

bool Server::plan_capacity() {
    log::set_level(*log::parse_level(effective_log_level(config_)));
    const uint64_t nofile = net::raise_nofile_limit();
    net::IoBackendKind requested = net::IoBackendKind::Auto;
    net::parse_io_backend(config_.io_backend, requested);  // the config checked the name
    std::string epoll_why;
    const net::IoBackendKind backend = net::resolve_io_backend(requested, epoll_why);
    if (!epoll_why.empty()) log::write(log::Level::Warn, "limaoim", "I/O backend: epoll, %s", epoll_why.c_str());
    plan_ = net::plan_capacity(config_.max_conns, config_.workers, nofile, net::usable_cpus(),
                               config_.recv_buffers, backend);
    log::write(log::Level::Info, "limaoim", "I/O backend %s; %s", net::io_backend_name(backend),
               plan_.summary.c_str());
    if (!plan_.reaches_max_conns) log::write(log::Level::Warn, "limaoim", "%s", plan_.problem.c_str());
    if (const std::string problem = start_problem(config_); !problem.empty()) {
        log::write(log::Level::Error, "limaoim", "%s", problem.c_str());
        return false;
    }
    return true;
}

bool Server::probe_ports() {
    serve_api_ = !config_.http_addr.empty();
    if (serve_api_) std::tie(http_host_, http_port_) = split_host_port(config_.http_addr);
    client_listeners_.push_back({"--port", config_.addr, config_.port, proto::DialectId::LiMaoIM, false});
    const struct {
        const char* option;
        const std::string& addr;
        proto::DialectId dialect;
        bool websocket;
    } optional[] = {
        {"--ws-addr", config_.ws_addr, proto::DialectId::LiMaoIM, true},
        {"--wk-addr", config_.wk_addr, proto::DialectId::WuKongIM, false},
        {"--wk-ws-addr", config_.wk_ws_addr, proto::DialectId::WuKongIM, true},
    };
    for (const auto& o : optional) {
        if (o.addr.empty()) continue;
        const auto [host, port] = split_host_port(o.addr);
        client_listeners_.push_back({o.option, host, port, o.dialect, o.websocket});
    }
    if (config_.mode == Mode::Test) {
        std::string exposed;
        for (const ClientListener& l : client_listeners_)
            if (!net::is_loopback_host(l.host))
                exposed += (exposed.empty() ? "" : " and ") + l.host + ":" + std::to_string(l.port);
        if (!exposed.empty())
            log::write(log::Level::Warn, "limaoim",
                       "--mode test on %s, not loopback: anyone who reaches it logs in as any uid without a token "
                       "and sends to any channel (no permission checks); use --mode release outside tests",
                       exposed.c_str());
    }
    std::string error;
    for (const ClientListener& l : client_listeners_)
        if (error.empty()) error = net::probe_listen_port(l.host, l.port, l.option);
    if (error.empty() && serve_api_) error = net::probe_listen_port(http_host_, http_port_, "--http-addr");
    if (!error.empty()) log::write(log::Level::Error, "limaoim", "%s", error.c_str());
    return error.empty();
}

bool Server::open_store() {
    std::string error;
    store_ = limaoim::open_store(config_, error);
    if (!store_) log::write(log::Level::Error, "limaoim", "%s", error.c_str());
    return store_ != nullptr;
}

bool Server::create_stats() {
    stats::SegmentInfo info;
    info.instance = instance_name(config_);
    info.workers = plan_.workers;
    info.slots_per_worker = plan_.slots_per_worker;
    info.max_conns = config_.max_conns;
    info.port = config_.port;
    info.mode_test = config_.mode == Mode::Test;
    info.io_backend = uint8_t(plan_.io_backend);
    info.close_reason_names = all_close_reason_names();
    std::string error;
    segment_created_ = segment_.create(info, error);
    if (!segment_created_) log::write(log::Level::Error, "limaoim", "%s", error.c_str());
    return segment_created_;
}

bool Server::load_core() {
    im::CoreOptions options;
    options.node_id = config_.node_id;
    options.test_mode = config_.mode == Mode::Test;
    options.committer.durability = durability_of(config_.durability);
    options.committer.commit_window_us = config_.commit_window_us;
    options.committer.dedupe_window_ms = config_.dedupe_window_ms;
    options.committer.dedupe_max = config_.dedupe_max;
    options.conversations.max_per_user = config_.conversation_max;
    options.conversations.flush_ms = config_.conversation_flush_ms;
    options.conversations.flush_users = config_.conversation_flush_users;
    options.conversations.users_max = config_.conversation_users_max;
    options.max_messages_per_second = config_.max_messages_per_second;
    options.max_messages_per_user = config_.max_messages_per_user;
    options.datasource_cache_ms = config_.datasource_cache_ms;
    core_ = std::make_unique<im::Core>(*store_, tokens_, shared_.directory, segment_.pipeline(), options);
    std::string error;
    if (!core_->load(error)) {
        log::write(log::Level::Error, "limaoim", "%s", error.c_str());
        return false;
    }
    for (const TokenEntry& t : config_.tokens) tokens_.set(t.uid, t.device_flag, t.token);
    return true;
}

// The business server: webhooks (§12) and the datasource (§13), each only when configured.
void Server::connect_business_server() {
    if (!config_.webhook.empty()) {
        webhook::Options options;
        options.timeout_ms = config_.webhook_timeout_ms;
        options.notify_batch = config_.webhook_notify_batch;
        options.notify_scan_ms = config_.webhook_notify_scan_ms;
        options.queue_max = config_.webhook_queue_max;
        options.online_queue_max = config_.webhook_online_queue_max;
        options.online_batch = config_.webhook_online_batch;
        webhook_sender_ = std::make_unique<webhook::Sender>(config_.webhook, options, *store_, segment_.pipeline());
        core_->set_events(webhook_sender_.get());
    }
    if (!config_.datasource.empty()) {
        datasource::Options options;
        options.timeout_ms = config_.datasource_timeout_ms;
        business_datasource_ = std::make_unique<datasource::HttpDatasource>(config_.datasource, options);
        core_->set_datasource(business_datasource_.get());
    }
}

void Server::build_api() {
    // Durability group and sync promise a SENDACK survives a crash: with
    // Redis, only appendfsync always on the master keeps that promise.
    const bool fsync_checked = config_.durability != "none" && !config_.redis_durability_unchecked;
    http::ApiOptions options;
    options.bearer_secret = config_.http_secret;
    options.allowed_origins = allowed_origins(config_);
    // Half the response cap (build_workers): the budget counts message
    // JSON from above, the cap the whole serialized response.
    options.message_bytes_budget = kMaxApiResponseBytes / 2;
    // The webhook's view for GET /health is null without a webhook; the
    // other nodes are joined later (join_cluster), before the API listens.
    api_ = std::make_unique<http::Api>(
        core_->service(), options, make_probes(segment_, plan_.workers, *store_, webhook_sender_.get(), nodes_, fsync_checked),
        http::demo_files());
    if (serve_api_ && !http::demo_built())
        log::write(log::Level::Warn, "limaoim",
                   "the demo page (/demo/) was not built: run `npm ci` in clients/js and "
                   "`npm ci && npm run demo` in clients/wksdk, then reconfigure and rebuild");
    api_pool_ = std::make_unique<net::BlockingPool>("api", config_.api_threads, 4096);
}

void Server::build_workers() {
    limits_.max_conns = config_.max_conns;
    shared_.core = core_.get();
    shared_.max_sends_in_flight = uint16_t(config_.max_sends_in_flight);
    shared_.retry_scan_ms = config_.retry_scan_ms;
    shared_.inflight.timeout_ms = config_.msg_timeout_ms;
    shared_.inflight.max_deliveries = config_.max_deliveries;
    shared_.inflight.max_per_session = config_.max_inflight;
    shared_.auth.check_tokens = config_.mode != Mode::Test;
    shared_.auth.tokens = &tokens_;
    shared_.auth.server_key_uses = config_.server_key_reuse;
    shared_.auth_timeout_ms = config_.auth_timeout_ms;
    shared_.idle_timeout_ms = config_.idle_timeout_ms;
    shared_.kick_delay_ms = config_.kick_delay_ms;
    shared_.max_packet = config_.max_packet;
    shared_.max_connect_packet = std::min(config_.max_connect_packet, config_.max_packet);
    shared_.handshakes_per_iteration = config_.handshakes_per_iteration;
    shared_.node_id = config_.node_id;

    ws::WebSocketOptions ws_options;
    ws_options.limits.max_frame = config_.ws_max_message;
    ws_options.limits.max_message = config_.ws_max_message;
    ws_options.upgrade_timeout_ms = config_.auth_timeout_ms;
    http::ServerOptions http_options;
    http_options.body_limit = config_.http_body_limit;
    // A page of big messages over this is refused with 500.
    http_options.max_response_bytes = kMaxApiResponseBytes;

    std::vector<net::Worker*> peers;
    for (uint32_t i = 0; i < plan_.workers; ++i) {
        net::WorkerOptions options;
        options.index = i;
        options.slots = plan_.slots_per_worker;
        options.recv_buffers = plan_.recv_buffers_per_worker;
        options.recv_buffer_size = config_.recv_buffer_size;
        options.send_cap = config_.send_cap;
        options.reassembly_budget = config_.reassembly_budget / plan_.workers;
        // One buffer: the largest packet (or WebSocket frame) a handler
        // accepts, plus a whole buffer ring, which bounds what arrives before
        // a pause of its input takes effect.
        options.reassembly_per_connection =
            std::max(uint64_t(config_.max_packet) + 5, uint64_t(config_.ws_max_message) + 14) +
            uint64_t(plan_.recv_buffers_per_worker) * config_.recv_buffer_size;
        options.reassembly_timeout_ms = config_.reassembly_timeout_ms;
        options.recv_mode = config_.recv_mode == "poll" ? net::RecvMode::PollThenRecv : net::RecvMode::Multishot;
        options.io_backend = plan_.io_backend;
        workers_.push_back(std::make_unique<net::Worker>(options, limits_, segment_.worker(i), segment_.conns(i)));
        peers.push_back(workers_.back().get());
    }
    for (auto& worker : workers_) {
        gateways_.push_back(std::make_unique<gateway::Gateway>(*worker, shared_));
        gateway::Gateway& gateway = *gateways_.back();
        for (const ClientListener& l : client_listeners_) {
            net::ListenerOptions listener;
            listener.addr = l.host;
            listener.port = l.port;
            listener.handler = &gateway.handler(l.dialect);
            if (l.websocket) {
                // The same gateway, through the WebSocket framing layer.
                websockets_.push_back(std::make_unique<ws::WebSocketTransport>(*worker, *listener.handler, ws_options));
                listener.handler = websockets_.back().get();
            }
            listener.sndbuf = config_.sndbuf;
            // Each worker takes its share of the server-wide limit (per listener).
            listener.max_pending = (config_.max_pending_handshakes + plan_.workers - 1) / plan_.workers;
            worker->add_listener(listener);
        }
        worker->set_envelope_handler(gateway::kEnvelopeFamily, gateways_.back().get());
        if (serve_api_) {
            http_servers_.push_back(std::make_unique<http::Server>(*worker, *worker, *api_pool_, *api_, http_options));
            net::ListenerOptions api_listener;
            api_listener.addr = http_host_;
            api_listener.port = http_port_;
            api_listener.handler = http_servers_.back().get();
            api_listener.backlog = 1024;  // max_pending stays 0: HTTP connections never "establish"
            // Each worker takes its share: API clients cannot take the IM clients' slots.
            api_listener.max_open = (config_.http_max_connections + plan_.workers - 1) / plan_.workers;
            worker->add_listener(api_listener);
            worker->set_envelope_handler(http::kEnvelopeFamily, http_servers_.back().get());
        }
        worker->set_peers(peers);
    }
    const std::vector<net::EnvelopeSink*> sinks(peers.begin(), peers.end());
    core_->set_workers(sinks, gateway::gateway_envelope_kinds());
}

// Nodes on a shared store hear of each other's messages, logins and changes.
void Server::join_cluster() {
    if (!store_->shared()) return;
    cluster::Options options;
    std::string url_error;
    redis_url(config_, options.url, url_error);  // checked by start_problem()
    options.node_id = config_.node_id;
    options.timeout_ms = config_.redis_timeout_ms;
    options.secret = config_.cluster_secret;
    options.bus_max_events = config_.redis_bus_max;
    options.check_fsync = config_.durability != "none";
    nodes_ = std::make_unique<cluster::RedisCluster>(options, core_->cluster_listener(), segment_.pipeline());
    core_->set_cluster(nodes_.get());
    // online_elsewhere works after nodes_->stop() too (the sender stops last).
    // After a failed round trip presence is not asked for a second
    // (everyone counts as offline): Redis away costs the sender one
    // timeout per second, not one per message.
    if (webhook_sender_)
        webhook_sender_->set_presence_filter(
            [cluster = nodes_.get(), skip_until = std::chrono::steady_clock::time_point{}](
                std::vector<std::string>& uids) mutable {
                const auto now = std::chrono::steady_clock::now();
                if (now < skip_until) return;
                std::vector<std::string> elsewhere;
                if (!cluster->online_elsewhere(uids, elsewhere)) {
                    skip_until = now + std::chrono::seconds(1);
                    return;
                }
                std::erase_if(uids, [&elsewhere](const std::string& uid) {
                    return std::find(elsewhere.begin(), elsewhere.end(), uid) != elsewhere.end();
                });
            });
    shared_.auth.tokens_current = &nodes_->connected();
}

bool Server::start_threads() {
    std::string error;
    core_started_ = true;  // stop() stops what of it started
    if (!core_->start(error) || (nodes_ && !nodes_->start(error)) ||
        (nodes_ && !durable_enough(config_, *nodes_, error))) {
        log::write(log::Level::Error, "limaoim", "%s", error.c_str());
        return false;
    }
    for (auto& worker : workers_) {
        if (!worker->start(error)) {
            log::write(log::Level::Error, "limaoim", "%s", error.c_str());
            return false;
        }
        ++workers_started_;
    }
    return true;
}

namespace {
const char* or_off(const std::string& addr) { return addr.empty() ? "off" : addr.c_str(); }
}  // namespace

void Server::log_listening() const {
    // Redis: where, not the URL (it may carry a password).
    const std::string where = nodes_ ? "node " + std::to_string(config_.node_id) + " on " + nodes_->master_address()
                                     : config_.data_dir + " (durability " + config_.durability + ")";
    log::write(log::Level::Info, "limaoim",
               "listening on %s:%u, WebSocket %s, WuKongIM TCP %s, WuKongIM WebSocket %s, HTTP API on %s, mode %s, "
               "%zu tokens, %zu channels, store %s %s, stats in %s (read it with: limaoim-stat --instance %s)",
               config_.addr.c_str(), config_.port, or_off(config_.ws_addr), or_off(config_.wk_addr),
               or_off(config_.wk_ws_addr),
               or_off(config_.http_addr), to_string(config_.mode), tokens_.size(),
               core_->channels().size(), store_->engine(), where.c_str(), segment_.path().c_str(),
               instance_name(config_).c_str());
}

void Server::wait_for_signal() {
    int signal_number = 0;
    sigwait(&signals_, &signal_number);
    log::write(log::Level::Info, "limaoim", "%s: disconnecting clients and stopping (at most %u ms)",
               signal_number == SIGINT ? "SIGINT" : "SIGTERM", config_.shutdown_timeout_ms);
}

void Server::stop() {
    if (stopped_) return;
    stopped_ = true;
    // Workers first (clients are told and closed; SENDs still arriving are
    // committed and answered meanwhile), the API's threads while they drain,
    // then the core commits and fans out what is left (the workers' inboxes
    // outlive their threads, so late results have somewhere to go).
    // After a failed start nobody is served yet: no goodbyes to wait for.
    const uint32_t deadline_ms = serving_ ? config_.shutdown_timeout_ms : 0;
    for (size_t i = 0; i < workers_started_; ++i) workers_[i]->request_stop(deadline_ms);
    if (api_pool_) api_pool_->stop();  // API requests queued or running finish while the workers drain
    for (size_t i = 0; i < workers_started_; ++i) workers_[i]->join();
    if (nodes_) nodes_->stop_receiving();  // nothing more from the others for a core that stops
    if (core_started_) core_->stop();
    if (nodes_) nodes_->stop();  // after the core's last messages went to the other nodes
    if (webhook_sender_) webhook_sender_->stop();  // after the core's last events; the notify queue stays on disk
    if (segment_created_) segment_.remove();
}

}  // namespace limaoim
