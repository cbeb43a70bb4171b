// limaoim: configuration, capacity plan, store, stats segment, the IM core's
// threads, one worker thread per ring (each with the LiMaoIM listener and
// the HTTP API listener), and an orderly stop on SIGTERM/SIGINT.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <span>
#include <string>
#include <utility>
#include <cstdio>
#include <memory>
#include <thread>
#include <vector>

#include "limaoim/config.h"
#include "limaoim/gateway/gateway.h"
#include "limaoim/http/api.h"
#include "limaoim/http/server.h"
#include "limaoim/im/core.h"
#include "limaoim/net/blocking_pool.h"
#include "limaoim/net/capacity.h"
#include "limaoim/net/worker.h"
#include "limaoim/stats/segment.h"
#include "limaoim/store/store.h"
#include "limaoim/store/token_store.h"

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

std::vector<std::string> all_close_reason_names() {
    std::vector<std::string> names = gateway::close_reason_names();
    const std::span<const char* const> http_names = http::http_close_reason_names();
    names.resize(std::max(names.size(), size_t(http::kFirstHttpCloseReason) + http_names.size()));
    for (size_t i = 0; i < http_names.size(); ++i) names[http::kFirstHttpCloseReason + i] = http_names[i];
    return names;
}

int run(const Config& config) {
    const uint64_t nofile = net::raise_nofile_limit();
    const net::CapacityPlan plan = net::plan_capacity(config.max_conns, config.workers, nofile,
                                                      std::thread::hardware_concurrency(), config.recv_buffers);
    std::fprintf(stderr, "limaoim: %s\n", plan.summary.c_str());
    if (!plan.reaches_max_conns) std::fprintf(stderr, "limaoim: warning: %s\n", plan.problem.c_str());

    std::string error;
    if (config.store != "embedded") {
        std::fprintf(stderr, "limaoim: store %s: only the embedded store is built into this version\n",
                     config.store.c_str());
        return 2;
    }
    const bool serve_api = !config.http_addr.empty();
    const auto [http_host, http_port] = serve_api ? split_host_port(config.http_addr) : std::pair<std::string, uint16_t>();
    error = net::probe_listen_port(config.addr, config.port, "--port");
    if (error.empty() && serve_api) error = net::probe_listen_port(http_host, http_port, "--http-addr");
    if (!error.empty()) {
        std::fprintf(stderr, "limaoim: %s\n", error.c_str());
        return 1;
    }
    std::unique_ptr<store::Store> store = store::open_embedded(config.data_dir, error);
    if (!store) {
        std::fprintf(stderr, "limaoim: %s\n", error.c_str());
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
        std::fprintf(stderr, "limaoim: %s\n", error.c_str());
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
    im::Core core(*store, tokens, shared.directory, segment.pipeline(), core_options);
    if (!core.load(error)) {
        std::fprintf(stderr, "limaoim: %s\n", error.c_str());
        segment.remove();
        return 1;
    }
    for (const TokenEntry& t : config.tokens) tokens.set(t.uid, t.device_flag, t.token);
    http::Api api(core, config.http_secret);
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
    shared.log_connections = config.mode == Mode::Debug || config.verbose;

    std::vector<std::unique_ptr<net::Worker>> workers;
    std::vector<net::Worker*> peers;
    std::vector<std::unique_ptr<gateway::Gateway>> gateways;
    std::vector<std::unique_ptr<http::Server>> http_servers;
    http::ServerOptions http_options;
    http_options.body_limit = config.http_body_limit;
    // One response is queued whole (a session's send queue takes one packet
    // past --send-cap); a page of big messages over this is refused with 500.
    http_options.max_response_bytes = 16u << 20;
    for (uint32_t i = 0; i < plan.workers; ++i) {
        net::WorkerOptions options;
        options.index = i;
        options.slots = plan.slots_per_worker;
        options.recv_buffers = plan.recv_buffers_per_worker;
        options.recv_buffer_size = config.recv_buffer_size;
        options.send_cap = config.send_cap;
        options.reassembly_budget = config.reassembly_budget / plan.workers;
        options.recv_mode = config.recv_mode == "poll" ? net::RecvMode::PollThenRecv : net::RecvMode::Multishot;
        workers.push_back(std::make_unique<net::Worker>(options, limits, segment.worker(i), segment.conns(i)));
        peers.push_back(workers.back().get());
    }
    for (auto& worker : workers) {
        gateways.push_back(std::make_unique<gateway::Gateway>(*worker, *worker, shared));
        net::ListenerOptions tcp;
        tcp.addr = config.addr;
        tcp.port = config.port;
        tcp.handler = gateways.back().get();
        tcp.sndbuf = config.sndbuf;
        // Each worker takes its share of the server-wide limit.
        tcp.max_pending = (config.max_pending_handshakes + plan.workers - 1) / plan.workers;
        worker->add_listener(tcp);
        worker->set_envelope_handler(gateway::kEnvelopeFamily, gateways.back().get());

        if (serve_api) {
            http_servers.push_back(std::make_unique<http::Server>(*worker, *worker, api_pool, api, http_options));
            net::ListenerOptions api_listener;
            api_listener.addr = http_host;
            api_listener.port = http_port;
            api_listener.handler = http_servers.back().get();
            api_listener.backlog = 1024;  // max_pending stays 0: HTTP connections never "establish"
            worker->add_listener(api_listener);
            worker->set_envelope_handler(http::kEnvelopeFamily, http_servers.back().get());
        }
        worker->set_peers(peers);
    }
    core.set_workers(peers, gateway::gateway_envelope_kinds());
    if (!core.start(error)) {
        std::fprintf(stderr, "limaoim: %s\n", error.c_str());
        segment.remove();
        return 1;
    }

    // Workers inherit this mask: only the main thread takes the signals.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    signal(SIGPIPE, SIG_IGN);

    for (size_t i = 0; i < workers.size(); ++i) {
        if (!workers[i]->start(error)) {
            std::fprintf(stderr, "limaoim: %s\n", error.c_str());
            for (size_t j = 0; j < i; ++j) workers[j]->request_stop(0);
            for (size_t j = 0; j < i; ++j) workers[j]->join();
            api_pool.stop();
            core.stop();
            segment.remove();
            return 1;
        }
    }

    std::fprintf(stderr,
                 "limaoim: listening on %s:%u, HTTP API on %s, mode %s, %zu tokens, %zu channels, store %s "
                 "in %s (durability %s), stats in %s (read it with: limaoim-stat --instance %s)\n",
                 config.addr.c_str(), config.port, serve_api ? config.http_addr.c_str() : "off", to_string(config.mode), tokens.size(),
                 core.channels().size(), store->engine(), config.data_dir.c_str(), config.durability.c_str(),
                 segment.path().c_str(), info.instance.c_str());

    int signal_number = 0;
    sigwait(&signals, &signal_number);
    std::fprintf(stderr, "limaoim: %s: disconnecting clients and stopping (at most %u ms)\n",
                 signal_number == SIGINT ? "SIGINT" : "SIGTERM", config.shutdown_timeout_ms);
    // Workers first (clients are told and closed; SENDs still arriving are
    // committed and answered meanwhile), the API's threads while they drain,
    // then the core commits and fans out what is left (the workers' inboxes
    // outlive their threads, so late results have somewhere to go).
    for (auto& worker : workers) worker->request_stop(config.shutdown_timeout_ms);
    api_pool.stop();  // API requests queued or running finish while the workers drain
    for (auto& worker : workers) worker->join();
    core.stop();
    segment.remove();
    std::fprintf(stderr, "limaoim: stopped\n");
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    std::string error;
    bool exit_now = false;
    std::optional<limaoim::Config> config = limaoim::load_config(argc, argv, error, exit_now);
    if (exit_now) return 0;
    if (!config) {
        std::fprintf(stderr, "limaoim: %s\n", error.c_str());
        return 2;
    }
    return run(*config);
}
