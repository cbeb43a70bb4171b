// Self-test of bench/bench_ws.h against the examples of RFC 6455 (§1.3 the
// accept value, §5.7 the frames) and the parser's refusals: the meson test
// `bench-ws`. Exit status 0 when every check passed.
#include <cstdio>
#include <string>
#include <vector>

#include "bench_ws.h"

namespace ws = limaoim::bench::ws;

namespace {

int failures = 0;

void check(bool ok, const char* what) {
    if (!ok) {
        ++failures;
        std::printf("FAIL: %s\n", what);
    }
}

std::vector<uint8_t> bytes(std::initializer_list<int> list) {
    std::vector<uint8_t> out;
    for (int b : list) out.push_back(static_cast<uint8_t>(b));
    return out;
}

std::span<const uint8_t> as_bytes(std::string_view text) {
    return {reinterpret_cast<const uint8_t*>(text.data()), text.size()};
}

// Collects what a parser reports.
struct Collector {
    std::string data;
    std::vector<uint8_t> data_opcodes;
    std::vector<std::pair<uint8_t, std::string>> controls;  // complete control frames
    ws::ControlAssembler assembler;
    bool on_data(uint8_t opcode, std::span<const uint8_t> chunk) {
        if (data_opcodes.empty() || data_opcodes.back() != opcode) data_opcodes.push_back(opcode);
        data.append(reinterpret_cast<const char*>(chunk.data()), chunk.size());
        return true;
    }
    bool on_control(uint8_t opcode, std::span<const uint8_t> chunk, size_t offset, size_t total) {
        if (assembler.add(chunk, offset, total)) {
            const auto payload = assembler.payload();
            controls.emplace_back(opcode, std::string(reinterpret_cast<const char*>(payload.data()), payload.size()));
        }
        return true;
    }
};

// Feeds the stream whole, then byte by byte, then in 3-byte pieces: the same
// result each time. Returns the byte-by-byte collector.
Collector parse(const std::vector<uint8_t>& stream, ws::FeedResult expected, const char* what) {
    Collector whole, single, threes;
    ws::FrameParser a, b, c;
    check(a.feed(stream, whole) == expected, what);
    ws::FeedResult last = ws::FeedResult::Ok;
    for (size_t i = 0; i < stream.size() && last == ws::FeedResult::Ok; ++i) last = b.feed(std::span(stream).subspan(i, 1), single);
    check(last == expected, what);
    last = ws::FeedResult::Ok;
    for (size_t i = 0; i < stream.size() && last == ws::FeedResult::Ok; i += 3)
        last = c.feed(std::span(stream).subspan(i, std::min<size_t>(3, stream.size() - i)), threes);
    check(last == expected, what);
    check(whole.data == single.data && single.data == threes.data, what);
    check(whole.controls == single.controls && single.controls == threes.controls, what);
    return single;
}

void test_accept() {
    char accept[ws::kAcceptLength];
    check(ws::accept_for("dGhlIHNhbXBsZSBub25jZQ==", accept), "accept_for runs");
    check(std::string_view(accept, sizeof accept) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "RFC 6455 §1.3 accept value");
    char key[ws::kKeyLength];
    ws::make_key(0x7468652073616d70ULL, 0x6c65206e6f6e6365ULL, key);  // "the sample nonce"
    check(std::string_view(key, sizeof key) == "dGhlIHNhbXBsZSBub25jZQ==", "make_key of the §1.3 nonce");
}

void test_upgrade_response() {
    const std::string ok =
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    const std::string_view accept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
    auto result = ws::check_upgrade_response(as_bytes(ok + "\x82\x01\x80"), accept);
    check(result.status == ws::UpgradeStatus::Accepted && result.header_size == ok.size(), "101 accepted, frames after it");
    for (size_t cut = 0; cut < ok.size(); ++cut)
        if (ws::check_upgrade_response(as_bytes(std::string_view(ok).substr(0, cut)), accept).status != ws::UpgradeStatus::Incomplete)
            check(false, "a cut response is incomplete");
    const std::string lower =
        "HTTP/1.1 101 Switching Protocols\r\nupgrade:WebSocket\r\nconnection: keep-alive, upgrade\r\n"
        "sec-websocket-accept:  s3pPLMBiTxaQ9kYGzzhZRbK+xOo=  \r\n\r\n";
    check(ws::check_upgrade_response(as_bytes(lower), accept).status == ws::UpgradeStatus::Accepted,
          "header names case-insensitive, token lists");
    const std::string wrong =
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: x3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    check(ws::check_upgrade_response(as_bytes(wrong), accept).status == ws::UpgradeStatus::Refused, "wrong accept refused");
    const std::string missing = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    check(ws::check_upgrade_response(as_bytes(missing), accept).status == ws::UpgradeStatus::Refused, "missing accept refused");
    const std::string bad = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
    check(ws::check_upgrade_response(as_bytes(bad), accept).status == ws::UpgradeStatus::Refused, "400 refused");
    const std::string ext = "HTTP/1.1 101 x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "
                            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n";
    check(ws::check_upgrade_response(as_bytes(ext), accept).status == ws::UpgradeStatus::Refused, "unasked extension refused");
    std::string request;
    ws::append_upgrade_request(request, "127.0.0.1", 2122, "dGhlIHNhbXBsZSBub25jZQ==");
    check(request == "GET / HTTP/1.1\r\nHost: 127.0.0.1:2122\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
          "upgrade request");
}

void test_writer() {
    // §5.7: a single-frame masked text message "Hello", and a masked Pong.
    std::vector<uint8_t> frame;
    ws::append_masked_frame(frame, ws::kText, as_bytes("Hello"), 0x37fa213d);
    check(frame == bytes({0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58}), "§5.7 masked text Hello");
    frame.clear();
    ws::append_masked_frame(frame, ws::kPong, as_bytes("Hello"), 0x37fa213d);
    check(frame == bytes({0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58}), "§5.7 masked pong Hello");
    // Length forms: 125 in 7 bits, 126 and 65535 in 16, 65536 in 64.
    for (size_t length : {size_t{0}, size_t{125}, size_t{126}, size_t{65535}, size_t{65536}, size_t{100000}}) {
        std::vector<uint8_t> payload(length);
        for (size_t i = 0; i < length; ++i) payload[i] = static_cast<uint8_t>(i * 7 + 3);
        std::string out;
        ws::append_masked_frame(out, ws::kBinary, payload, 0xdeadbeef);
        const size_t header = ws::masked_header_size(length);
        check(out.size() == header + length, "masked frame size");
        check(header == (length < 126 ? 6u : length <= 0xFFFF ? 8u : 14u), "header size by length");
        // Unmask what was written and compare, also in odd pieces (offsets).
        std::vector<uint8_t> body(out.begin() + static_cast<ptrdiff_t>(header), out.end());
        for (size_t at = 0; at < body.size(); at += 13) ws::apply_mask(body.data() + at, std::min<size_t>(13, body.size() - at), 0xdeadbeef, at);
        check(body == payload, "mask round trip in pieces");
    }
    // The CONNECT of bench_connection's ping: one byte 0x70 in a binary frame.
    std::vector<uint8_t> ping;
    ws::append_masked_frame(ping, ws::kBinary, bytes({0x70}), 0x01020304);
    check(ping == bytes({0x82, 0x81, 0x01, 0x02, 0x03, 0x04, 0x71}), "a one-byte LiMaoIM PING in a binary frame");
}

void test_parser() {
    // §5.7: unmasked text "Hello"; fragmented "Hel" + "lo"; unmasked ping.
    auto c = parse(bytes({0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f}), ws::FeedResult::Ok, "§5.7 unmasked text");
    check(c.data == "Hello" && c.data_opcodes == bytes({ws::kText}), "§5.7 unmasked text payload");
    c = parse(bytes({0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f}), ws::FeedResult::Ok, "§5.7 fragmented text");
    check(c.data == "Hello" && c.data_opcodes == bytes({ws::kText}), "§5.7 fragmented text payload");
    c = parse(bytes({0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f}), ws::FeedResult::Ok, "§5.7 ping");
    check(c.controls.size() == 1 && c.controls[0].first == ws::kPing && c.controls[0].second == "Hello", "§5.7 ping payload");
    // §5.7: 256 bytes and 64 KiB binary, unmasked.
    for (size_t length : {size_t{256}, size_t{65536}}) {
        std::vector<uint8_t> stream = length == 256 ? bytes({0x82, 0x7E, 0x01, 0x00})
                                                    : bytes({0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00});
        for (size_t i = 0; i < length; ++i) stream.push_back(static_cast<uint8_t>(i));
        c = parse(stream, ws::FeedResult::Ok, "§5.7 binary 256 / 64 KiB");
        check(c.data.size() == length && static_cast<uint8_t>(c.data[255]) == 255 && c.data_opcodes == bytes({ws::kBinary}),
              "§5.7 binary payload");
    }
    // Several LiMaoIM PONGs (one byte each) in frames back to back, a ping
    // and an empty pong among them, and a fragmented binary message with a
    // control frame between its fragments.
    c = parse(bytes({0x82, 0x01, 0x80, 0x82, 0x02, 0x80, 0x80, 0x89, 0x00, 0x8a, 0x00, 0x02, 0x01, 0x20, 0x89, 0x01, 0x41,
                     0x00, 0x01, 0x21, 0x80, 0x01, 0x22}),
              ws::FeedResult::Ok, "stream of frames");
    check(c.data == std::string("\x80\x80\x80\x20\x21\x22", 6) && c.data_opcodes == bytes({ws::kBinary}), "stream payload");
    check(c.controls.size() == 3 && c.controls[0] == std::pair<uint8_t, std::string>{ws::kPing, ""} &&
              c.controls[1] == std::pair<uint8_t, std::string>{ws::kPong, ""} &&
              c.controls[2] == std::pair<uint8_t, std::string>{ws::kPing, "A"},
          "control frames in the stream");
    // Close with a code.
    c = parse(bytes({0x88, 0x02, 0x03, 0xEB}), ws::FeedResult::Ok, "close");
    check(c.controls.size() == 1 && c.controls[0].first == ws::kClose && ws::close_code(as_bytes(c.controls[0].second)) == 1003,
          "close 1003");
    // Refusals.
    parse(bytes({0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58}), ws::FeedResult::ProtocolError, "masked server frame");
    parse(bytes({0x82, 0xFF, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4}), ws::FeedResult::ProtocolError, "masked with 64-bit length");
    parse(bytes({0x82, 0x7E, 0x00, 0x05, 1, 2, 3, 4, 5}), ws::FeedResult::ProtocolError, "16-bit length under 126");
    parse(bytes({0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0x01, 0x00}), ws::FeedResult::ProtocolError, "64-bit length under 65536");
    parse(bytes({0x09, 0x00}), ws::FeedResult::ProtocolError, "fragmented ping");
    parse(bytes({0x89, 0x7E, 0x00, 0x80}), ws::FeedResult::ProtocolError, "ping longer than 125");
    parse(bytes({0x80, 0x01, 0x00}), ws::FeedResult::ProtocolError, "continuation outside a message");
    parse(bytes({0x02, 0x01, 0x00, 0x82, 0x01, 0x00}), ws::FeedResult::ProtocolError, "new message inside a message");
    parse(bytes({0xC2, 0x00}), ws::FeedResult::ProtocolError, "RSV1 set");
    parse(bytes({0x83, 0x00}), ws::FeedResult::ProtocolError, "reserved data opcode");
    parse(bytes({0x8B, 0x00}), ws::FeedResult::ProtocolError, "reserved control opcode");
    ws::FrameParser parser;
    Collector sink;
    check(parser.feed(bytes({0x88, 0x7E}), sink) == ws::FeedResult::ProtocolError &&
              std::string_view(parser.error()) == "control frame longer than 125 bytes",
          "error text");
    // A sink that stops: feed() says so.
    struct Stopper {
        bool on_data(uint8_t, std::span<const uint8_t>) { return false; }
        bool on_control(uint8_t, std::span<const uint8_t>, size_t, size_t) { return false; }
    } stopper;
    ws::FrameParser stopped;
    check(stopped.feed(bytes({0x82, 0x01, 0x80, 0x82, 0x01, 0x80}), stopper) == ws::FeedResult::Stopped, "stopped by the sink");
}

}  // namespace

int main() {
    test_accept();
    test_upgrade_response();
    test_writer();
    test_parser();
    if (failures == 0) std::printf("bench_ws: all checks passed (sizeof FrameParser = %zu)\n", sizeof(ws::FrameParser));
    return failures == 0 ? 0 : 1;
}
