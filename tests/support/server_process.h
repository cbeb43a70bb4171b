// Starts the real limaoim binary on a free loopback port for one test, and
// stops it. Its stderr goes to a temporary file, printed if a check fails.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ports.h"

namespace limaoim::testing {

class ServerProcess {
public:
    // Extra flags after the defaults (--addr 127.0.0.1 --port P --mode test
    // --instance it-P, and free loopback ports for --http-addr, --ws-addr
    // and --wk-addr unless given); later flags override earlier ones (a --port given is
    // then port()). LIMAOIM_TEST_IO_BACKEND in the environment adds
    // --io-backend with its value unless the test gives one. `in_child` runs
    // in the forked child before the exec (a test that confines the server).
    explicit ServerProcess(std::vector<std::string> extra_args = {}, bool test_mode = true,
                           void (*in_child)() = nullptr);
    ~ServerProcess();  // SIGKILL if still running, removes its segment
    ServerProcess(const ServerProcess&) = delete;
    ServerProcess& operator=(const ServerProcess&) = delete;

    bool started() const { return started_; }
    uint16_t port() const { return port_; }
    uint16_t ws_port() const { return ws_port_; }  // 0 when the test gave its own --ws-addr
    uint16_t wk_port() const { return wk_port_; }  // WKProto over TCP; 0 when the test gave its own --wk-addr
    pid_t pid() const { return pid_; }
    const std::string& instance() const { return instance_; }

    // SIGTERM (or another signal) and wait; returns the exit status
    // (nullopt: still running after timeout_ms, or killed by a signal).
    std::optional<int> stop(int signal_number, int timeout_ms, int* elapsed_ms = nullptr);
    bool running() const;
    // The exit status once running() saw the process end by itself (a server
    // that refused to start); nullopt while it runs or after a signal.
    std::optional<int> exit_status() const { return exit_status_; }
    std::string log() const;

    // limaoim-stat --json for this instance (null json on failure).
    nlohmann::json stat_json() const;
    // A gauge or counter path like "gauges.authenticated" or "counters.closed.auth_timeout".
    int64_t stat(const std::string& dotted_path) const;
    // Polls stat(path) until it equals `value` or the timeout passes; returns the last value.
    int64_t wait_stat(const std::string& dotted_path, int64_t value, int timeout_ms) const;

    size_t rss_kib() const;

private:
    pid_t pid_ = -1;
    uint16_t port_ = 0;
    uint16_t ws_port_ = 0;
    uint16_t wk_port_ = 0;
    std::string instance_;
    std::string log_path_;
    std::string own_data_dir_;  // made for this server (no --data-dir given), removed with it
    bool started_ = false;
    mutable std::optional<int> exit_status_;
};

// In a child before exec (ServerProcess's in_child): io_uring_setup,
// io_uring_enter and io_uring_register fail with EPERM from now on, as under
// Docker's default seccomp profile (since Docker 25) and containerd's.
void forbid_io_uring();

// Runs a command, returns (exit status, stdout).
std::pair<int, std::string> run_command(const std::string& command);

// The programs the tests start: this build's limaoim and limaoim-stat, or
// the ones the environment names in LIMAOIM_SERVER_BIN and LIMAOIM_STAT_BIN
// (CI runs this unsanitized client against the ASan tree's server:
// tools/setup.sh). Read at each call, so a test may change them.
std::string server_binary();
std::string stat_binary();
// Whether server_binary() is built with AddressSanitizer, which parks freed
// memory in its quarantine: RSS bounds must allow for it.
bool server_is_sanitized();

}  // namespace limaoim::testing
