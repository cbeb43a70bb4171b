#include "server_process.h"

#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "clock.h"
#include "ports.h"

namespace limaoim::testing {

namespace {
std::string from_environment_or(const char* variable, const char* built_in) {
    const char* value = getenv(variable);
    return value && *value ? value : built_in;
}
}  // namespace

std::pair<int, std::string> run_command(const std::string& command) {
    std::string out;
    FILE* p = popen(command.c_str(), "r");
    if (!p) return {-1, out};
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
    int status = pclose(p);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

std::string server_binary() { return from_environment_or("LIMAOIM_SERVER_BIN", LIMAOIM_SERVER_BIN); }
std::string stat_binary() { return from_environment_or("LIMAOIM_STAT_BIN", LIMAOIM_STAT_BIN); }

bool server_is_sanitized() {
    // Every binary built with AddressSanitizer names its runtime's entry
    // point (undefined with gcc's shared runtime, defined with clang's
    // static one). Read once per binary: the ASan server is over 100 MB.
    static std::map<std::string, bool> known;
    const std::string path = server_binary();
    if (auto it = known.find(path); it != known.end()) return it->second;
    std::ifstream in(path, std::ios::binary);
    std::string bytes;
    bytes.resize(std::filesystem::file_size(path));
    in.read(bytes.data(), std::streamsize(bytes.size()));
    return known[path] = bytes.find("__asan_init") != std::string::npos;
}

ServerProcess::ServerProcess(std::vector<std::string> extra_args, bool test_mode, void (*in_child)()) {
    port_ = free_port();
    instance_ = "it-" + std::to_string(port_);
    log_path_ = "/tmp/limaoim-it-" + std::to_string(port_) + ".log";
    std::vector<std::string> args = {server_binary(), "--addr", "127.0.0.1", "--port", std::to_string(port_),
                                     "--instance", instance_, "--mode", test_mode ? "test" : "release"};
    // Every server gets its own store and API port unless the test chose them.
    auto given = [&](const char* flag) {
        for (const std::string& a : extra_args)
            if (a == flag || a.starts_with(std::string(flag) + "=")) return true;
        return false;
    };
    if (!given("--data-dir")) {
        char dir[] = "/tmp/limaoim-it-data-XXXXXX";
        if (mkdtemp(dir)) {
            own_data_dir_ = dir;
            args.insert(args.end(), {"--data-dir", own_data_dir_});
        }
    }
    if (!given("--http-addr")) args.insert(args.end(), {"--http-addr", "127.0.0.1:" + std::to_string(free_port())});
    // The WebSocket listener too (its default, 2122, would clash between servers).
    if (!given("--ws-addr")) {
        ws_port_ = free_port();
        args.insert(args.end(), {"--ws-addr", "127.0.0.1:" + std::to_string(ws_port_)});
    }
    // WuKongIM's clients too: every server speaks both dialects.
    if (!given("--wk-addr")) {
        wk_port_ = free_port();
        args.insert(args.end(), {"--wk-addr", "127.0.0.1:" + std::to_string(wk_port_)});
    }
    if (const char* backend = getenv("LIMAOIM_TEST_IO_BACKEND"); backend && *backend && !given("--io-backend"))
        args.insert(args.end(), {"--io-backend", backend});
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    // A test's own --port wins (the last one given): that is where it listens.
    for (size_t i = 0; i + 1 < extra_args.size(); ++i)
        if (extra_args[i] == "--port") port_ = uint16_t(std::stoul(extra_args[i + 1]));
    pid_ = fork();
    if (pid_ == 0) {
        int log = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(log, 2);
        dup2(log, 1);
        if (in_child) in_child();
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        execv(argv[0], argv.data());
        _exit(127);
    }
    auto t0 = Clock::now();
    while (ms_since(t0) < 10000) {
        if (!running()) return;
        struct stat st{};
        if (::stat(("/dev/shm/limaoim-" + instance_).c_str(), &st) == 0 && port_accepts(port_)) {
            started_ = true;
            // Wait until the probe connection above has come and gone.
            wait_stat("gauges.connections", 0, 2000);
            return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
}

ServerProcess::~ServerProcess() {
    if (running()) {
        kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
    }
    unlink(("/dev/shm/limaoim-" + instance_).c_str());
    unlink(log_path_.c_str());
    if (!own_data_dir_.empty()) {
        std::error_code ignored;
        std::filesystem::remove_all(own_data_dir_, ignored);
    }
}

bool ServerProcess::running() const {
    if (pid_ <= 0) return false;
    int status;
    const pid_t reaped = waitpid(pid_, &status, WNOHANG);
    if (reaped == pid_ && WIFEXITED(status)) exit_status_ = WEXITSTATUS(status);
    return reaped == 0;
}

void forbid_io_uring() {
    // The io_uring syscalls have the same numbers on every architecture
    // (425..427, from the unified table), so no architecture check is needed.
    sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 3, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_enter, 2, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_register, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
    };
    sock_fprog program{uint16_t(sizeof(filter) / sizeof(filter[0])), filter};
    // Without privileges a filter needs no_new_privs, as a container runtime sets.
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) != 0)
        _exit(126);
}

std::optional<int> ServerProcess::stop(int signal_number, int timeout_ms, int* elapsed_ms) {
    kill(pid_, signal_number);
    auto t0 = Clock::now();
    while (ms_since(t0) < timeout_ms) {
        int status;
        if (waitpid(pid_, &status, WNOHANG) == pid_) {
            if (elapsed_ms) *elapsed_ms = int(ms_since(t0));
            pid_ = -1;
            if (WIFEXITED(status)) return WEXITSTATUS(status);
            return std::nullopt;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return std::nullopt;
}

std::string ServerProcess::log() const {
    std::ifstream in(log_path_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

nlohmann::json ServerProcess::stat_json() const {
    auto [status, out] = run_command(stat_binary() + " --json --instance " + instance_);
    if (status != 0) return nullptr;
    return nlohmann::json::parse(out, nullptr, false);
}

int64_t ServerProcess::stat(const std::string& dotted_path) const {
    nlohmann::json j = stat_json();
    std::stringstream ss(dotted_path);
    std::string part;
    while (std::getline(ss, part, '.')) {
        if (!j.is_object() || !j.contains(part)) return -1;
        j = j[part];
    }
    return j.is_number() ? j.get<int64_t>() : -1;
}

int64_t ServerProcess::wait_stat(const std::string& dotted_path, int64_t value, int timeout_ms) const {
    auto t0 = Clock::now();
    int64_t last = stat(dotted_path);
    while (last != value && ms_since(t0) < timeout_ms) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        last = stat(dotted_path);
    }
    return last;
}

size_t ServerProcess::rss_kib() const {
    std::ifstream status("/proc/" + std::to_string(pid_) + "/status");
    std::string line;
    while (std::getline(status, line))
        if (line.rfind("VmRSS:", 0) == 0) return std::stoul(line.substr(6));
    return 0;
}

}  // namespace limaoim::testing
