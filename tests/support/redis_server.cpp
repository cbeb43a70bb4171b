#include "redis_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "ports.h"

namespace limaoim::testing {

namespace {

std::string make_temp_dir() {
    char pattern[] = "/tmp/limaoim-redis-XXXXXX";
    return mkdtemp(pattern) != nullptr ? pattern : "";
}

pid_t spawn(const std::vector<std::string>& args) {
    pid_t pid = fork();
    if (pid == 0) {
        int null = ::open("/dev/null", O_WRONLY);
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
        std::vector<char*> argv;
        for (const auto& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
        argv.push_back(nullptr);
        execvp(argv[0], argv.data());
        _exit(127);
    }
    return pid;
}

// One PING over a fresh connection; a server still loading its AOF answers
// -LOADING, one that wants a password -NOAUTH (it is up).
bool answers_ping(uint16_t port) {
    const int fd = connect_to(port);
    if (fd < 0) return false;
    bool ok = write(fd, "PING\r\n", 6) == 6;
    char reply[16] = {};
    pollfd readable{fd, POLLIN, 0};
    ok = ok && poll(&readable, 1, 1000) == 1 && read(fd, reply, sizeof reply - 1) > 0 &&
         (std::string_view(reply).starts_with("+PONG") || std::string_view(reply).starts_with("-NOAUTH"));
    close(fd);
    return ok;
}

// Until the process answers PING (~5 s at most); kills it if it never does.
bool wait_ready(pid_t& pid, uint16_t port) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (std::chrono::steady_clock::now() < deadline) {
        if (waitpid(pid, nullptr, WNOHANG) == pid) break;  // exited: bad flags, port taken
        if (answers_ping(port)) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (kill(pid, SIGKILL) == 0) waitpid(pid, nullptr, 0);
    pid = -1;
    return false;
}

void kill_and_wait(pid_t& pid, int signal_number) {
    if (pid > 0 && kill(pid, signal_number) == 0) waitpid(pid, nullptr, 0);
    pid = -1;
}

std::string read_text(const std::string& path) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

}  // namespace

RedisServer::RedisServer(std::vector<std::string> extra_args)
    : extra_args_(std::move(extra_args)), dir_(make_temp_dir()), port_(free_port()) {
    if (!dir_.empty()) start();
}

RedisServer::~RedisServer() {
    kill_and_wait(pid_, SIGKILL);
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
}

std::string RedisServer::url(uint32_t db) const {
    return "redis://127.0.0.1:" + std::to_string(port_) + "/" + std::to_string(db);
}

bool RedisServer::start() {
    if (pid_ > 0) return false;
    std::vector<std::string> args{"redis-server", "--port", std::to_string(port_), "--bind", "127.0.0.1",
                                  "--dir", dir_, "--appendonly", "yes", "--appendfsync", "always",
                                  "--save", "", "--daemonize", "no", "--logfile", dir_ + "/redis.log"};
    args.insert(args.end(), extra_args_.begin(), extra_args_.end());
    pid_ = spawn(args);
    return pid_ > 0 && wait_ready(pid_, port_);
}

bool RedisServer::stop(int signal_number) {
    if (pid_ <= 0) return false;
    kill_and_wait(pid_, signal_number);
    return true;
}

std::string RedisServer::log() const { return read_text(dir_ + "/redis.log"); }

std::string RedisServer::cli(const std::string& args) const {
    std::string output;
    FILE* pipe = popen(("redis-cli -p " + std::to_string(port_) + " " + args).c_str(), "r");
    if (pipe == nullptr) return output;
    char buffer[4096];
    for (size_t n; (n = fread(buffer, 1, sizeof buffer, pipe)) > 0;) output.append(buffer, n);
    pclose(pipe);
    return output;
}

RedisSentinel::RedisSentinel(uint16_t master_port, std::string master_name, int quorum, int down_after_ms,
                             int failover_timeout_ms)
    : dir_(make_temp_dir()), port_(free_port()) {
    if (dir_.empty()) return;
    const std::string config = dir_ + "/sentinel.conf";  // sentinel rewrites it: it must be its own
    std::ofstream(config) << "port " << port_ << "\nbind 127.0.0.1\ndir " << dir_ << "\nlogfile " << dir_
                          << "/sentinel.log\ndaemonize no\n"
                          << "sentinel monitor " << master_name << " 127.0.0.1 " << master_port << " " << quorum
                          << "\nsentinel down-after-milliseconds " << master_name << " " << down_after_ms
                          << "\nsentinel failover-timeout " << master_name << " " << failover_timeout_ms << "\n";
    pid_ = spawn({"redis-sentinel", config});
    if (pid_ > 0) wait_ready(pid_, port_);
}

RedisSentinel::~RedisSentinel() {
    kill_and_wait(pid_, SIGKILL);
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
}

std::string RedisSentinel::url_for(const std::string& master, uint32_t db) const {
    return "redis+sentinel://127.0.0.1:" + std::to_string(port_) + "/" + master + "/" + std::to_string(db);
}

std::string RedisSentinel::log() const { return read_text(dir_ + "/sentinel.log"); }

}  // namespace limaoim::testing
