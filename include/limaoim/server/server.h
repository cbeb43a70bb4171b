// The server: every part of limaoim wired together, started in order and
// stopped in the reverse order. main() loads the configuration and calls run().
//
// A start is a list of steps (run() reads as that list); each one builds
// what the next needs and says why it cannot. Members are declared in the
// order the old single function declared them (the other nodes before the
// webhook sender, though joined last: see there), so that what a start
// built is destroyed in the reverse order; stop() first stops the threads
// that were started.
#pragma once

#include <signal.h>

#include <memory>
#include <string>
#include <vector>

#include "limaoim/config.h"
#include "limaoim/gateway/gateway.h"
#include "limaoim/im/core.h"
#include "limaoim/im/token_cache.h"
#include "limaoim/net/capacity.h"
#include "limaoim/net/worker.h"
#include "limaoim/stats/segment.h"
#include "limaoim/store/store.h"

namespace limaoim {

namespace cluster { class RedisCluster; }
namespace webhook { class Sender; }
namespace datasource { class HttpDatasource; }
namespace http { class Api; class Server; }
namespace net { class BlockingPool; }
namespace ws { class WebSocketTransport; }

// What --check-config checks beyond load_config: empty when nothing.
std::string start_problem(const Config& config);

class Server {
public:
    explicit Server(const Config& config);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    // Starts, serves until SIGTERM or SIGINT, stops. The exit status: 0
    // stopped by a signal, 1 could not start, 2 refused the configuration.
    int run();

private:
    // The steps of run(), in order. Each logs why it failed.
    void block_signals();
    bool plan_capacity();
    bool probe_ports();
    bool open_store();
    bool create_stats();
    bool load_core();
    void connect_business_server();
    void build_api();
    void build_workers();
    void join_cluster();
    bool start_threads();
    void log_listening() const;
    void wait_for_signal();
    // Stops what started (workers, API pool, the core's threads, the
    // cluster's, the webhook's) in the order that loses nothing, then
    // removes the stats segment. Safe after a failed start; runs once.
    void stop();

    const Config& config_;
    sigset_t signals_{};
    net::CapacityPlan plan_;
    bool serve_api_ = false;
    std::string http_host_;
    uint16_t http_port_ = 0;
    // Where clients connect: LiMaoIM's TCP listener always, the others
    // (LiMaoIM WebSocket, WuKongIM TCP and WebSocket) when configured.
    struct ClientListener {
        const char* option;  // the option that set it, for messages
        std::string host;
        uint16_t port = 0;
        proto::DialectId dialect = proto::DialectId::LiMaoIM;
        bool websocket = false;
    };
    std::vector<ClientListener> client_listeners_;

    std::unique_ptr<store::Store> store_;
    stats::Segment segment_;
    bool segment_created_ = false;
    im::TokenCache tokens_;
    gateway::GatewayShared shared_;
    std::unique_ptr<im::Core> core_;
    // Before the webhook sender, whose thread may still ask the other nodes
    // for presence until it is destroyed.
    std::unique_ptr<cluster::RedisCluster> nodes_;
    std::unique_ptr<webhook::Sender> webhook_sender_;
    std::unique_ptr<datasource::HttpDatasource> business_datasource_;
    std::unique_ptr<http::Api> api_;
    std::unique_ptr<net::BlockingPool> api_pool_;
    net::SharedLimits limits_;
    std::vector<std::unique_ptr<net::Worker>> workers_;
    std::vector<std::unique_ptr<gateway::Gateway>> gateways_;
    std::vector<std::unique_ptr<ws::WebSocketTransport>> websockets_;
    std::vector<std::unique_ptr<http::Server>> http_servers_;

    bool core_started_ = false;
    size_t workers_started_ = 0;
    bool serving_ = false;  // every thread started
    bool stopped_ = false;
};

}  // namespace limaoim
