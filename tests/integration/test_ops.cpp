// What operations see of the real binary: GET /metrics (checked by promtool),
// GET /health (200; 503 naming the webhook's full queue) and --check-config
// (which opens no store, port or stats segment).
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include "client.h"
#include "http_client.h"
#include "im_server.h"
#include "server_process.h"

using namespace limaoim::testing;
using nlohmann::json;

namespace {

bool exists(const std::string& path) {
    struct stat st;
    return lstat(path.c_str(), &st) == 0;
}

std::string scratch(const std::string& tag) {
    return "/tmp/limaoim-it-ops-" + std::to_string(getpid()) + "-" + tag;
}

}  // namespace

TEST_CASE("GET /metrics is Prometheus text that promtool accepts; GET /health is 200 on a healthy server") {
    ImServer server;
    REQUIRE_MESSAGE(server.started(), server.log());

    HttpResult health = http_request(server.http_port(), "GET", "/health", "");
    CHECK_MESSAGE(health.status == 200, health.body);
    CHECK(json::parse(health.body, nullptr, false) == json{{"status", 200}});

    HttpResult metrics = http_request(server.http_port(), "GET", "/metrics", "");
    REQUIRE_MESSAGE(metrics.status == 200, metrics.error << metrics.body);
    CHECK(metrics.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8");
    const auto has = [&](const std::string& text) { return metrics.body.find(text) != std::string::npos; };
    // The original's figures (SERVER.md §14) and the server's own.
    CHECK(has("\nlimaoim_connections "));
    CHECK(has("\nlimaoim_bytes_in_total "));
    CHECK(has("\nlimaoim_packets_out_total{type=\"connack\"} "));
    CHECK(has("limaoim_info{stats_instance=\"" + server.process().instance() + "\""));
    CHECK(has("\nlimaoim_server_running 1\n"));
    CHECK(has("\nlimaoim_worker_loop_age_seconds{worker=\"0\"} "));
    CHECK(has("\n# TYPE limaoim_webhook_notify_queue gauge\n"));

    if (std::system("command -v promtool >/dev/null 2>&1") != 0) {
        MESSAGE("SKIPPED: promtool is not installed (apt-get install prometheus); /metrics not linted");
        return;
    }
    const std::string path = scratch("metrics.txt");
    std::ofstream(path) << metrics.body;
    auto [status, lint] = run_command("promtool check metrics < " + path + " 2>&1");
    unlink(path.c_str());
    CHECK_MESSAGE(status == 0, lint);
    CHECK_MESSAGE(lint.empty(), lint);
}

TEST_CASE("GET /health is 503 and says why when the webhook's msg.notify queue is full") {
    // A webhook nobody listens on, and room for one event.
    ImServer server({"--webhook", "http://127.0.0.1:" + std::to_string(free_port()) + "/hook",
                     "--webhook-queue-max", "1", "--webhook-timeout-ms", "500"});
    REQUIRE_MESSAGE(server.started(), server.log());
    for (int i = 0; i < 3; ++i) {
        int status = 0;
        http_json(server.http_port(), "POST", "/message/send",
                  {{"from_uid", "ops-a"}, {"channel_id", "ops-b"}, {"channel_type", 1}, {"payload", "aGk="}}, &status);
        CHECK(status == 200);
    }
    HttpResult health;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    do {
        health = http_request(server.http_port(), "GET", "/health", "");
        if (health.status == 503) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    } while (std::chrono::steady_clock::now() < deadline);
    REQUIRE_MESSAGE(health.status == 503, health.body << "\n" << server.log());
    const json body = json::parse(health.body, nullptr, false);
    CHECK(body["status"] == 503);
    CHECK_MESSAGE(body["msg"].get<std::string>().find("webhook") != std::string::npos, health.body);
}

TEST_CASE("--check-config FILE: config OK and exit 0, or the error and exit 2; nothing is opened") {
    const std::string file = scratch("ok.toml");
    const std::string data_dir = scratch("data");
    const std::string instance = "it-ops-check-" + std::to_string(getpid());
    std::ofstream(file) << "port = " << free_port() << "\ninstance = \"" << instance << "\"\ndata_dir = \"" << data_dir
                        << "\"\nhttp_addr = \"0.0.0.0:" << free_port() << "\"\nhttp_secret = \"t0p-s3cret\"\n";
    auto [ok_status, ok] = run_command(server_binary() + " --check-config " + file + " 2>&1");
    CHECK_MESSAGE(ok_status == 0, ok);
    CHECK_MESSAGE(ok.rfind("config OK: mode release, listen 0.0.0.0:", 0) == 0, ok);
    CHECK(ok.find("t0p-s3cret") == std::string::npos);
    CHECK_FALSE(exists(data_dir));
    CHECK_FALSE(exists("/dev/shm/limaoim-" + instance));

    // The check after every source (http_secret off loopback), as at a start.
    std::ofstream(file) << "http_addr = \"0.0.0.0:1516\"\n";
    auto [open_status, open_api] = run_command(server_binary() + " --check-config " + file + " 2>&1");
    CHECK(open_status == 2);
    CHECK_MESSAGE(open_api.find("set http_secret") != std::string::npos, open_api);
    // A Redis store needs the cluster secret; the URL's password is never shown.
    const std::string secret = "LIMAOIM_CLUSTER_SECRET=0123456789abcdef ";
    auto [store_status, store] = run_command("LIMAOIM_STORE=redis://limaoim:s3cr3t-pw@127.0.0.1:6379/0 " +
                                             server_binary() + " --check-config " + file +
                                             " --http-addr 127.0.0.1:1516 2>&1");
    CHECK(store_status == 2);
    CHECK_MESSAGE(store.find("cluster_secret") != std::string::npos, store);
    CHECK(store.find("s3cr3t-pw") == std::string::npos);
    auto [port_status, bad_port] = run_command(secret + "LIMAOIM_STORE=redis://:s3cr3t-pw@127.0.0.1:x/0 " +
                                               server_binary() + " --check-config " + file +
                                               " --http-addr 127.0.0.1:1516 2>&1");
    CHECK(port_status == 2);
    CHECK_MESSAGE(bad_port.find("no valid port") != std::string::npos, bad_port);
    CHECK(bad_port.find("s3cr3t-pw") == std::string::npos);
    // A good URL passes the check: nothing is connected by --check-config.
    auto [good_status, good] = run_command(secret + "LIMAOIM_STORE=redis://limaoim:s3cr3t-pw@127.0.0.1:1/0 " +
                                           server_binary() + " --check-config " + file +
                                           " --http-addr 127.0.0.1:1516 2>&1");
    CHECK_MESSAGE(good_status == 0, good);
    CHECK(good.find("store redis://127.0.0.1:1 node 1") != std::string::npos);
    CHECK(good.find("s3cr3t-pw") == std::string::npos);
    unlink(file.c_str());
    auto [missing_status, missing] = run_command(server_binary() + " --check-config " + file + " 2>&1");
    CHECK(missing_status == 2);
    CHECK(missing.find("cannot read") != std::string::npos);
}

namespace {

// Every entry under `dir` (and `dir` itself) that the group or others may use.
std::string open_to_others(const std::string& dir) {
    std::string found;
    const auto check = [&](const std::filesystem::path& path) {
        struct stat st;
        if (lstat(path.c_str(), &st) != 0) return;
        if ((st.st_mode & 077) != 0) found += path.string() + " " + std::to_string(st.st_mode & 07777) + "; ";
    };
    check(dir);
    for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) check(entry.path());
    return found;
}

mode_t mode_of(const std::string& path) {
    struct stat st{};
    lstat(path.c_str(), &st);
    return st.st_mode & 07777;
}

}  // namespace

