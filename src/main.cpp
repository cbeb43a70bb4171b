// limaoim: configuration, capacity plan, stats segment, one worker thread per
// ring, and an orderly stop on SIGTERM/SIGINT.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <thread>
#include <vector>

#include "limaoim/config.h"
#include "limaoim/gateway/gateway.h"
#include "limaoim/net/capacity.h"
#include "limaoim/net/worker.h"
#include "limaoim/stats/segment.h"
#include "limaoim/store/token_store.h"

namespace {

using namespace limaoim;

int run(const Config& config) {
    const uint64_t nofile = net::raise_nofile_limit();
    const net::CapacityPlan plan = net::plan_capacity(config.max_conns, config.workers, nofile,
                                                      std::thread::hardware_concurrency(), config.recv_buffers);
    std::fprintf(stderr, "limaoim: %s\n", plan.summary.c_str());
    if (!plan.reaches_max_conns) std::fprintf(stderr, "limaoim: warning: %s\n", plan.problem.c_str());

    store::TokenStore tokens;
    for (const TokenEntry& t : config.tokens) tokens.set(t.uid, t.device_flag, t.token);

    std::string error = net::probe_listen_port(config.addr, config.port, "--port");
    if (!error.empty()) {
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
    info.close_reason_names = gateway::close_reason_names();
    if (!segment.create(info, error)) {
        std::fprintf(stderr, "limaoim: %s\n", error.c_str());
        return 1;
    }

    net::SharedLimits limits;
    limits.max_conns = config.max_conns;
    gateway::GatewayShared shared;
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
        worker->set_envelope_handler(gateways.back().get());
        worker->set_peers(peers);
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
            segment.remove();
            return 1;
        }
    }

    std::fprintf(stderr,
                 "limaoim: listening on %s:%u, mode %s, %zu tokens, stats in %s (read it with: limaoim-stat "
                 "--instance %s)\n",
                 config.addr.c_str(), config.port, to_string(config.mode), tokens.size(), segment.path().c_str(),
                 info.instance.c_str());

    int signal_number = 0;
    sigwait(&signals, &signal_number);
    std::fprintf(stderr, "limaoim: %s: disconnecting clients and stopping (at most %u ms)\n",
                 signal_number == SIGINT ? "SIGINT" : "SIGTERM", config.shutdown_timeout_ms);
    for (auto& worker : workers) worker->request_stop(config.shutdown_timeout_ms);
    for (auto& worker : workers) worker->join();
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
