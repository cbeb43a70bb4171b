// fuzz_ws_frame: the WebSocket frame reader (ws/frame.h) must read the same
// data, control frames and verdict from a client's byte stream however it is
// cut into reads, and the upgrade parser must take any bytes. The chunked side
// keeps the unconsumed tail as the transport and the loop do
// (tests/support/ws_reader_driver.h).
//
// Input: [limit selector][n][n chunk sizes, each byte + 1][stream...]
// The chunk sizes repeat until the stream is used up; n == 0 means one read.
#include <vector>

#include "fuzz_support.h"
#include "limaoim/ws/upgrade.h"
#include "ws_reader_driver.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace limaoim;
    fuzz::InputReader in(data, size);
    const uint8_t selector = in.u8();
    ws::FrameLimits limits;
    if (selector & 0x80) {  // small limits, so TooBig is reachable with short inputs
        limits.max_frame = uint32_t(selector & 0x3f) * 4;
        limits.max_message = limits.max_frame + uint32_t(selector & 0x40);
    }
    const uint8_t chunk_count = in.u8();
    std::vector<size_t> chunks;
    for (uint8_t i = 0; i < chunk_count; ++i) chunks.push_back(size_t(in.u8()) + 1);
    const std::span<const uint8_t> stream = in.rest();

    const testing::ReaderOutcome whole = testing::read_chunked(stream, {}, limits);
    const testing::ReaderOutcome cut = testing::read_chunked(stream, chunks, limits);
    FUZZ_CHECK(whole == cut);
    FUZZ_CHECK(whole.data.size() <= stream.size());
    for (const auto& control : whole.controls) FUZZ_CHECK(control.second.size() <= 125);

    const ws::UpgradeResult upgrade = ws::parse_upgrade(stream, 8192);
    if (upgrade.status == ws::UpgradeStatus::Accepted) {
        FUZZ_CHECK(upgrade.request_bytes <= stream.size());
        FUZZ_CHECK(upgrade.accept.size() == 28);
    }
    if (upgrade.status != ws::UpgradeStatus::Incomplete) FUZZ_CHECK(!ws::upgrade_response(upgrade).empty());
    return 0;
}
