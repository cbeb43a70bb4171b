// Heartbeats, kicks, deadlines, protocol errors and shutdown, against the real server.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdlib>
#include <optional>
#include <thread>

#include "client.h"
#include "im_helpers.h"
#include "server_process.h"

using namespace limaoim;
using namespace limaoim::testing;
using namespace std::chrono;

TEST_CASE("PING is answered with PONG, many times, also when pipelined behind CONNECT") {
    ServerProcess server;
    REQUIRE_MESSAGE(server.started(), server.log());
    Client c = logged_in(server, "pinger");
    for (int i = 0; i < 5; ++i) {
        REQUIRE(c.send_hex("70"));
        auto p = c.read_packet();
        REQUIRE(p);
        CHECK(p->type() == proto::PacketType::Pong);
        CHECK(p->bytes == std::vector<uint8_t>{0x80});
    }
    // CONNECT and three PINGs in one write: processed in order (Q11).
    Client fast;
    REQUIRE(fast.connect(server.port()));
    fast.version = 1;
    proto::ConnectPacket connect = Client::make_connect("fast", "t", 1, 0, "");
    std::vector<uint8_t> bytes(proto::encoded_size(connect, 1));
    proto::encode(connect, 1, bytes);
    bytes.insert(bytes.end(), {0x70, 0x70, 0x7f});
    REQUIRE(fast.send_bytes(bytes));
    auto ack = fast.read_packet();
    REQUIRE(ack);
    CHECK(ack->type() == proto::PacketType::Connack);
    for (int i = 0; i < 3; ++i) {
        auto p = fast.read_packet();
        REQUIRE(p);
        CHECK(p->type() == proto::PacketType::Pong);
    }
    CHECK(server.stat("counters.packets_in.ping") == 8);
    CHECK(server.stat("counters.packets_out.pong") == 8);
}

TEST_CASE("a second login of the same uid and device flag kicks the first") {
    ServerProcess server({"--kick-delay-ms", "600"});
    REQUIRE_MESSAGE(server.started(), server.log());
    Client first = logged_in(server, "kim", 4, 0);
    Client web = logged_in(server, "kim", 2, 1);  // other device flag: unaffected
    auto t0 = steady_clock::now();
    Client second = logged_in(server, "kim", 3, 0);

    auto bye = first.read_packet();
    REQUIRE(bye);
    REQUIRE(bye->type() == proto::PacketType::Disconnect);
    CHECK(std::get<proto::DisconnectPacket>(bye->packet).reason == "Account login on other devices");
    CHECK(std::get<proto::DisconnectPacket>(bye->packet).reason_code == 0);
    // The kicked session is out: its PING goes unanswered, then it is closed
    // after the kick delay.
    REQUIRE(first.send_hex("70"));
    std::vector<Received> seen;
    CHECK(first.wait_closed(3000, &seen));
    CHECK(seen.empty());
    auto elapsed = duration_cast<milliseconds>(steady_clock::now() - t0).count();
    CHECK(elapsed >= 500);

    for (Client* c : {&second, &web}) {
        REQUIRE(c->send_hex("70"));
        auto p = c->read_packet();
        REQUIRE(p);
        CHECK(p->type() == proto::PacketType::Pong);
    }
    CHECK(server.stat("counters.kicks") == 1);
    CHECK(server.wait_stat("counters.closed.kicked", 1, 2000) == 1);
    CHECK(server.stat("gauges.authenticated") == 2);
}

TEST_CASE("a client DISCONNECT closes the connection") {
    ServerProcess server;
    REQUIRE_MESSAGE(server.started(), server.log());
    Client c = logged_in(server, "leaver");
    proto::DisconnectPacket bye;
    bye.reason = "bye";
    REQUIRE(c.send_packet(bye, 4));
    CHECK(c.wait_closed(2000));
    CHECK(server.wait_stat("counters.closed.client_disconnect", 1, 2000) == 1);
    CHECK(server.wait_stat("gauges.authenticated", 0, 2000) == 0);
}