TEST_CASE("the data directory and the stats segment are private (0700, 0600) whatever the umask") {
    const std::string root = scratch("private");
    std::filesystem::remove_all(root);
    REQUIRE(mkdir(root.c_str(), 0755) == 0);
    const std::string fresh = root + "/new/store", existing = root + "/old";
    REQUIRE(mkdir(existing.c_str(), 0755) == 0);
    REQUIRE(chmod(existing.c_str(), 0755) == 0);
    // What an operator's shell might have: everything readable, even writable, by all.
    const mode_t saved = umask(0);
    ServerProcess created({"--data-dir", fresh, "--http-addr", "127.0.0.1:" + std::to_string(free_port())});
    ServerProcess reopened({"--data-dir", existing});
    umask(saved);
    REQUIRE_MESSAGE(created.started(), created.log());
    REQUIRE_MESSAGE(reopened.started(), reopened.log());

    CHECK(mode_of(fresh) == 0700);
    CHECK_MESSAGE(open_to_others(fresh).empty(), open_to_others(fresh));
    CHECK(mode_of("/dev/shm/limaoim-" + created.instance()) == 0600);
    CHECK(mode_of(existing) == 0700);
    CHECK_MESSAGE(open_to_others(existing).empty(), open_to_others(existing));
    CHECK_MESSAGE(reopened.log().find("was mode 0755 (readable by other users): changed to 0700") != std::string::npos,
                  reopened.log());
    // Loopback listeners: no test-mode warning.
    CHECK(created.log().find("--mode test on") == std::string::npos);
    created.stop(SIGTERM, 5000);
    reopened.stop(SIGTERM, 5000);
    std::filesystem::remove_all(root);
}

