// The WebSocket listener against the real server: the upgrade, LiMaoIM v4
// over binary frames (packets split over frames and messages, several in
// one frame), chat and kicks between WebSocket and TCP sessions, every close
// code the server sends, and the hostile clients of the TCP listener again.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/socket.h>

#include <chrono>
#include <string>
#include <thread>

#include "chat_client.h"
#include "http_client.h"
#include "im_helpers.h"
#include "im_server.h"

using namespace limaoim;
using namespace limaoim::testing;
using namespace std::chrono;
using nlohmann::json;

namespace {

std::span<const uint8_t> bytes_of(const std::string& s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

std::vector<uint8_t> ping_packet() { return {0x70}; }

// The start of a CONNECT of `size` bytes (< 16384): the gateway waits for
// the rest, so what a test checks is the framing layer's verdict, not the
// gateway's on an early packet.
std::vector<uint8_t> connect_start(size_t bytes_given, uint32_t remaining = 4000) {
    std::vector<uint8_t> out = {0x10, uint8_t(0x80 | (remaining & 0x7f)), uint8_t(remaining >> 7)};
    out.resize(std::max(bytes_given, out.size()), 0);
    return out;
}

// A logged-in v4 client over WebSocket (or TCP when `ws` is false).
ChatClient online_client(ImServer& server, const std::string& uid, bool ws, uint8_t device_flag = 0) {
    ChatClient c;
    REQUIRE(ws ? c.connect_websocket(server.ws_port()) : c.connect(server.port()));
    c.login(uid, "token", 4, device_flag);
    REQUIRE(c.logged_in());
    return c;
}

// Sends `frame` on a fresh upgraded connection and waits for the server to close it.
Client closed_by(ImServer& server, const std::vector<uint8_t>& frame) {
    Client c;
    REQUIRE(c.connect_websocket(server.ws_port()));
    REQUIRE(c.send_raw(frame));
    CHECK(c.wait_closed(3000));
    return c;
}

int64_t closed_count(ImServer& server, const std::string& reason) {
    return server.process().stat("counters.closed." + reason);
}

}  // namespace

TEST_CASE("websocket: a WebSocket client and a TCP client of different users chat both ways (v4)") {
    ImServer server;
    REQUIRE_MESSAGE(server.started(), server.log());
    ChatClient web = online_client(server, "web-user", true);
    ChatClient app = online_client(server, "app-user", false);

    REQUIRE(web.send_message("app-user", 1, "hello from the browser", 1, "w-1"));
    auto ack = web.read_sendack();
    REQUIRE(ack);
    CHECK(ack->reason_code == 1);
    auto got = app.read_recv();
    REQUIRE(got);
    CHECK(got->payload == "hello from the browser");
    CHECK(got->from_uid == "web-user");
    CHECK(app.send_recvack(*got));

    REQUIRE(app.send_message("web-user", 1, "hello from the app", 1, "a-1"));
    ack = app.read_sendack();
    REQUIRE(ack);
    CHECK(ack->reason_code == 1);
    got = web.read_recv();
    REQUIRE(got);
    CHECK(got->payload == "hello from the app");
    CHECK(web.send_recvack(*got));
    CHECK(web.ping());
    CHECK(web.read_pong());
    // One packet per server frame (the original's SDKs rely on nothing more).
    CHECK(web.raw().ws_data_frames == 4);  // CONNACK, SENDACK, RECV, PONG

    const json stats = server.process().stat_json();
    CHECK(stats["websocket"]["sessions"] == 1);
    CHECK(stats["websocket"]["upgrades"] == 1);
    CHECK(stats["gauges"]["authenticated"] == 2);
}

TEST_CASE("websocket: a packet split over three frames, over three messages, and three packets in one frame") {
    ImServer server;
    REQUIRE_MESSAGE(server.started(), server.log());
    ChatClient web = online_client(server, "split", true);
    ChatClient peer = online_client(server, "split-peer", false);
    Client& raw = web.raw();

    const std::vector<uint8_t> send = web.build_send("split-peer", 1, "in three pieces", 7, "s-7");
    REQUIRE(send.size() > 6);
    const size_t third = send.size() / 3;
    const std::span<const uint8_t> all(send);
    const auto a = all.first(third), b = all.subspan(third, third), c = all.subspan(2 * third);

    SUBCASE("one message in three frames (binary, continuation, continuation)") {
        REQUIRE(raw.send_raw(Client::ws_frame(2, a, false)));
        REQUIRE(raw.send_raw(Client::ws_frame(0, b, false)));
        REQUIRE(raw.send_raw(Client::ws_frame(0, c, true)));
    }
    SUBCASE("three messages, each a binary frame, with pauses between them") {
        REQUIRE(raw.send_raw(Client::ws_frame(2, a)));
        std::this_thread::sleep_for(milliseconds(50));
        REQUIRE(raw.send_raw(Client::ws_frame(2, b)));
        std::this_thread::sleep_for(milliseconds(50));
        REQUIRE(raw.send_raw(Client::ws_frame(2, c)));
    }
    SUBCASE("the frames' bytes dribbled one TCP segment per byte") {
        const std::vector<uint8_t> frame = Client::ws_frame(2, all);
        for (uint8_t byte : frame) {
            REQUIRE(raw.send_raw({&byte, 1}));
            std::this_thread::sleep_for(milliseconds(1));
        }
    }
    auto ack = web.read_sendack();
    REQUIRE(ack);
    CHECK(ack->reason_code == 1);
    auto got = peer.read_recv();
    REQUIRE(got);
    CHECK(got->payload == "in three pieces");

    // Three packets in one frame: two PINGs around a SEND.
    std::vector<uint8_t> three = ping_packet();
    const std::vector<uint8_t> second = web.build_send("split-peer", 1, "between two pings", 8, "s-8");
    three.insert(three.end(), second.begin(), second.end());
    three.push_back(0x70);
    REQUIRE(raw.send_raw(Client::ws_frame(2, three)));
    CHECK(web.read_pong());
    CHECK(web.read_pong());
    ack = web.read_sendack();
    REQUIRE(ack);
    CHECK(ack->reason_code == 1);
    got = peer.read_recv();
    REQUIRE(got);
    CHECK(got->payload == "between two pings");
}

TEST_CASE("websocket: pipelined SENDs over the in-flight cap wait in the WebSocket layer and are all answered in order") {
    ImServer server({"--max-sends-in-flight", "1"});
    REQUIRE_MESSAGE(server.started(), server.log());
    ChatClient web = online_client(server, "pipe", true);
    ChatClient peer = online_client(server, "pipe-peer", true);
    // 20 SENDs in one frame: the gateway takes one, pauses, and the rest are
    // held until each SENDACK makes room.
    std::vector<uint8_t> burst;
    for (uint32_t i = 1; i <= 20; ++i) {
        const std::vector<uint8_t> one = web.build_send("pipe-peer", 1, "m" + std::to_string(i), i, "p-" + std::to_string(i));
        burst.insert(burst.end(), one.begin(), one.end());
    }
    REQUIRE(web.raw().send_raw(Client::ws_frame(2, burst)));
    for (uint32_t i = 1; i <= 20; ++i) {
        auto ack = web.read_sendack(5000);
        REQUIRE(ack);
        CHECK(ack->client_seq == i);
        CHECK(ack->reason_code == 1);
    }
    for (uint32_t i = 1; i <= 20; ++i) {
        auto got = peer.read_recv(5000);
        REQUIRE(got);
        CHECK(got->payload == "m" + std::to_string(i));
    }
    CHECK(server.process().stat("messages.send_pauses") > 0);
    CHECK(server.process().stat_json()["websocket"]["held_bytes"] == 0);
}

TEST_CASE("websocket: a close frame behind paused input waits for it: every SEND before it is answered") {
    ImServer server({"--max-sends-in-flight", "1"});
    REQUIRE_MESSAGE(server.started(), server.log());
    ChatClient web = online_client(server, "closer", true);
    ChatClient peer = online_client(server, "closer-peer", false);
    std::vector<uint8_t> burst;
    for (uint32_t i = 1; i <= 3; ++i) {
        const std::vector<uint8_t> one = web.build_send("closer-peer", 1, "last words " + std::to_string(i), i, "c-" + std::to_string(i));
        burst.insert(burst.end(), one.begin(), one.end());
    }
    std::vector<uint8_t> write = Client::ws_frame(2, burst);
    const uint8_t normal[2] = {0x03, 0xe8};
    const std::vector<uint8_t> close = Client::ws_frame(8, normal);
    write.insert(write.end(), close.begin(), close.end());  // as a browser's ws.send(x); ws.close()
    REQUIRE(web.raw().send_raw(write));
    std::vector<Received> seen;
    CHECK(web.raw().wait_closed(5000, &seen));
    size_t acks = 0;
    for (const Received& r : seen) acks += r.type() == proto::PacketType::Sendack;
    CHECK(acks == 3);
    CHECK(web.raw().ws_close_code == 1000);
    for (uint32_t i = 1; i <= 3; ++i) {
        auto got = peer.read_recv(5000);
        REQUIRE(got);
        CHECK(got->payload == "last words " + std::to_string(i));
    }
}

TEST_CASE("websocket: frames in the same write as the upgrade request are read") {
    ImServer server;
    REQUIRE_MESSAGE(server.started(), server.log());
    ChatClient c;
    Client& raw = c.raw();
    REQUIRE(raw.connect(server.ws_port()));
    std::string request = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    std::vector<uint8_t> write(request.begin(), request.end());
    const std::vector<uint8_t> ping = Client::ws_frame(9, bytes_of("early"));
    write.insert(write.end(), ping.begin(), ping.end());
    REQUIRE(raw.send_raw(write));
    std::string response;
    char buf[4096];
    while (response.find("\r\n\r\n") == std::string::npos) {
        const ssize_t n = recv(raw.fd(), buf, sizeof(buf), 0);
        REQUIRE(n > 0);
        response.append(buf, size_t(n));
    }
    CHECK(response.starts_with("HTTP/1.1 101 "));
    // The pong follows the 101 (in the same read or the next).
    const std::string after = response.substr(response.find("\r\n\r\n") + 4);
    std::string frames = after;
    while (frames.size() < 7) {
        const ssize_t n = recv(raw.fd(), buf, sizeof(buf), 0);
        REQUIRE(n > 0);
        frames.append(buf, size_t(n));
    }
    CHECK(uint8_t(frames[0]) == 0x8a);  // a pong, FIN
    CHECK(frames.substr(2, 5) == "early");
}

TEST_CASE("websocket: big and odd-sized RECVs arrive whole (2-, 4- and 10-byte frame headers); gauges return to 0") {
    ImServer server;
    REQUIRE_MESSAGE(server.started(), server.log());
    ChatClient web = online_client(server, "big-reader", true);
    ChatClient app = online_client(server, "big-writer", false);
    // Payload sizes around where an encrypted RECV crosses one send chunk
    // (the WebSocket header then does not fit beside it), then past 64 KiB.
    std::vector<size_t> sizes;
    for (size_t n = 1400; n <= 1560; n += 4) sizes.push_back(n);
    sizes.push_back(10);
    sizes.push_back(200000);
    uint32_t seq = 0;
    for (size_t n : sizes) {
        INFO("payload " << n);
        const std::string payload(n, char('a' + n % 26));
        ++seq;
        REQUIRE(app.send_message("big-reader", 1, payload, seq, "b-" + std::to_string(seq)));
        auto ack = app.read_sendack(5000);
        REQUIRE(ack);
        REQUIRE(ack->reason_code == 1);
        auto got = web.read_recv(5000);
        REQUIRE(got);
        CHECK(got->payload == payload);
        CHECK(web.send_recvack(*got));
    }
    web.raw().close();
    app.raw().close();
    CHECK(server.process().wait_stat("gauges.connections", 0, 5000) == 0);
    const json stats = server.process().stat_json();
    CHECK(stats["websocket"]["sessions"] == 0);
    CHECK(stats["websocket"]["held_bytes"] == 0);
}

TEST_CASE("websocket: a WebSocket and a TCP login of the same uid and device kick each other") {
    ImServer server({"--kick-delay-ms", "300"});
    REQUIRE_MESSAGE(server.started(), server.log());
    SUBCASE("TCP first, then WebSocket") {
        ChatClient old_session = online_client(server, "twice", false);
        ChatClient new_session = online_client(server, "twice", true);
        std::vector<Received> seen;
        CHECK(old_session.raw().wait_closed(3000, &seen));
        REQUIRE(!seen.empty());
        CHECK(seen.front().type() == proto::PacketType::Disconnect);
        CHECK(new_session.ping());
        CHECK(new_session.read_pong());
    }
    SUBCASE("WebSocket first, then TCP") {
        ChatClient old_session = online_client(server, "twice", true);
        ChatClient new_session = online_client(server, "twice", false);
        std::vector<Received> seen;
        CHECK(old_session.raw().wait_closed(3000, &seen));
        REQUIRE(!seen.empty());
        CHECK(seen.front().type() == proto::PacketType::Disconnect);
        CHECK(old_session.raw().ws_close_code == 1000);  // the kick's close, after the DISCONNECT
        CHECK(new_session.ping());
        CHECK(new_session.read_pong());
    }
    CHECK(server.process().stat("counters.kicks") == 1);
}

TEST_CASE("websocket: every close path sends its status code and is counted") {
    ImServer server({"--ws-max-message", "1024", "--auth-timeout-ms", "600"});
    REQUIRE_MESSAGE(server.started(), server.log());
    const std::vector<uint8_t> nothing;

    SUBCASE("a text frame: 1003") {
        Client c = closed_by(server, Client::ws_frame(1, bytes_of("hello")));
        CHECK(c.ws_close_code == 1003);
        CHECK(closed_count(server, "ws_text_frame") == 1);
    }
    SUBCASE("an unmasked frame: 1002") {
        Client c = closed_by(server, Client::ws_frame(2, ping_packet(), true, false));
        CHECK(c.ws_close_code == 1002);
        CHECK(closed_count(server, "ws_protocol_error") == 1);
    }
    SUBCASE("reserved bits set: 1002") {
        std::vector<uint8_t> frame = Client::ws_frame(2, ping_packet());
        frame[0] |= 0x40;
        CHECK(closed_by(server, frame).ws_close_code == 1002);
    }
    SUBCASE("a reserved opcode: 1002") {
        CHECK(closed_by(server, Client::ws_frame(3, ping_packet())).ws_close_code == 1002);
    }
    SUBCASE("a continuation frame with no message to continue: 1002") {
        CHECK(closed_by(server, Client::ws_frame(0, ping_packet())).ws_close_code == 1002);
    }
    SUBCASE("a new binary message inside a fragmented one: 1002") {
        std::vector<uint8_t> frames = Client::ws_frame(2, connect_start(3), false);
        const std::vector<uint8_t> second = Client::ws_frame(2, connect_start(3));
        frames.insert(frames.end(), second.begin(), second.end());
        CHECK(closed_by(server, frames).ws_close_code == 1002);
    }
    SUBCASE("a fragmented ping: 1002") {
        CHECK(closed_by(server, Client::ws_frame(9, nothing, false)).ws_close_code == 1002);
    }
    SUBCASE("a ping with 126 bytes: 1002") {
        const std::vector<uint8_t> big(126, 'x');
        CHECK(closed_by(server, Client::ws_frame(9, big)).ws_close_code == 1002);
    }
    SUBCASE("a frame header announcing 2^40 bytes: 1009 before anything is buffered") {
        // Only the header is sent: a close that comes without the payload
        // shows the limit was checked before waiting for (or keeping) any of it.
        const std::vector<uint8_t> header = {0x82, 0xff, 0, 0, 0x01, 0, 0, 0, 0, 0, 1, 2, 3, 4};
        Client c = closed_by(server, header);
        CHECK(c.ws_close_code == 1009);
        CHECK(closed_count(server, "ws_too_big") == 1);
    }
    SUBCASE("a message over --ws-max-message in two frames: 1009") {
        std::vector<uint8_t> frames = Client::ws_frame(2, connect_start(800), false);
        const std::vector<uint8_t> rest = Client::ws_frame(0, std::vector<uint8_t>(800, 0), true);
        frames.insert(frames.end(), rest.begin(), rest.end());
        CHECK(closed_by(server, frames).ws_close_code == 1009);
    }
    SUBCASE("the client's close frame is echoed") {
        const uint8_t code[2] = {0x0f, 0xa0};  // 4000, an application's code
        Client c = closed_by(server, Client::ws_frame(8, code));
        CHECK(c.ws_close_code == 4000);
        CHECK(closed_count(server, "ws_close_frame") == 1);
    }
    SUBCASE("a close frame without a code is answered without one") {
        CHECK(closed_by(server, Client::ws_frame(8, nothing)).ws_close_code == 1005);
    }
    SUBCASE("a close frame with a code no endpoint may send (1005): 1002") {
        const uint8_t code[2] = {0x03, 0xed};
        CHECK(closed_by(server, Client::ws_frame(8, code)).ws_close_code == 1002);
    }
    SUBCASE("a close frame whose reason is not UTF-8: 1007") {
        const uint8_t payload[4] = {0x03, 0xe8, 0xff, 0xfe};
        CHECK(closed_by(server, Client::ws_frame(8, payload)).ws_close_code == 1007);
    }
    SUBCASE("a close frame of one byte: 1002") {
        const uint8_t one[1] = {0x03};
        CHECK(closed_by(server, Client::ws_frame(8, one)).ws_close_code == 1002);
    }
    SUBCASE("a ping is answered with a pong carrying its payload; a pong needs no answer") {
        Client c;
        REQUIRE(c.connect_websocket(server.ws_port()));
        REQUIRE(c.send_raw(Client::ws_frame(10, bytes_of("unsolicited"))));
        REQUIRE(c.send_raw(Client::ws_frame(9, bytes_of("are you there"))));
        // The pong is read as a control frame; wait for it through a read that times out.
        CHECK_FALSE(c.read_packet(300));
        CHECK(c.ws_pongs == 1);
        CHECK(server.process().stat_json()["websocket"]["control_frames_in"] == 2);
    }
    SUBCASE("a first packet other than CONNECT: the gateway closes it") {
        Client c;
        REQUIRE(c.connect_websocket(server.ws_port()));
        REQUIRE(c.send_bytes(ping_packet()));
        CHECK(c.wait_closed(3000));
        CHECK(closed_count(server, "packet_before_connect") == 1);
    }
    SUBCASE("no CONNECT after the upgrade: the auth deadline") {
        Client c;
        REQUIRE(c.connect_websocket(server.ws_port()));
        CHECK(c.wait_closed(3000));
        CHECK(closed_count(server, "auth_timeout") == 1);
    }
    SUBCASE("a failed login: the CONNACK, then close 1000") {
        ImServer release({}, "", false);
        REQUIRE_MESSAGE(release.started(), release.log());
        ChatClient c;
        REQUIRE(c.connect_websocket(release.ws_port()));
        const LoginResult r = c.login("nobody", "wrong", 4);
        CHECK(r.answered);
        CHECK(r.reason != 1);
        CHECK(c.raw().wait_closed(3000));
        CHECK(c.raw().ws_close_code == 1000);
    }
}

TEST_CASE("websocket: bad upgrade requests get 400, 426 or 431 and are counted") {
    ImServer server({"--auth-timeout-ms", "600"});
    REQUIRE_MESSAGE(server.started(), server.log());
    auto status_of = [&](const std::string& request) {
        // The raw client keeps no bytes it cannot parse as packets: read the answer by hand.
        Client c;
        REQUIRE(c.connect(server.ws_port()));
        REQUIRE(c.send_raw(bytes_of(request)));
        std::string text;
        char buf[4096];
        for (int i = 0; i < 50; ++i) {
            const ssize_t n = recv(c.fd(), buf, sizeof(buf), 0);
            if (n <= 0) break;
            text.append(buf, size_t(n));
        }
        return text.substr(0, text.find("\r\n"));
    };
    CHECK(status_of("GET / HTTP/1.1\r\nHost: x\r\n\r\n") == "HTTP/1.1 400 Bad Request");
    CHECK(status_of("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n") ==
          "HTTP/1.1 400 Bad Request");
    CHECK(status_of("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n") == "HTTP/1.1 426 Upgrade Required");
    CHECK(status_of("POST / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n") == "HTTP/1.1 400 Bad Request");
    CHECK(status_of("GET / HTTP/1.1\r\nX-Long: " + std::string(9000, 'a')) == "HTTP/1.1 431 Request Header Fields Too Large");
    CHECK(status_of("\x16\x03\x01 not even HTTP\r\n\r\n") == "HTTP/1.1 400 Bad Request");
    CHECK(closed_count(server, "ws_bad_upgrade") == 6);
    // Any path, any Origin, "Connection: keep-alive, Upgrade" as browsers send it.
    Client browser_like;
    REQUIRE(browser_like.connect(server.ws_port()));
    REQUIRE(browser_like.send_raw(bytes_of(
        "GET /any/path?x=1 HTTP/1.1\r\nHost: example\r\nConnection: keep-alive, Upgrade\r\nUpgrade: WebSocket\r\n"
        "Origin: https://elsewhere.example\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n")));
    char buf[512];
    const ssize_t n = recv(browser_like.fd(), buf, sizeof(buf), 0);
    REQUIRE(n > 0);
    const std::string response(buf, size_t(n));
    CHECK(response.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
    CHECK(response.find("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n") != std::string::npos);
    CHECK(response.find("Sec-WebSocket-Extensions") == std::string::npos);  // no extension chosen
}

TEST_CASE("websocket: hostile clients: slowloris upgrade, a ping flood without reading") {
    SUBCASE("an upgrade request dribbled a byte every 100 ms is cut at the upgrade deadline") {
        ImServer server({"--auth-timeout-ms", "600"});
        REQUIRE_MESSAGE(server.started(), server.log());
        Client c;
        REQUIRE(c.connect(server.ws_port()));
        const std::string request = "GET / HTTP/1.1\r\nHost: slow\r\nX-Padding: " + std::string(100, 'p');
        const auto t0 = steady_clock::now();
        bool cut = false;
        for (char ch : request) {
            if (!c.send_raw({reinterpret_cast<const uint8_t*>(&ch), 1})) {
                cut = true;
                break;
            }
            if (c.wait_closed(100)) {
                cut = true;
                break;
            }
        }
        CHECK(cut);
        const auto elapsed = duration_cast<milliseconds>(steady_clock::now() - t0).count();
        CHECK(elapsed < 3000);
        CHECK(closed_count(server, "ws_upgrade_timeout") == 1);
    }
    SUBCASE("pings sent without reading a pong are cut at the send cap") {
        ImServer server({"--send-cap", "16384", "--sndbuf", "4096"});
        REQUIRE_MESSAGE(server.started(), server.log());
        Client c;
        REQUIRE(c.connect_websocket(server.ws_port()));
        const int small = 4096;
        setsockopt(c.fd(), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
        const std::vector<uint8_t> payload(125, 'p');
        const std::vector<uint8_t> ping = Client::ws_frame(9, payload);
        std::vector<uint8_t> batch;
        for (int i = 0; i < 100; ++i) batch.insert(batch.end(), ping.begin(), ping.end());
        const auto t0 = steady_clock::now();
        int batches = 0;
        // Bounded: at most 200,000 pings (26 MB) or 20 s.
        while (batches < 2000 && steady_clock::now() - t0 < seconds(20) && c.send_raw(batch)) ++batches;
        CHECK(server.process().wait_stat("counters.closed.slow_consumer", 1, 5000) == 1);
        MESSAGE("ping flood: cut after " << batches * 100 << " pings");
    }
}

TEST_CASE("websocket: split packets held for WebSocket sessions are bounded by the reassembly budget") {
    // One worker with a 2 MiB share: three sessions each holding 600 KB of
    // an unfinished 900 KB SEND need more (each held buffer grows to the power
    // of two that holds its bytes, at most the packet's size: over 2 MiB for three).
    ImServer server({"--workers", "1", "--reassembly-budget", "2097152", "--max-packet", "1000000"});
    REQUIRE_MESSAGE(server.started(), server.log());
    std::vector<ChatClient> clients;
    for (int i = 0; i < 3; ++i) clients.push_back(online_client(server, "holder-" + std::to_string(i), true));
    // A SEND header announcing 900,000 bytes, then 600,000 of them in 60 frames.
    const uint32_t remaining = 900000;
    std::vector<uint8_t> start = {0x30, uint8_t(0x80 | (remaining & 0x7f)), uint8_t(0x80 | ((remaining >> 7) & 0x7f)),
                                  uint8_t(remaining >> 14)};
    const std::vector<uint8_t> chunk(10000, 'x');
    for (ChatClient& c : clients) {
        c.raw().send_raw(Client::ws_frame(2, start));
        for (int i = 0; i < 60; ++i)
            if (!c.raw().send_raw(Client::ws_frame(2, chunk))) break;
    }
    CHECK(server.process().wait_stat("counters.closed.reassembly_budget", 1, 5000) >= 1);
    const int64_t held = server.process().stat_json()["websocket"]["held_bytes"].get<int64_t>();
    CHECK(held <= 2097152);
    for (ChatClient& c : clients) c.raw().close();
    CHECK(server.process().wait_stat("gauges.connections", 0, 5000) == 0);
    CHECK(server.process().stat_json()["websocket"]["held_bytes"] == 0);
}

TEST_CASE("websocket: SIGTERM tells WebSocket sessions DISCONNECT, then close 1001") {
    ImServer server;
    REQUIRE_MESSAGE(server.started(), server.log());
    ChatClient web = online_client(server, "leaving", true);
    std::optional<int> exit_status;
    std::thread stopper([&] { exit_status = server.stop(SIGTERM, 10000); });
    std::vector<Received> seen;
    CHECK(web.raw().wait_closed(5000, &seen));
    stopper.join();
    CHECK(exit_status == 0);
    INFO("close code " << web.raw().ws_close_code.value_or(0) << "; server log:\n" << server.log());
    REQUIRE(!seen.empty());
    CHECK(seen.front().type() == proto::PacketType::Disconnect);
    CHECK(web.raw().ws_close_code == 1001);
}

TEST_CASE("websocket: --ws-addr '' turns the listener off") {
    ServerProcess server({"--ws-addr", ""});
    REQUIRE_MESSAGE(server.started(), server.log());
    CHECK(server.ws_port() == 0);
    // The start line is written once every worker runs, which may be just
    // after the port first accepts.
    const auto deadline = steady_clock::now() + seconds(5);
    while (server.log().find("listening on") == std::string::npos && steady_clock::now() < deadline)
        std::this_thread::sleep_for(milliseconds(20));
    CHECK(server.log().find("WebSocket off") != std::string::npos);
}

TEST_CASE("websocket: the demo page and its modules are served at /demo/, without the API secret") {
    ImServer server({"--http-secret", "s3cret"});
    REQUIRE_MESSAGE(server.started(), server.log());
    const HttpResult page = http_request(server.http_port(), "GET", "/demo/", "");
    REQUIRE(page.status == 200);
    CHECK(page.body.find("importmap") != std::string::npos);
    // Every module the page loads answers, so the browser can run it.
    for (const char* path : {"/demo/demo.js", "/demo/src/client.js", "/demo/vendor/@noble/hashes/legacy.js"}) {
        INFO(path);
        CHECK(http_request(server.http_port(), "GET", path, "").status == 200);
    }
    CHECK(http_request(server.http_port(), "GET", "/health", "").status == 401);  // the API still needs the secret
}
