// The server on its epoll backend (--io-backend, net/io_backend.h): chat
// over TCP and WebSocket, and a host that forbids io_uring the way a
// container's seccomp profile does (support/server_process.h: forbid_io_uring).
#include <doctest/doctest.h>

#include <string>

#include "chat_client.h"
#include "im_server.h"

using namespace limaoim;
using namespace limaoim::testing;

namespace {

// `text` from `from` to `to_uid`, acknowledged and received once.
void chat(ChatClient& from, ChatClient& to, const std::string& to_uid, const std::string& text) {
    REQUIRE(from.send_message(to_uid, 1, text, 1, "cmn-" + text));
    auto ack = from.read_sendack();
    REQUIRE(ack);
    CHECK(ack->reason_code == 1);
    auto got = to.read_recv();
    REQUIRE(got);
    CHECK(got->payload == text);
    CHECK(to.send_recvack(*got));
}

}  // namespace

TEST_CASE("io backend epoll: TCP (v4 and v2) and WebSocket sessions log in and chat both ways") {
    ImServer server({"--io-backend", "epoll", "--workers", "2"});
    REQUIRE_MESSAGE(server.started(), server.log());
    CHECK(server.log().find("I/O backend epoll; epoll: 2 workers") != std::string::npos);
    ChatClient app;
    REQUIRE(app.connect_login(server.port(), "epoll-app", 4));
    ChatClient old;
    REQUIRE(old.connect_login(server.port(), "epoll-old", 2));
    ChatClient web;
    REQUIRE(web.connect_websocket(server.ws_port()));
    web.login("epoll-web", "token", 4);
    REQUIRE(web.logged_in());

    chat(app, web, "epoll-web", "to the browser");
    chat(web, app, "epoll-app", "to the app");
    chat(old, app, "epoll-app", "from v2");
    chat(app, old, "epoll-old", "to v2");
    CHECK(web.ping());
    CHECK(web.read_pong());
    CHECK(server.process().stat("gauges.authenticated") == 3);
    CHECK(server.process().stat_json()["io_backend"] == "epoll");
}

TEST_CASE("io backend auto: where seccomp forbids io_uring the server runs on epoll and serves a login") {
    ServerProcess server({}, true, forbid_io_uring);
    REQUIRE_MESSAGE(server.started(), server.log());
    const std::string log = server.log();
    CHECK_MESSAGE(log.find("I/O backend: epoll, io_uring is forbidden here") != std::string::npos, log);
    CHECK_MESSAGE(log.find("I/O backend epoll;") != std::string::npos, log);
    ChatClient a;
    REQUIRE(a.connect_login(server.port(), "confined-a"));
    ChatClient b;
    REQUIRE(b.connect_login(server.port(), "confined-b", 2));
    chat(a, b, "confined-b", "inside a container");
    CHECK(server.stat_json()["io_backend"] == "epoll");
}

TEST_CASE("io backend io_uring: where seccomp forbids io_uring the server exits, naming the cause and the fix") {
    ServerProcess server({"--io-backend", "io_uring"}, true, forbid_io_uring);
    CHECK_FALSE(server.started());
    REQUIRE(server.exit_status());
    CHECK(*server.exit_status() != 0);
    const std::string log = server.log();
    CHECK_MESSAGE(log.find("io_uring is forbidden here (io_uring_setup: Operation not permitted)") !=
                      std::string::npos,
                  log);
    CHECK_MESSAGE(log.find("seccomp profile that allows io_uring_setup, io_uring_enter and io_uring_register") !=
                      std::string::npos,
                  log);
    CHECK_MESSAGE(log.find("seccomp=tools/container/seccomp-io_uring.json") != std::string::npos, log);
    CHECK_MESSAGE(log.find("sysctl -w kernel.io_uring_disabled=0") != std::string::npos, log);
    CHECK_MESSAGE(log.find("--io-backend epoll") != std::string::npos, log);
}
