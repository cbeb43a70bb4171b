#include "limaoim/proto/dialect.h"

namespace limaoim::proto {

namespace {

uint8_t echo_version(uint8_t connect_version) { return connect_version; }
bool always_encrypted(uint8_t) { return true; }

}  // namespace

const Dialect kLiMaoIMDialect = {
    DialectId::LiMaoIM, "limaoim", kLatestVersion, echo_version, has_crypto, always_encrypted,
    split_frame,        decode,    encoded_size,   encode,
};

const Dialect& dialect(DialectId id) { return id == DialectId::WuKongIM ? kWuKongIMDialect : kLiMaoIMDialect; }

}  // namespace limaoim::proto