TEST_CASE("GET /health does not write through a symlink planted at its probe file") {
    // The probe file is the embedded engine's (the Redis engine's probe is a PING).
    if (ImServer::redis_from_env()) return;
    ImServer server;
    REQUIRE_MESSAGE(server.started(), server.log());
    const std::string target = scratch("health-target");
    std::ofstream(target) << "precious\n";
    const std::string probe = server.data_dir() + "/.health-probe";
    REQUIRE(symlink(target.c_str(), probe.c_str()) == 0);

    HttpResult health = http_request(server.http_port(), "GET", "/health", "");
    CHECK_MESSAGE(health.status == 503, health.body);
    CHECK_MESSAGE(health.body.find("cannot write in") != std::string::npos, health.body);
    std::ifstream in(target);
    std::string content;
    std::getline(in, content);
    CHECK(content == "precious");
    unlink(target.c_str());
}

TEST_CASE("--mode test on a non-loopback address is warned about at start, naming what is open") {
    // A port below the ephemeral range (32768-60999), free on every address:
    // a free loopback port can be any client socket's local port (tests run
    // in parallel), and 0.0.0.0 collides with each of them.
    uint16_t port = 0;
    for (int attempt = 0; attempt < 100 && port == 0; ++attempt) {
        const uint16_t candidate = uint16_t(20000 + (uint32_t(getpid()) * 7919u + uint32_t(attempt) * 104729u) % 12000u);
        const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in any{};
        any.sin_family = AF_INET;
        any.sin_port = htons(candidate);
        if (bind(fd, reinterpret_cast<sockaddr*>(&any), sizeof any) == 0) port = candidate;
        close(fd);
    }
    REQUIRE(port != 0);
    ServerProcess server({"--addr", "0.0.0.0", "--port", std::to_string(port)});
    REQUIRE_MESSAGE(server.started(), server.log());
    const std::string log = server.log();
    const std::string expected = "warn  limaoim: --mode test on 0.0.0.0:" + std::to_string(port) +
                                 ", not loopback: anyone who reaches it logs in as any uid without a token";
    CHECK_MESSAGE(log.find(expected) != std::string::npos, log);
}

TEST_CASE("control characters and invalid UTF-8 from a client reach the log escaped") {
    ServerProcess server({"--log-level", "debug"});
    REQUIRE_MESSAGE(server.started(), server.log());
    {
        Client client;
        REQUIRE(client.connect(server.port()));
        client.login("evil\nFAKE 2026 error \x1b[31mred\x7f\xff \xc3\xa9 a\\x0a", "");
    }
    const std::string escaped = "evil\\x0aFAKE 2026 error \\x1b[31mred\\x7f\\xff \xc3\xa9 a\\x5cx0a";
    std::string log;
    for (int i = 0; i < 100 && log.find(escaped) == std::string::npos; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        log = server.log();
    }
    CHECK_MESSAGE(log.find(escaped) != std::string::npos, log);
    CHECK(log.find("\nFAKE") == std::string::npos);
    CHECK(log.find('\x1b') == std::string::npos);
}
