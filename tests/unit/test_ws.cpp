// The WebSocket framing (ws/frame.h) and opening handshake (ws/upgrade.h),
// without sockets: RFC 6455's own examples, every cut of a stream, every
// violation and its close code. Then the transport (ws/websocket.h) on a
// real worker: the bytes it holds share the loop's reassembly budget.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "limaoim/net/worker.h"
#include "limaoim/ws/frame.h"
#include "limaoim/ws/upgrade.h"
#include "limaoim/ws/websocket.h"
#include "ports.h"
#include "ws_reader_driver.h"

using namespace limaoim::ws;
using limaoim::testing::ReaderOutcome;
using limaoim::testing::read_chunked;

namespace {

std::vector<uint8_t> bytes(std::initializer_list<int> list) {
    std::vector<uint8_t> out;
    for (int b : list) out.push_back(uint8_t(b));
    return out;
}

std::span<const uint8_t> span_of(const std::string& s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

// A masked client frame.
std::vector<uint8_t> client_frame(uint8_t first_byte, std::span<const uint8_t> payload,
                                  std::array<uint8_t, 4> mask = {0x37, 0xfa, 0x21, 0x3d}) {
    std::vector<uint8_t> out{first_byte};
    if (payload.size() <= 125) {
        out.push_back(uint8_t(0x80 | payload.size()));
    } else if (payload.size() <= 0xffff) {
        out.push_back(0x80 | 126);
        out.push_back(uint8_t(payload.size() >> 8));
        out.push_back(uint8_t(payload.size()));
    } else {
        out.push_back(0x80 | 127);
        for (int i = 7; i >= 0; --i) out.push_back(uint8_t(uint64_t(payload.size()) >> (8 * i)));
    }
    out.insert(out.end(), mask.begin(), mask.end());
    for (size_t i = 0; i < payload.size(); ++i) out.push_back(payload[i] ^ mask[i & 3]);
    return out;
}

ReaderOutcome read_all(std::span<const uint8_t> stream, FrameLimits limits = {}) {
    return read_chunked(stream, {}, limits);
}

}  // namespace

TEST_CASE("RFC 6455 §5.7: a masked 'Hello' reads as its payload") {
    // The RFC's example is a text frame; the same bytes as a binary frame.
    const auto frame = bytes({0x82, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58});
    const ReaderOutcome out = read_all(frame);
    CHECK(out.error == 0);
    CHECK(std::string(out.data.begin(), out.data.end()) == "Hello");
    CHECK(out.data_frames == 1);

    const auto text = bytes({0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58});
    CHECK(read_all(text).error == uint16_t(CloseCode::UnsupportedData));
}

TEST_CASE("a stream reads the same however it is cut, one byte at a time included") {
    std::vector<uint8_t> stream;
    std::string expected;
    const std::string a(300, 'a'), b = "bb", c(70000, 'c');
    auto add = [&](uint8_t first, const std::string& payload, bool data) {
        const auto f = client_frame(first, span_of(payload));
        stream.insert(stream.end(), f.begin(), f.end());
        if (data) expected += payload;
    };
    add(0x02, a, true);   // binary, not final (16-bit length)
    add(0x89, "ping!", false);  // a ping between fragments is allowed (§5.4)
    add(0x80, b, true);   // final continuation
    add(0x82, c, true);   // binary, 64-bit length
    add(0x8a, "", false); // pong
    add(0x82, "", true);  // empty binary message
    const ReaderOutcome whole = read_all(stream);
    REQUIRE(whole.error == 0);
    CHECK(std::string(whole.data.begin(), whole.data.end()) == expected);
    REQUIRE(whole.controls.size() == 2);
    CHECK(whole.controls[0].first == Opcode::Ping);
    CHECK(std::string(whole.controls[0].second.begin(), whole.controls[0].second.end()) == "ping!");
    CHECK(whole.controls[1].first == Opcode::Pong);
    CHECK(whole.data_frames == 4);
    for (size_t chunk : {1, 2, 3, 7, 13, 125, 1000}) {
        INFO("chunk " << chunk);
        CHECK(read_chunked(stream, {chunk}, {}) == whole);
    }
}

TEST_CASE("every violation stops the reader with its close code") {
    const auto p = bytes({0x70});
    struct Case {
        const char* what;
        std::vector<uint8_t> stream;
        CloseCode code;
    };
    std::vector<uint8_t> unmasked = {0x82, 0x01, 0x70};
    std::vector<uint8_t> interleaved = client_frame(0x02, p);
    const auto second = client_frame(0x82, p);
    interleaved.insert(interleaved.end(), second.begin(), second.end());
    std::vector<uint8_t> top_bit = {0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4};
    const std::vector<Case> cases = {
        {"unmasked", unmasked, CloseCode::ProtocolError},
        {"RSV1", client_frame(0xc2, p), CloseCode::ProtocolError},
        {"RSV3", client_frame(0x92, p), CloseCode::ProtocolError},
        {"opcode 3", client_frame(0x83, p), CloseCode::ProtocolError},
        {"opcode 11", client_frame(0x8b, p), CloseCode::ProtocolError},
        {"text", client_frame(0x81, p), CloseCode::UnsupportedData},
        {"continuation first", client_frame(0x80, p), CloseCode::ProtocolError},
        {"binary inside a message", interleaved, CloseCode::ProtocolError},
        {"fragmented ping", client_frame(0x09, p), CloseCode::ProtocolError},
        {"ping of 126 bytes", client_frame(0x89, std::vector<uint8_t>(126, 1)), CloseCode::ProtocolError},
        {"64-bit length with the top bit", top_bit, CloseCode::ProtocolError},
    };
    for (const Case& c : cases) {
        INFO(c.what);
        CHECK(read_all(c.stream).error == uint16_t(c.code));
        CHECK(read_chunked(c.stream, {1}, {}).error == uint16_t(c.code));
    }
}

TEST_CASE("the frame and message limits are checked on the header, before the payload") {
    FrameLimits limits;
    limits.max_frame = 100;
    limits.max_message = 150;
    // Only the header of a 101-byte frame: refused without its payload.
    const auto header = bytes({0x82, 0x80 | 101, 1, 2, 3, 4});
    CHECK(read_all(header, limits).error == uint16_t(CloseCode::TooBig));
    // 80 + 80 in one message passes the message limit on the second header.
    std::vector<uint8_t> two = client_frame(0x02, std::vector<uint8_t>(80, 0));
    const auto second = client_frame(0x80, std::vector<uint8_t>(80, 0));
    two.insert(two.end(), second.begin(), second.end());
    const ReaderOutcome out = read_all(two, limits);
    CHECK(out.error == uint16_t(CloseCode::TooBig));
    CHECK(out.data.size() == 80);
    // Two messages of 80 each are fine: the count starts again per message.
    std::vector<uint8_t> apart = client_frame(0x82, std::vector<uint8_t>(80, 0));
    apart.insert(apart.end(), apart.begin(), apart.end());
    CHECK(read_all(apart, limits).error == 0);
    // Control frames have their own bound (125) whatever the limits say.
    FrameLimits tiny;
    tiny.max_frame = 1;
    tiny.max_message = 1;
    CHECK(read_all(client_frame(0x89, std::vector<uint8_t>(125, 0)), tiny).error == 0);
}

TEST_CASE("close codes: which a client may send") {
    CHECK(close_code_of({}) == 1005);
    CHECK(close_code_of(bytes({0x03})) == 0);
    CHECK(close_code_of(bytes({0x03, 0xe8})) == 1000);
    CHECK(close_code_of(bytes({0x03, 0xe8, 'b', 'y', 'e'})) == 1000);
    for (int code : {999, 1004, 1005, 1006, 1015, 1016, 2999, 5000})
        CHECK(close_code_of(bytes({code >> 8, code & 0xff})) == 0);
    for (int code : {1001, 1003, 1007, 1011, 1014, 3000, 4999})
        CHECK(close_code_of(bytes({code >> 8, code & 0xff})) == code);
}

TEST_CASE("close reasons must be UTF-8") {
    auto utf8 = [](std::initializer_list<int> b) { return valid_utf8(bytes(b)); };
    CHECK(valid_utf8(span_of("bye")));
    CHECK(valid_utf8(span_of("狸猫 😀")));
    CHECK(utf8({}));
    CHECK_FALSE(utf8({0xff, 0xfe}));
    CHECK_FALSE(utf8({0x80}));              // a continuation byte first
    CHECK_FALSE(utf8({0xc0, 0xaf}));        // overlong '/'
    CHECK_FALSE(utf8({0xe0, 0x80, 0xaf}));  // overlong
    CHECK_FALSE(utf8({0xed, 0xa0, 0x80}));  // a surrogate
    CHECK_FALSE(utf8({0xf4, 0x90, 0x80, 0x80}));  // past U+10FFFF
    CHECK_FALSE(utf8({0xe7, 0x8b}));        // cut short
    CHECK(utf8({0xf0, 0x9f, 0x98, 0x80}));
}

TEST_CASE("server headers use the shortest length form (§5.2)") {
    uint8_t out[kMaxServerHeader];
    CHECK(write_server_header(Opcode::Binary, 0, out) == 2);
    CHECK(out[0] == 0x82);
    CHECK(out[1] == 0);
    CHECK(write_server_header(Opcode::Binary, 125, out) == 2);
    CHECK(out[1] == 125);
    CHECK(write_server_header(Opcode::Binary, 126, out) == 4);
    CHECK(out[1] == 126);
    CHECK(out[2] == 0);
    CHECK(out[3] == 126);
    CHECK(write_server_header(Opcode::Close, 65535, out) == 4);
    CHECK(out[0] == 0x88);
    CHECK(write_server_header(Opcode::Binary, 65536, out) == 10);
    CHECK(out[1] == 127);
    CHECK(out[7] == 1);
    for (uint64_t n : {0ull, 125ull, 126ull, 65535ull, 65536ull}) CHECK(server_header_size(n) == write_server_header(Opcode::Binary, n, out));
}

TEST_CASE("the opening handshake: RFC 6455 §1.3's key, what is refused and why") {
    CHECK(accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    const std::string good =
        "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\nSec-WebSocket-Version: 13\r\n\r\n";
    UpgradeResult r = parse_upgrade(span_of(good + "frames"), 8192);
    REQUIRE(r.status == UpgradeStatus::Accepted);
    CHECK(r.request_bytes == good.size());
    CHECK(upgrade_response(r) ==
          "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n");

    // Every prefix is incomplete, none is refused; searched on from where the
    // last search stopped, a request given a byte at a time ends where it ends.
    size_t scanned = 0;
    for (size_t n = 0; n < good.size(); ++n) {
        const UpgradeResult partial = parse_upgrade(span_of(good.substr(0, n)), 8192, scanned);
        CHECK(partial.status == UpgradeStatus::Incomplete);
        CHECK(partial.scanned <= n);
        scanned = partial.scanned;
    }
    CHECK(parse_upgrade(span_of(good), 8192, scanned).status == UpgradeStatus::Accepted);

    auto status = [](const std::string& request) { return parse_upgrade(span_of(request), 8192).status; };
    auto with = [&](const std::string& from, const std::string& to) {
        std::string s = good;
        s.replace(s.find(from), from.size(), to);
        return s;
    };
    CHECK(status(with("GET", "POST")) == UpgradeStatus::Bad);
    CHECK(status(with("HTTP/1.1", "HTTP/1.0")) == UpgradeStatus::Bad);
    CHECK(status(with("Host: server.example.com\r\n", "")) == UpgradeStatus::Bad);  // §4.1: Host is required
    CHECK(status(with("Upgrade: websocket", "Upgrade: \xe9" "ebsocket")) == UpgradeStatus::Bad);  // not ASCII: no match
    CHECK(status(with("Upgrade: websocket\r\n", "")) == UpgradeStatus::Bad);
    CHECK(status(with("Connection: Upgrade", "Connection: keep-alive")) == UpgradeStatus::Bad);
    CHECK(status(with("Connection: Upgrade", "Connection: keep-alive, Upgrade")) == UpgradeStatus::Accepted);
    CHECK(status(with("Upgrade: websocket", "upgrade: WebSocket")) == UpgradeStatus::Accepted);
    CHECK(status(with("Version: 13", "Version: 8")) == UpgradeStatus::BadVersion);
    CHECK(status(with("dGhlIHNhbXBsZSBub25jZQ==", "short")) == UpgradeStatus::Bad);
    CHECK(status(with("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25j!Q==")) == UpgradeStatus::Bad);
    CHECK(status(with("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQE=")) == UpgradeStatus::Bad);  // 17 bytes
    CHECK(status("\x16\x03\x01\x02\x05 TLS hello\r\n\r\n") == UpgradeStatus::Bad);
    // The header block is bounded whether it ended or not.
    CHECK(parse_upgrade(span_of(std::string(9000, 'a')), 8192).status == UpgradeStatus::TooLarge);
    CHECK(parse_upgrade(span_of(with("Origin:", "X-Pad: " + std::string(9000, 'p') + "\r\nOrigin:")), 8192).status ==
          UpgradeStatus::TooLarge);

    UpgradeResult refused = parse_upgrade(span_of(with("Version: 13", "Version: 8")), 8192);
    const std::string response = upgrade_response(refused);
    CHECK(response.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
    CHECK(response.find("Sec-WebSocket-Version: 13\r\n") != std::string::npos);
    CHECK(response.find("Connection: close\r\n") != std::string::npos);
}

namespace {

namespace net = limaoim::net;
namespace stats = limaoim::stats;
using namespace std::chrono;

bool wait_for(const std::function<bool()>& done) {
    const auto end = steady_clock::now() + 5s;
    while (steady_clock::now() < end) {
        if (done()) return true;
        std::this_thread::sleep_for(2ms);
    }
    return done();
}

bool send_all(int fd, std::span<const uint8_t> bytes) {
    return ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) == ssize_t(bytes.size());
}

// True once the peer closed the connection (a read sees its end).
bool closed_by_peer(int fd) {
    char byte;
    return ::recv(fd, &byte, 1, 0) <= 0;
}

// Takes no byte: every connection it serves holds all it was sent.
struct TakesNothing final : net::Handler {
    std::atomic<int> closed{0};
    std::atomic<int> last_reason{-1};
    void on_open(net::ConnRef, net::Transport&) override {}
    net::DataResult on_data(net::ConnRef, std::span<const uint8_t>) override { return {0, 0}; }
    void on_deadline(net::ConnRef) override {}
    void on_close(net::ConnRef, net::CloseReason reason) override {
        last_reason = int(reason);
        ++closed;
    }
    void on_shutdown() override {}
};

// One worker with a TCP listener and a WebSocket one, both serving handlers
// that take nothing: a plain connection's bytes wait in the loop's
// reassembly buffer, a WebSocket one's unmasked payload in the transport's.
struct TwoLayers {
    static constexpr uint64_t kBudget = 128u << 10;
    std::unique_ptr<stats::WorkerBlock> block = std::make_unique<stats::WorkerBlock>();
    std::vector<stats::ConnCounters> conns = std::vector<stats::ConnCounters>(16);
    net::SharedLimits limits;
    TakesNothing plain_handler, ws_upper;
    std::unique_ptr<net::Worker> worker;
    std::unique_ptr<WebSocketTransport> websocket;
    uint16_t plain_port = limaoim::testing::free_port(), ws_port = limaoim::testing::free_port();

    explicit TwoLayers(net::WorkerOptions options = {}) {
        limits.max_conns = 16;
        options.slots = 16;
        options.recv_buffers = 64;
        options.reassembly_budget = kBudget;
        worker = std::make_unique<net::Worker>(options, limits, *block, conns.data());
        websocket = std::make_unique<WebSocketTransport>(*worker, ws_upper, WebSocketOptions{});
        for (auto [port, handler] : {std::pair<uint16_t, net::Handler*>{plain_port, &plain_handler},
                                     std::pair<uint16_t, net::Handler*>{ws_port, websocket.get()}}) {
            net::ListenerOptions listener;
            listener.addr = "127.0.0.1";
            listener.port = port;
            listener.handler = handler;
            worker->add_listener(listener);
        }
        net::Worker* self = worker.get();
        worker->set_peers(std::span<net::Worker* const>(&self, 1));
        std::string error;
        REQUIRE_MESSAGE(worker->start(error), error);
    }
    ~TwoLayers() {
        worker->request_stop(1000);
        worker->join();
    }

    uint64_t loop_and_ws() const { return block->reassembly_bytes.get(); }
    uint64_t ws_held() const { return block->ws_held_bytes.get(); }

    // A plain connection that sent `n` bytes of a packet.
    int plain_holding(size_t n) const {
        const int fd = limaoim::testing::connect_to(plain_port);
        REQUIRE(fd >= 0);
        REQUIRE(send_all(fd, std::vector<uint8_t>(n, 'p')));
        return fd;
    }
    // An upgraded connection that sent `n` bytes of a frame's payload (of
    // twice that announced).
    int ws_holding(size_t n) const {
        const int fd = limaoim::testing::connect_to(ws_port);
        REQUIRE(fd >= 0);
        const std::string request =
            "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        REQUIRE(send_all(fd, span_of(request)));
        std::string response;
        char c;
        while (response.find("\r\n\r\n") == std::string::npos && ::recv(fd, &c, 1, 0) == 1) response += c;
        REQUIRE(response.starts_with("HTTP/1.1 101"));
        std::vector<uint8_t> frame = client_frame(0x82, std::vector<uint8_t>(2 * n, 'w'));
        frame.resize(frame.size() - n);
        REQUIRE(send_all(fd, frame));
        return fd;
    }
};

}  // namespace

// Each layer had a budget of its own: a client could make a worker hold the
// loop's budget and the WebSocket layer's.
TEST_CASE("held bytes: a WebSocket connection and a plain one share one reassembly budget; the largest pays") {
    TwoLayers w;
    SUBCASE("the plain connection holds the most") {
        const int plain = w.plain_holding(100u << 10);
        REQUIRE(wait_for([&] { return w.loop_and_ws() == TwoLayers::kBudget; }));  // 128 KiB: all of it
        const int ws = w.ws_holding(40u << 10);
        REQUIRE(wait_for([&] { return w.plain_handler.closed == 1; }));
        CHECK(w.plain_handler.last_reason == int(net::CloseReason::ReassemblyBudget));
        CHECK(closed_by_peer(plain));
        CHECK(wait_for([&] { return w.ws_held() == 64u << 10; }));  // the WebSocket layer got its bytes
        CHECK(w.loop_and_ws() <= TwoLayers::kBudget);
        CHECK(w.ws_upper.closed == 0);
        ::close(plain);
        ::close(ws);
    }
    SUBCASE("the WebSocket connection holds the most") {
        const int ws = w.ws_holding(100u << 10);
        REQUIRE(wait_for([&] { return w.ws_held() == TwoLayers::kBudget; }));
        CHECK(w.loop_and_ws() == TwoLayers::kBudget);
        const int plain = w.plain_holding(1000);
        REQUIRE(wait_for([&] { return w.ws_upper.closed == 1; }));
        CHECK(w.ws_upper.last_reason == int(net::CloseReason::ReassemblyBudget));
        CHECK(closed_by_peer(ws));
        CHECK(wait_for([&] { return w.loop_and_ws() == 1024; }));  // the plain one's, and nothing held for the closed one
        CHECK(w.ws_held() == 0);
        CHECK(w.plain_handler.closed == 0);
        ::close(plain);
        ::close(ws);
    }
}

// The WebSocket layer's held bytes had neither the share nor the deadline.
TEST_CASE("held bytes: WebSocket's are bounded by the per-buffer share and the reassembly timeout too") {
    net::WorkerOptions options;
    SUBCASE("the share") {
        options.reassembly_per_connection = 8u << 10;
        TwoLayers w(options);
        const int ws = w.ws_holding(10u << 10);
        REQUIRE(wait_for([&] { return w.ws_upper.closed == 1; }));
        CHECK(w.ws_upper.last_reason == int(net::CloseReason::ReassemblyBudget));
        CHECK(w.loop_and_ws() == 0);
        ::close(ws);
    }
    SUBCASE("the timeout") {
        options.reassembly_timeout_ms = 200;
        TwoLayers w(options);
        const int ws = w.ws_holding(1000);
        REQUIRE(wait_for([&] { return w.ws_upper.closed == 1; }));
        CHECK(w.ws_upper.last_reason == int(net::CloseReason::ReassemblyTimeout));
        CHECK(closed_by_peer(ws));
        ::close(ws);
    }
}
