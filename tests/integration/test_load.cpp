// 25,000 connections: above the 20,000 open-files limit of this machine,
// so the server holds them in several rings' fixed-file tables and the load
// generator in several processes.
#include <doctest/doctest.h>

#include <thread>

#include "server_process.h"

using namespace limaoim::testing;

// A load test (test suite "load"): timing-sensitive, so CI runs it in the
// unsanitized stage only, like meson's load suite (tools/setup.sh).
TEST_CASE("25000 v4 clients log in and stay online with heartbeats" * doctest::test_suite("load")) {
    ServerProcess server({"--max-conns", "26000"});
    REQUIRE_MESSAGE(server.started(), server.log());
    CHECK(server.log().find("capacity") != std::string::npos);
    std::string cmd = std::string(LIMAOIM_BENCH_CONNECTION_BIN) + " -cids 1-25000 -hostname 127.0.0.1 -port " +
                      std::to_string(server.port()) +
                      " -srcs 127.0.0.2-127.0.0.5 -timeout 25s -heartbeat 5s -version 4 -quiet 2>&1";
    std::pair<int, std::string> result;
    std::thread load([&] { result = run_command(cmd); });
    int64_t peak = server.wait_stat("gauges.authenticated", 25000, 20000);
    load.join();
    INFO(result.second);
    CHECK(peak == 25000);
    CHECK(result.first == 0);
    CHECK(server.stat("counters.decode_errors.truncated") == 0);
    CHECK(server.wait_stat("gauges.connections", 0, 10000) == 0);
}