TEST_CASE("protocol errors close the connection and are counted by kind") {
    ServerProcess server;
    REQUIRE_MESSAGE(server.started(), server.log());
    struct Case {
        const char* name;
        std::string hex;
        bool login_first;
        const char* counter;
    } cases[] = {
        {"packet before CONNECT", "70", false, "counters.closed.packet_before_connect"},
        {"SEND before CONNECT", "300c000000000000000000000002", false, "counters.closed.packet_before_connect"},
        {"garbage: reserved type 0", "0000", false, "counters.decode_errors.reserved_type"},
        {"garbage: unknown type 15", "f0", true, "counters.decode_errors.unknown_type"},
        {"oversize remaining length, no body sent", "30818040", true, "counters.decode_errors.too_large"},
        {"5-byte varint", "30ffffffff01", true, "counters.decode_errors.malformed_length"},
        {"truncated CONNECT", "100100", false, "counters.decode_errors.truncated"},
        {"CONNECT above --max-connect-packet (4097 bytes announced)", "108120", false,
         "counters.decode_errors.too_large"},
        {"string past the body end", "90040000ff41", true, "counters.decode_errors.truncated"},
        {"second CONNECT", "1025010000076465762d3030310000018bcfe5687b0005616c6963650009746f6b2d616c696365", true,
         "counters.closed.protocol_violation"},
    };
    for (const Case& k : cases) {
        CAPTURE(k.name);
        int64_t before = std::max<int64_t>(0, server.stat(k.counter));
        Client c;
        REQUIRE(c.connect(server.port()));
        if (k.login_first) REQUIRE(c.login(std::string("err-") + k.name, "t", 4).reason == 1);
        REQUIRE(c.send_hex(k.hex));
        CHECK(c.wait_closed(2000));
        CHECK(server.wait_stat(k.counter, before + 1, 2000) == before + 1);
    }
}

TEST_CASE("after login the full --max-packet applies, not the pre-login CONNECT limit") {
    ServerProcess server;
    REQUIRE_MESSAGE(server.started(), server.log());
    Client c = logged_in(server, "big-sender", 1);
    const std::string payload(6000, 'x');  // above the 4 KiB CONNECT limit
    proto::SendPacket send;
    send.client_seq = 9;
    send.channel_id = "someone";
    send.channel_type = 1;
    send.payload = payload;
    REQUIRE(c.send_packet(send, 1));
    auto ack = c.read_packet();
    REQUIRE(ack);
    REQUIRE(ack->type() == proto::PacketType::Sendack);
    CHECK(std::get<proto::SendackPacket>(ack->packet).client_seq == 9);
    CHECK(server.stat("counters.closed.decode_error") <= 0);
    REQUIRE(c.send_hex("70"));
    auto pong = c.read_packet();
    REQUIRE(pong);
    CHECK(pong->type() == proto::PacketType::Pong);
}

TEST_CASE("deadlines: no CONNECT within the auth timeout, no byte within the idle timeout"
          * doctest::test_suite("timeouts")) {
    ServerProcess server({"--auth-timeout-ms", "500", "--idle-timeout-ms", "1200"});
    REQUIRE_MESSAGE(server.started(), server.log());
    SUBCASE("auth timeout") {
        Client silent;
        REQUIRE(silent.connect(server.port()));
        auto t0 = steady_clock::now();
        CHECK(silent.wait_closed(3000));
        auto ms = duration_cast<milliseconds>(steady_clock::now() - t0).count();
        CHECK(ms >= 400);
        CHECK(ms < 1500);
        CHECK(server.wait_stat("counters.closed.auth_timeout", 1, 1000) == 1);
    }
    SUBCASE("idle timeout, and heartbeats keep a session alive") {
        Client idle = logged_in(server, "idle");
        Client busy = logged_in(server, "busy");
        auto t0 = steady_clock::now();
        while (duration_cast<milliseconds>(steady_clock::now() - t0).count() < 2500) {
            REQUIRE(busy.send_hex("70"));
            REQUIRE(busy.read_packet());
            std::this_thread::sleep_for(milliseconds(300));
        }
        CHECK(idle.wait_closed(100));
        CHECK(server.stat("counters.closed.idle_timeout") == 1);
        REQUIRE(busy.send_hex("70"));
        CHECK(busy.read_packet());
    }
}

TEST_CASE("SIGTERM: every client gets DISCONNECT, the server exits 0 and removes its stats segment") {
    auto server = std::make_unique<ServerProcess>();
    REQUIRE_MESSAGE(server->started(), server->log());
    std::vector<Client> clients;
    for (int i = 0; i < 20; ++i) clients.push_back(logged_in(*server, "s" + std::to_string(i), uint8_t(1 + i % 4)));
    Client pending;
    REQUIRE(pending.connect(server->port()));
    const std::string segment = "/dev/shm/limaoim-" + server->instance();
    int elapsed = 0;
    auto status = server->stop(SIGTERM, 5000, &elapsed);
    REQUIRE(status.has_value());
    CHECK(*status == 0);
    CHECK(elapsed < 5000);
    for (Client& c : clients) {
        auto p = c.read_packet(1000);
        REQUIRE(p);
        CHECK(p->type() == proto::PacketType::Disconnect);
        CHECK(c.wait_closed(1000));
    }
    CHECK(pending.wait_closed(1000));
    struct stat st{};
    CHECK(::stat(segment.c_str(), &st) != 0);
    INFO(server->log());
    CHECK(server->log().find("stopped") != std::string::npos);
}

