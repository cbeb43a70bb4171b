// A redis-server (or redis-sentinel) of a test's own: a free loopback port,
// a temporary directory removed afterwards, AOF with appendfsync always.
// Tests of the Redis engine fail, never skip, when it cannot start.
#pragma once

#include <sys/types.h>

#include <csignal>
#include <cstdint>
#include <string>
#include <vector>

namespace limaoim::testing {

class RedisServer {
public:
    // Extra flags after the defaults, e.g. {"--replicaof", "127.0.0.1", "6379"}.
    explicit RedisServer(std::vector<std::string> extra_args = {});
    ~RedisServer();  // SIGKILL if still running, removes its directory
    RedisServer(const RedisServer&) = delete;
    RedisServer& operator=(const RedisServer&) = delete;

    bool started() const { return pid_ > 0; }
    uint16_t port() const { return port_; }
    pid_t pid() const { return pid_; }
    std::string url(uint32_t db = 0) const;  // redis://127.0.0.1:PORT/DB
    // Sends the signal and waits for the process to exit.
    bool stop(int signal_number = SIGTERM);
    // Starts again on the same port and directory (its AOF is read back);
    // true once it answers PING.
    bool start();
    std::string log() const;
    // redis-cli -p PORT ARGS (ARGS as a shell would split them); its stdout.
    std::string cli(const std::string& args) const;

private:
    std::vector<std::string> extra_args_;
    std::string dir_;
    uint16_t port_ = 0;
    pid_t pid_ = -1;
};

class RedisSentinel {
public:
    RedisSentinel(uint16_t master_port, std::string master_name = "mymaster", int quorum = 1,
                  int down_after_ms = 1000, int failover_timeout_ms = 3000);
    ~RedisSentinel();
    RedisSentinel(const RedisSentinel&) = delete;
    RedisSentinel& operator=(const RedisSentinel&) = delete;

    bool started() const { return pid_ > 0; }
    uint16_t port() const { return port_; }
    // redis+sentinel://127.0.0.1:PORT/MASTER/DB
    std::string url_for(const std::string& master, uint32_t db = 0) const;
    std::string log() const;

private:
    std::string dir_;
    uint16_t port_ = 0;
    pid_t pid_ = -1;
};

}  // namespace limaoim::testing
