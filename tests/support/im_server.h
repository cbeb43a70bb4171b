// The limaoim server with messaging on: a ServerProcess plus a data directory
// (--data-dir, a fresh mkdtemp one unless given) and an HTTP API listener on a
// free loopback port (--http-addr 127.0.0.1:P). Test mode by default.
//
// A data directory the ImServer made is removed when it is destroyed unless
// keep_data_dir() was called; one passed in belongs to the caller unless
// set_remove_data_dir(true). restart() starts a new process on the same
// directory (new TCP and HTTP ports: read port()/http_port() again).
#pragma once

#include <csignal>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "limaoim/proto/dialect.h"
#include "server_process.h"

namespace limaoim::testing {

class RedisServer;

// The cluster secret a Redis-backed ImServer gets unless its arguments
// give one (a Redis store requires it).
inline constexpr const char* kTestClusterSecret = "limaoim-test-cluster-secret";

class ImServer {
public:
    explicit ImServer(std::vector<std::string> extra_args = {}, std::string data_dir = "", bool test_mode = true);
    ~ImServer();
    ImServer(const ImServer&) = delete;
    ImServer& operator=(const ImServer&) = delete;

    // The process is up, and both the TCP and the HTTP port accept.
    bool started() const { return started_; }
    uint16_t port() const { return process_ ? process_->port() : 0; }
    uint16_t http_port() const { return http_port_; }
    uint16_t ws_port() const { return process_ ? process_->ws_port() : 0; }
    uint16_t wk_port() const { return process_ ? process_->wk_port() : 0; }
    // Where clients of `dialect` connect over TCP.
    uint16_t port(const proto::Dialect& dialect) const {
        return dialect.id == proto::DialectId::WuKongIM ? wk_port() : port();
    }
    const std::string& data_dir() const { return data_dir_; }
    ServerProcess& process() { return *process_; }

    void keep_data_dir() { remove_dir_ = false; }
    void set_remove_data_dir(bool remove) { remove_dir_ = remove; }

    // Stops the process (SIGKILL: a crash; SIGTERM: a clean stop) and starts
    // a new one on the same data directory with the same flags. Returns
    // started(). `exit_status` (optional) gets stop()'s result.
    bool restart(int signal_number = SIGKILL, int stop_timeout_ms = 10000,
                 std::optional<int>* exit_status = nullptr);
    std::optional<int> stop(int signal_number, int timeout_ms, int* elapsed_ms = nullptr) {
        return process_->stop(signal_number, timeout_ms, elapsed_ms);
    }
    std::string log() const;

    // The Redis this ImServer started for itself (LIMAOIM_TEST_STORE=redis),
    // else nullptr.
    RedisServer* redis() { return redis_.get(); }
    // LIMAOIM_TEST_STORE=redis is set.
    static bool redis_from_env();

    // Recursive remove (std::filesystem::remove_all), errors ignored.
    static void remove_dir(const std::string& path);

private:
    void start();

    std::vector<std::string> extra_args_;
    bool test_mode_;
    std::string data_dir_;
    bool remove_dir_;
    uint16_t http_port_ = 0;
    bool started_ = false;
    std::unique_ptr<RedisServer> redis_;  // before process_: destroyed after it
    std::unique_ptr<ServerProcess> process_;
};

}  // namespace limaoim::testing
