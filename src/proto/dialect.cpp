#include "limaoim/proto/dialect.h"

namespace limaoim::proto {

namespace {

uint8_t echo_version(uint8_t connect_version) { return connect_version; }
bool always_encrypted(uint8_t) { return true; }
void no_connack_extras(ConnackPacket&, uint8_t, uint8_t, uint64_t) {}

}  // namespace

const Dialect kLiMaoIMDialect = {
    DialectId::LiMaoIM,
    "limaoim",
    kLatestVersion,
    echo_version,
    has_crypto,
    always_encrypted,
    /*refused_send_setting=*/0,
    /*recv_setting_mask=*/0xff,  // the SEND's byte as it came (PROTOCOL.md §4.8)
    no_connack_extras,
    split_frame,
    decode,
    encoded_size,
    encode,
};

const Dialect& dialect(DialectId id) { return id == DialectId::WuKongIM ? kWuKongIMDialect : kLiMaoIMDialect; }

}  // namespace limaoim::proto
