// limaoim-stat reads the live server's segment.
#include <signal.h>

#include <doctest/doctest.h>

#include "client.h"
#include "server_process.h"

using namespace limaoim;
using namespace limaoim::testing;

TEST_CASE("limaoim-stat --json shows the gauges while clients are connected") {
    ServerProcess server;
    REQUIRE_MESSAGE(server.started(), server.log());
    std::vector<Client> clients;
    auto add = [&](const std::string& uid, uint8_t version, uint8_t flag) {
        Client c;
        REQUIRE(c.connect(server.port()));
        REQUIRE(c.login(uid, "t", version, flag).reason == 1);
        clients.push_back(std::move(c));
    };
    add("a1", 4, 0);
    add("a2", 3, 0);
    add("a3", 1, 0);
    add("w1", 4, 1);
    add("w2", 2, 1);
    add("s1", 4, 2);
    add("o1", 4, 9);
    Client pending;  // connected, no CONNECT yet
    REQUIRE(pending.connect(server.port()));

    CHECK(server.wait_stat("gauges.connections", 8, 2000) == 8);
    nlohmann::json j = server.stat_json();
    REQUIRE(j.is_object());
    CHECK(j["gauges"]["authenticated"] == 7);
    CHECK(j["gauges"]["pending_handshakes"] == 1);
    CHECK(j["gauges"]["device_flags"]["app"] == 3);
    CHECK(j["gauges"]["device_flags"]["web"] == 2);
    CHECK(j["gauges"]["device_flags"]["system"] == 1);
    CHECK(j["gauges"]["device_flags"]["other"] == 1);
    CHECK(j["counters"]["accepted"] >= 8);
    CHECK(j["counters"]["packets_in"]["connect"] == 7);
    CHECK(j["counters"]["packets_out"]["connack"] == 7);
    CHECK(j["counters"]["auth_ok"] == 7);
    CHECK(j["pid"] == server.pid());
    CHECK(j["mode"] == "test");

    const int64_t peer_closed = server.stat("counters.closed.peer_closed");  // the fixture's readiness probe
    clients.pop_back();  // o1 disconnects
    CHECK(server.wait_stat("gauges.authenticated", 6, 2000) == 6);
    CHECK(server.stat("counters.closed.peer_closed") == peer_closed + 1);

    auto [status, prom] = run_command(stat_binary() + " --prometheus --instance " + server.instance());
    CHECK(status == 0);
    CHECK(prom.find("limaoim_connections") != std::string::npos);

    auto [top_status, top] = run_command(stat_binary() + " --json --top 3 --instance " + server.instance());
    CHECK(top_status == 0);
    nlohmann::json tj = nlohmann::json::parse(top, nullptr, false);
    REQUIRE(tj.contains("top"));
    CHECK(tj["top"].size() == 3);
}

TEST_CASE("limaoim-stat says clearly when no server runs") {
    auto [status, out] = run_command(stat_binary() + " --instance no-such-instance 2>&1");
    CHECK(status == 2);
    CHECK(out.find("no limaoim server is running") != std::string::npos);
}

TEST_CASE("the stats segment is the instance lock: a second server is refused, a killed one's is stale") {
    ServerProcess first;
    REQUIRE_MESSAGE(first.started(), first.log());
    // Another port, so only the instance collides.
    auto [status, out] = run_command("timeout 10 " + server_binary() +
                                     " --mode test --addr 127.0.0.1 --port " + std::to_string(free_port()) +
                                     " --instance " + first.instance() + " 2>&1");
    CHECK(status == 1);
    CHECK_MESSAGE(out.find("another limaoim with instance " + first.instance() + " is running (pid " +
                           std::to_string(first.pid()) + ")") != std::string::npos,
                  out);
    CHECK(first.stat_json()["pid"] == first.pid());

    const std::string command = stat_binary() + " --instance " + first.instance() + " 2>&1";
    first.stop(SIGKILL, 5000);  // leaves its segment, unlocked
    auto [stale_status, stale] = run_command(command);
    CHECK(stale_status == 1);
    CHECK(stale.find("is not running (stale segment)") != std::string::npos);
}
