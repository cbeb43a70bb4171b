// limaoim: configuration, capacity plan, store, stats segment, the IM core's
// threads, one worker thread per ring (each with the LiMaoIM listener and
// the HTTP API listener), and an orderly stop on SIGTERM/SIGINT.
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <span>
#include <string>
#include <utility>
#include <cstdio>
#include <memory>
#include <thread>
#include <vector>

#include "limaoim/cluster/redis_cluster.h"
#include "limaoim/config.h"
#include "limaoim/datasource/http_datasource.h"
#include "limaoim/gateway/gateway.h"
#include "limaoim/ws/websocket.h"
#include "limaoim/http/api.h"
#include "limaoim/http/demo.h"
#include "limaoim/http/server.h"
#include "limaoim/im/core.h"
#include "limaoim/log/clock.h"
#include "limaoim/log/log.h"
#include "limaoim/net/address.h"
#include "limaoim/net/blocking_pool.h"
#include "limaoim/net/capacity.h"
#include "limaoim/net/worker.h"
#include "limaoim/redis/client.h"
#include "limaoim/im/events.h"
#include "limaoim/stats/prometheus.h"
#include "limaoim/stats/segment.h"
#include "limaoim/stats/snapshot.h"
#include "limaoim/store/store.h"
#include "limaoim/store/token_store.h"
#include "limaoim/webhook/webhook.h"