TEST_CASE("both receive modes: login, pipelined packets, split packets, kick and close") {
    for (const char* mode : {"poll", "multishot"}) {
        CAPTURE(mode);
        ServerProcess server({"--recv-mode", mode, "--kick-delay-ms", "300"});
        REQUIRE_MESSAGE(server.started(), server.log());
        Client a = logged_in(server, "modes", 4);
        // A PING, then a RECVACK split across three writes (ignored until the
        // messaging milestone), then a PING in the last write: exactly two PONGs.
        REQUIRE(a.send_hex("70"));
        for (const char* part : {"600c00000000", "0000000100", "00000270"}) {
            REQUIRE(a.send_hex(part));
            std::this_thread::sleep_for(milliseconds(30));
        }
        for (int i = 0; i < 2; ++i) {
            auto p = a.read_packet();
            REQUIRE(p);
            CHECK(p->type() == proto::PacketType::Pong);
        }
        Client b = logged_in(server, "modes", 2);
        auto bye = a.read_packet();
        REQUIRE(bye);
        CHECK(bye->type() == proto::PacketType::Disconnect);
        CHECK(a.wait_closed(2000));
        b.close();
        CHECK(server.wait_stat("gauges.connections", 0, 2000) == 0);
        CHECK(server.stat("counters.closed.peer_closed") >= 2);
    }
}

TEST_CASE("kicks across workers: 40 uids logged in twice on 4 workers, every first session kicked once") {
    ServerProcess server({"--workers", "4", "--kick-delay-ms", "300"});
    REQUIRE_MESSAGE(server.started(), server.log());
    std::vector<Client> first;
    for (int i = 0; i < 40; ++i) first.push_back(logged_in(server, "twin" + std::to_string(i)));
    std::vector<Client> second;
    for (int i = 0; i < 40; ++i) second.push_back(logged_in(server, "twin" + std::to_string(i)));
    for (Client& c : first) {
        auto bye = c.read_packet();
        REQUIRE(bye);
        CHECK(bye->type() == proto::PacketType::Disconnect);
        CHECK(c.wait_closed(3000));
    }
    CHECK(server.stat("counters.kicks") == 40);
    CHECK(server.stat("counters.kicks_lost") == 0);
    // SO_REUSEPORT spread 80 connections over 4 workers: some kicks crossed
    // workers, as envelopes.
    CHECK(server.stat("counters.envelopes_in") > 0);
    CHECK(server.stat("gauges.authenticated") == 40);
}

TEST_CASE("handshake budget: CONNECTs over it wait their turn, in order, with what was pipelined behind them") {
    // One CONNECT per loop iteration: 100 clients logging in at once defer
    // most of theirs; every one is answered, each PING sent in the same write
    // as its CONNECT is answered after the CONNACK, and the session reads on.
    for (const std::string mode : {"poll", "multishot"}) {
        CAPTURE(mode);
        // Whether CONNECTs reach one loop iteration together is up to the
        // kernel's timing, even with the server stopped while they are
        // written (its reads may still complete an iteration apart): a run
        // in which none was deferred proves nothing and is tried again.
        int64_t deferred = 0;
        for (int attempt = 0; attempt < 3 && deferred == 0; ++attempt) {
            ServerProcess server({"--workers", "1", "--handshakes-per-iteration", "1", "--recv-mode", mode});
            REQUIRE_MESSAGE(server.started(), server.log());
            std::vector<Client> clients(100);
            // Every connection accepted first; then every CONNECT written
            // while the server is stopped, so that they wait for it at once.
            for (Client& c : clients) REQUIRE(c.connect(server.port()));
            REQUIRE(server.wait_stat("gauges.connections", 100, 5000) == 100);
            REQUIRE(kill(server.pid(), SIGSTOP) == 0);
            for (size_t i = 0; i < clients.size(); ++i) {
                Client& c = clients[i];
                c.version = 1;
                const std::string uid = "storm" + std::to_string(i);  // the packet views it
                proto::ConnectPacket connect = Client::make_connect(uid, "t", 1, 0, "");
                std::vector<uint8_t> bytes(proto::encoded_size(connect, 1));
                proto::encode(connect, 1, bytes);
                bytes.push_back(0x70);
                REQUIRE(c.send_bytes(bytes));
            }
            REQUIRE(kill(server.pid(), SIGCONT) == 0);
            for (Client& c : clients) {
                auto ack = c.read_packet();
                REQUIRE(ack);
                CHECK(ack->type() == proto::PacketType::Connack);
                auto pong = c.read_packet();
                REQUIRE(pong);
                CHECK(pong->type() == proto::PacketType::Pong);
            }
            for (Client& c : clients) {
                REQUIRE(c.send_hex("70"));
                auto pong = c.read_packet();
                REQUIRE(pong);
                CHECK(pong->type() == proto::PacketType::Pong);
            }
            CHECK(server.stat("gauges.authenticated") == 100);
            deferred = server.stat("counters.handshakes_deferred");
            CHECK(server.stat("counters.input_pauses") == deferred);
            CHECK(server.stat("gauges.reassembly_bytes") == 0);
        }
        CHECK(deferred > 0);
    }
}

