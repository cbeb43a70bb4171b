#include "im_server.h"

#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "ports.h"
#include "redis_server.h"

namespace limaoim::testing {

ImServer::ImServer(std::vector<std::string> extra_args, std::string data_dir, bool test_mode)
    : extra_args_(std::move(extra_args)), test_mode_(test_mode), data_dir_(std::move(data_dir)),
      remove_dir_(data_dir_.empty()) {
    bool store_given = false;
    for (const std::string& a : extra_args_)
        if (a == "--store" || a.starts_with("--store=")) store_given = true;
    if (!store_given && redis_from_env()) {
        redis_ = std::make_unique<RedisServer>();
        if (!redis_->started()) return;
        extra_args_.insert(extra_args_.begin(), {"--store", redis_->url()});
    }
    bool on_redis = false, secret_given = false;
    for (const std::string& a : extra_args_) {
        on_redis = on_redis || a.starts_with("redis://") || a.starts_with("redis+sentinel://") ||
                   a.starts_with("--store=redis");
        secret_given = secret_given || a.starts_with("--cluster-secret");
    }
    if (on_redis && !secret_given) extra_args_.insert(extra_args_.end(), {"--cluster-secret", kTestClusterSecret});
    if (data_dir_.empty()) {
        char tmpl[] = "/tmp/limaoim-it-data-XXXXXX";
        if (!mkdtemp(tmpl)) return;
        data_dir_ = tmpl;
    }
    start();
}

ImServer::~ImServer() {
    process_.reset();  // SIGKILL if still running
    if (remove_dir_ && !data_dir_.empty()) remove_dir(data_dir_);
}

bool ImServer::redis_from_env() {
    const char* store = getenv("LIMAOIM_TEST_STORE");
    return store && std::string(store) == "redis";
}

std::string ImServer::log() const {
    std::string out;
    if (redis_ && !redis_->started()) out = "LIMAOIM_TEST_STORE=redis: the redis-server did not start:\n" + redis_->log();
    if (process_) out += process_->log();
    return out;
}

void ImServer::remove_dir(const std::string& path) {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
}

void ImServer::start() {
    started_ = false;
    http_port_ = free_port();
    std::vector<std::string> args = {"--data-dir", data_dir_, "--http-addr", "127.0.0.1:" + std::to_string(http_port_)};
    args.insert(args.end(), extra_args_.begin(), extra_args_.end());
    process_.reset();  // the old process (if any) first: it holds the store's lock
    process_ = std::make_unique<ServerProcess>(args, test_mode_);
    if (!process_->started()) return;
    // ServerProcess waited for the TCP listener; the HTTP one may come a moment later.
    for (int i = 0; i < 250 && process_->running(); ++i) {
        if (port_accepts(http_port_)) {
            started_ = true;
            return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
}

bool ImServer::restart(int signal_number, int stop_timeout_ms, std::optional<int>* exit_status) {
    if (redis_ && !redis_->started()) return false;
    if (process_ && process_->running()) {
        auto status = process_->stop(signal_number, stop_timeout_ms);
        if (exit_status) *exit_status = status;
    }
    start();
    return started_;
}

}  // namespace limaoim::testing