namespace {

using namespace limaoim;

// HOST:PORT (checked by the config) into its parts; [V6] brackets dropped.
std::pair<std::string, uint16_t> split_host_port(const std::string& address) {
    const size_t colon = address.rfind(':');
    std::string host = address.substr(0, colon);
    if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
    return {host, uint16_t(std::stoul(address.substr(colon + 1)))};
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

// What a start refuses beyond load_config's checks; --check-config runs it
// too. Empty when none.
std::string start_problem(const Config& config) {
    if (config.store == "embedded") return {};
    redis::Url url;
    std::string error;
    if (!redis_url(config, url, error)) return "store: " + error;
    return signed_cluster(config);
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

int run(const Config& config) {
    // Blocked before the first thread starts (the store's, the API pool's,
    // the committer's...): every thread inherits the mask, so SIGTERM waits
    // for the main thread's sigwait below. A thread created earlier without
    // it would take a SIGTERM sent during start-up and die by its default
    // action: no goodbye, no flush (seen in a test that stops a server just
    // after it started).
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    signal(SIGPIPE, SIG_IGN);

    // Everything the server creates (the data directory, RocksDB's files,
    // the stats segment) is its user's alone: messages and token digests
    // are not for other local users.
    umask(077);
    log::set_level(*log::parse_level(effective_log_level(config)));
    const uint64_t nofile = net::raise_nofile_limit();
    const net::CapacityPlan plan = net::plan_capacity(config.max_conns, config.workers, nofile,
                                                      std::thread::hardware_concurrency(), config.recv_buffers);
    log::write(log::Level::Info, "limaoim", "%s", plan.summary.c_str());
    if (!plan.reaches_max_conns) log::write(log::Level::Warn, "limaoim", "%s", plan.problem.c_str());

    std::string error = start_problem(config);
    if (!error.empty()) {
        log::write(log::Level::Error, "limaoim", "%s", error.c_str());
        return 2;
    }
    const bool serve_api = !config.http_addr.empty();
    const auto [http_host, http_port] = serve_api ? split_host_port(config.http_addr) : std::pair<std::string, uint16_t>();
    const bool serve_ws = !config.ws_addr.empty();
    const auto [ws_host, ws_port] = serve_ws ? split_host_port(config.ws_addr) : std::pair<std::string, uint16_t>();
    if (config.mode == Mode::Test) {
        std::string exposed;
        if (!net::is_loopback_host(config.addr)) exposed = config.addr + ":" + std::to_string(config.port);
        if (serve_ws && !net::is_loopback_host(ws_host)) exposed += (exposed.empty() ? "" : " and WebSocket ") + config.ws_addr;
        if (!exposed.empty())
            log::write(log::Level::Warn, "limaoim",
                       "--mode test on %s, not loopback: anyone who reaches it logs in as any uid without a token "
                       "and sends to any channel (no permission checks); use --mode release outside tests",
                       exposed.c_str());
    }
    error = net::probe_listen_port(config.addr, config.port, "--port");
    if (error.empty() && serve_api) error = net::probe_listen_port(http_host, http_port, "--http-addr");
    if (error.empty() && serve_ws) error = net::probe_listen_port(ws_host, ws_port, "--ws-addr");
    if (!error.empty()) {
        log::write(log::Level::Error, "limaoim", "%s", error.c_str());
        return 1;
    }
    std::unique_ptr<store::Store> store = open_store(config, error);
    if (!store) {
        log::write(log::Level::Error, "limaoim", "%s", error.c_str());
        return 1;
    }

    stats::Segment segment;
    stats::SegmentInfo info;
    info.instance = config.instance.empty() ? std::to_string(config.port) : config.instance;
    info.workers = plan.workers;
    info.slots_per_worker = plan.slots_per_worker;
    info.max_conns = config.max_conns;
    info.port = config.port;
    info.mode_test = config.mode == Mode::Test;
    info.close_reason_names = all_close_reason_names();
    if (!segment.create(info, error)) {
        log::write(log::Level::Error, "limaoim", "%s", error.c_str());
        return 1;
    }

    store::TokenStore tokens;
    gateway::GatewayShared shared;
    im::CoreOptions core_options;
    core_options.node_id = config.node_id;
    core_options.test_mode = config.mode == Mode::Test;
    core_options.committer.durability = durability_of(config.durability);
    core_options.committer.commit_window_us = config.commit_window_us;
    core_options.committer.dedupe_window_ms = config.dedupe_window_ms;
    core_options.committer.dedupe_max = config.dedupe_max;
    core_options.conversations.max_per_user = config.conversation_max;
    core_options.conversations.flush_ms = config.conversation_flush_ms;
    core_options.conversations.flush_users = config.conversation_flush_users;
    core_options.max_messages_per_second = config.max_messages_per_second;
    core_options.max_messages_per_user = config.max_messages_per_user;
    core_options.datasource_cache_ms = config.datasource_cache_ms;
    im::Core core(*store, tokens, shared.directory, segment.pipeline(), core_options);
    if (!core.load(error)) {
        log::write(log::Level::Error, "limaoim", "%s", error.c_str());
        segment.remove();
        return 1;
    }
    for (const TokenEntry& t : config.tokens) tokens.set(t.uid, t.device_flag, t.token);
    // The other nodes (set below, before the HTTP API listens). Declared
    // before the webhook sender, whose thread may still ask them for
    // presence until it is destroyed.
    std::unique_ptr<cluster::RedisCluster> nodes;
    // The business server: webhooks (§12) and the datasource (§13), each only when configured.
    std::unique_ptr<webhook::Sender> webhook_sender;
    if (!config.webhook.empty()) {
        webhook::Options options;
        options.timeout_ms = config.webhook_timeout_ms;
        options.notify_batch = config.webhook_notify_batch;
        options.notify_scan_ms = config.webhook_notify_scan_ms;
        options.queue_max = config.webhook_queue_max;
        options.online_queue_max = config.webhook_online_queue_max;
        options.online_batch = config.webhook_online_batch;
        webhook_sender = std::make_unique<webhook::Sender>(config.webhook, options, *store, segment.pipeline());
        core.set_events(webhook_sender.get());
    }
    std::unique_ptr<datasource::HttpDatasource> business_datasource;
    if (!config.datasource.empty()) {
        datasource::Options options;
        options.timeout_ms = config.datasource_timeout_ms;
        business_datasource = std::make_unique<datasource::HttpDatasource>(config.datasource, options);
        core.set_datasource(business_datasource.get());
    }
    // The webhook's view for GET /health; null without a webhook.
    const im::Events* events = webhook_sender.get();
    // Durability group and sync promise a SENDACK survives a crash: with
    // Redis, only appendfsync always on the master keeps that promise.
    const bool fsync_checked = config.durability != "none" && !config.redis_durability_unchecked;
    http::ApiOptions api_options;
    api_options.bearer_secret = config.http_secret;
    api_options.allowed_origins = allowed_origins(config);
    // Half the response cap (http_options below): the budget counts message
    // JSON from above, the cap the whole serialized response.
    api_options.message_bytes_budget = kMaxApiResponseBytes / 2;
    http::Api api(core, api_options, make_probes(segment, plan.workers, *store, events, nodes, fsync_checked),
                  http::demo_files());
    if (serve_api && !http::demo_built())
        log::write(log::Level::Warn, "limaoim", "the demo page (/demo/) was not built: run `npm ci` in clients/js, then reconfigure and rebuild");
    net::BlockingPool api_pool("api", config.api_threads, 4096);

    net::SharedLimits limits;
    limits.max_conns = config.max_conns;
    shared.core = &core;
    shared.max_sends_in_flight = uint16_t(config.max_sends_in_flight);
    shared.retry_scan_ms = config.retry_scan_ms;
    shared.inflight.timeout_ms = config.msg_timeout_ms;
    shared.inflight.max_deliveries = config.max_deliveries;
    shared.inflight.max_per_session = config.max_inflight;
    shared.auth.check_tokens = config.mode != Mode::Test;
    shared.auth.tokens = &tokens;
    shared.auth.server_key_uses = config.server_key_reuse;
    shared.auth_timeout_ms = config.auth_timeout_ms;
    shared.idle_timeout_ms = config.idle_timeout_ms;
    shared.kick_delay_ms = config.kick_delay_ms;
    shared.max_packet = config.max_packet;
    shared.max_connect_packet = std::min(config.max_connect_packet, config.max_packet);
    shared.handshakes_per_iteration = config.handshakes_per_iteration;

    std::vector<std::unique_ptr<net::Worker>> workers;
    std::vector<net::Worker*> peers;
    std::vector<std::unique_ptr<gateway::Gateway>> gateways;
    std::vector<std::unique_ptr<ws::WebSocketTransport>> websockets;
    ws::WebSocketOptions ws_options;
    ws_options.limits.max_frame = config.ws_max_message;
    ws_options.limits.max_message = config.ws_max_message;
    ws_options.upgrade_timeout_ms = config.auth_timeout_ms;
    ws_options.held_budget = config.reassembly_budget / plan.workers;
    std::vector<std::unique_ptr<http::Server>> http_servers;
    http::ServerOptions http_options;
    http_options.body_limit = config.http_body_limit;
    // A page of big messages over this is refused with 500.
    http_options.max_response_bytes = kMaxApiResponseBytes;
    for (uint32_t i = 0; i < plan.workers; ++i) {
        net::WorkerOptions options;
        options.index = i;
        options.slots = plan.slots_per_worker;
        options.recv_buffers = plan.recv_buffers_per_worker;
        options.recv_buffer_size = config.recv_buffer_size;
        options.send_cap = config.send_cap;
        options.reassembly_budget = config.reassembly_budget / plan.workers;
        // One connection: the largest packet (or WebSocket frame) a handler
        // accepts, plus a whole buffer ring, which bounds what arrives before
        // a pause of its input takes effect.
        options.reassembly_per_connection = std::max(uint64_t(config.max_packet) + 5, uint64_t(config.ws_max_message) + 14) +
                                            uint64_t(plan.recv_buffers_per_worker) * config.recv_buffer_size;
        options.reassembly_timeout_ms = config.reassembly_timeout_ms;
        options.recv_mode = config.recv_mode == "poll" ? net::RecvMode::PollThenRecv : net::RecvMode::Multishot;
        workers.push_back(std::make_unique<net::Worker>(options, limits, segment.worker(i), segment.conns(i)));
        peers.push_back(workers.back().get());
    }
    for (auto& worker : workers) {
        gateways.push_back(std::make_unique<gateway::Gateway>(*worker, shared));
        net::ListenerOptions tcp;
        tcp.addr = config.addr;
        tcp.port = config.port;
        tcp.handler = gateways.back().get();
        tcp.sndbuf = config.sndbuf;
        // Each worker takes its share of the server-wide limit (per listener).
        tcp.max_pending = (config.max_pending_handshakes + plan.workers - 1) / plan.workers;
        worker->add_listener(tcp);
        if (serve_ws) {
            // The same gateway, through the WebSocket framing layer.
            websockets.push_back(std::make_unique<ws::WebSocketTransport>(*worker, *gateways.back(), ws_options));
            net::ListenerOptions websocket = tcp;
            websocket.addr = ws_host;
            websocket.port = ws_port;
            websocket.handler = websockets.back().get();
            worker->add_listener(websocket);
        }
        worker->set_envelope_handler(gateway::kEnvelopeFamily, gateways.back().get());

        if (serve_api) {
            http_servers.push_back(std::make_unique<http::Server>(*worker, *worker, api_pool, api, http_options));
            net::ListenerOptions api_listener;
            api_listener.addr = http_host;
            api_listener.port = http_port;
            api_listener.handler = http_servers.back().get();
            api_listener.backlog = 1024;  // max_pending stays 0: HTTP connections never "establish"
            // Each worker takes its share: API clients cannot take the IM clients' slots.
            api_listener.max_open = (config.http_max_connections + plan.workers - 1) / plan.workers;
            worker->add_listener(api_listener);
            worker->set_envelope_handler(http::kEnvelopeFamily, http_servers.back().get());
        }
        worker->set_peers(peers);
    }
    core.set_workers(peers, gateway::gateway_envelope_kinds());
    // Nodes on a shared store hear of each other's messages, logins and changes.
    if (store->shared()) {
        cluster::Options options;
        std::string url_error;
        redis_url(config, options.url, url_error);  // checked by start_problem()
        options.node_id = config.node_id;
        options.timeout_ms = config.redis_timeout_ms;
        options.secret = config.cluster_secret;
        options.bus_max_events = config.redis_bus_max;
        options.check_fsync = config.durability != "none";
        nodes = std::make_unique<cluster::RedisCluster>(options, core, segment.pipeline());
        core.set_cluster(nodes.get());
        // online_elsewhere works after nodes->stop() too (the sender stops last).
        // After a failed round trip presence is not asked for a second
        // (everyone counts as offline): Redis away costs the sender one
        // timeout per second, not one per message.
        if (webhook_sender)
            webhook_sender->set_presence_filter(
                [cluster = nodes.get(), skip_until = std::chrono::steady_clock::time_point{}](
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
        shared.auth.tokens_current = &nodes->connected();
    }
    if (!core.start(error) || (nodes && !nodes->start(error)) || (nodes && !durable_enough(config, *nodes, error))) {
        log::write(log::Level::Error, "limaoim", "%s", error.c_str());
        if (nodes) nodes->stop();
        core.stop();
        segment.remove();
        return 1;
    }

    for (size_t i = 0; i < workers.size(); ++i) {
        if (!workers[i]->start(error)) {
            log::write(log::Level::Error, "limaoim", "%s", error.c_str());
            for (size_t j = 0; j < i; ++j) workers[j]->request_stop(0);
            for (size_t j = 0; j < i; ++j) workers[j]->join();
            api_pool.stop();
            core.stop();
            if (nodes) nodes->stop();
            segment.remove();
            return 1;
        }
    }

    // Redis: where, not the URL (it may carry a password).
    const std::string where = nodes ? "node " + std::to_string(config.node_id) + " on " + nodes->master_address()
                                    : config.data_dir + " (durability " + config.durability + ")";
    log::write(log::Level::Info, "limaoim",
               "listening on %s:%u, WebSocket %s, HTTP API on %s, mode %s, %zu tokens, %zu channels, store %s "
                 "%s, stats in %s (read it with: limaoim-stat --instance %s)",
                 config.addr.c_str(), config.port, serve_ws ? config.ws_addr.c_str() : "off",
                 serve_api ? config.http_addr.c_str() : "off", to_string(config.mode), tokens.size(),
                 core.channels().size(), store->engine(), where.c_str(), segment.path().c_str(), info.instance.c_str());

    int signal_number = 0;
    sigwait(&signals, &signal_number);
    log::write(log::Level::Info, "limaoim", "%s: disconnecting clients and stopping (at most %u ms)",
                 signal_number == SIGINT ? "SIGINT" : "SIGTERM", config.shutdown_timeout_ms);
    // Workers first (clients are told and closed; SENDs still arriving are
    // committed and answered meanwhile), the API's threads while they drain,
    // then the core commits and fans out what is left (the workers' inboxes
    // outlive their threads, so late results have somewhere to go).
    for (auto& worker : workers) worker->request_stop(config.shutdown_timeout_ms);
    api_pool.stop();  // API requests queued or running finish while the workers drain
    for (auto& worker : workers) worker->join();
    if (nodes) nodes->stop_receiving();  // nothing more from the others for a core that stops
    core.stop();
    if (nodes) nodes->stop();  // after the core's last messages went to the other nodes
    if (webhook_sender) webhook_sender->stop();  // after the core's last events; the notify queue stays on disk
    segment.remove();
    log::write(log::Level::Info, "limaoim", "stopped");
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    std::string error;
    bool exit_now = false;
    std::optional<limaoim::Config> config = limaoim::load_config(argc, argv, error, exit_now);
    if (exit_now) return 0;
    if (!config || !limaoim::read_secret_files(*config, error)) {
        log::write(log::Level::Error, "limaoim", "%s", error.c_str());
        return 2;
    }
    if (config->check_only) {
        // The checks of a start, then nothing: no store, port or stats segment is opened.
        if (const std::string problem = start_problem(*config); !problem.empty()) {
            log::write(log::Level::Error, "config", "%s", problem.c_str());
            return 2;
        }
        std::printf("config OK: %s\n", limaoim::summary(*config).c_str());
        return 0;
    }
    return run(*config);
}