TEST_CASE("max pending handshakes: beyond it connections wait in the backlog, then log in; none is reset") {
    ServerProcess server({"--workers", "1", "--max-pending-handshakes", "4", "--auth-timeout-ms", "1500"});
    REQUIRE_MESSAGE(server.started(), server.log());
    // Four silent connections fill the limit until their auth deadline.
    std::vector<Client> silent(4);
    for (Client& c : silent) REQUIRE(c.connect(server.port()));
    REQUIRE(server.wait_stat("gauges.pending_handshakes", 4, 3000) == 4);
    // A fifth is not accepted while they are pending: its CONNECT waits.
    Client late;
    REQUIRE(late.connect(server.port()));
    late.version = 1;
    REQUIRE(late.send_packet(Client::make_connect("late", "t", 1, 0, ""), 1));
    CHECK_FALSE(late.read_packet(800));
    CHECK(server.stat("counters.accept_pauses") >= 1);
    // The silent ones time out; the late one is accepted and logged in.
    auto ack = late.read_packet(5000);
    REQUIRE(ack);
    CHECK(ack->type() == proto::PacketType::Connack);
    CHECK(server.stat("counters.closed.auth_timeout") == 4);
    CHECK(server.stat("counters.closed.rejected") == 0);
}

TEST_CASE("SIGTERM: a kicked session waiting out its kick delay is not told twice") {
    ServerProcess server({"--kick-delay-ms", "10000"});
    REQUIRE_MESSAGE(server.started(), server.log());
    Client first = logged_in(server, "twice");
    Client second = logged_in(server, "twice");
    auto bye = first.read_packet();
    REQUIRE(bye);
    REQUIRE(bye->type() == proto::PacketType::Disconnect);
    REQUIRE(server.stop(SIGTERM, 5000) == 0);
    std::vector<Received> seen;
    CHECK(first.wait_closed(3000, &seen));
    CHECK(seen.empty());  // no second DISCONNECT
    auto shutdown_bye = second.read_packet();
    REQUIRE(shutdown_bye);
    CHECK(shutdown_bye->type() == proto::PacketType::Disconnect);
}

// CI's ASan stage runs this unsanitized client against the ASan tree's
// server through these variables (tools/setup.sh): a program that is not a
// server must then fail every start, and a stats reader that reads nothing
// every stat.
TEST_CASE("LIMAOIM_SERVER_BIN and LIMAOIM_STAT_BIN name the programs the tests run") {
    struct Named {
        const char* variable;
        std::optional<std::string> before;
        Named(const char* name, const char* program) : variable(name) {
            if (const char* value = getenv(name)) before = value;
            setenv(name, program, 1);
        }
        ~Named() { before ? setenv(variable, before->c_str(), 1) : unsetenv(variable); }
    };
    {
        Named server_bin("LIMAOIM_SERVER_BIN", "/bin/false");
        ServerProcess not_a_server;
        CHECK_FALSE(not_a_server.started());
    }
    ServerProcess server;
    REQUIRE_MESSAGE(server.started(), server.log());
    REQUIRE(server.stat_json().is_object());
    Named stat_bin("LIMAOIM_STAT_BIN", "/bin/false");
    CHECK(server.stat_json().is_null());
}
