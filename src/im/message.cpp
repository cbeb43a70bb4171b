#include "limaoim/im/message.h"
#include "limaoim/log/log.h"

#include <zlib.h>

#include <cstring>

namespace limaoim::im {

namespace {

constexpr uint8_t kFormat = 1;
constexpr uint8_t kFormatWithExtras = 2;  // expire and topic follow the payload
constexpr size_t kFixed = 1 + 1 + 1 + 1 + 8 + 4 + 4;  // version .. timestamp
constexpr size_t kIdOffset = 1 + 1 + 1 + 1;
constexpr size_t kSeqOffset = kIdOffset + 8;

template <typename T>
uint8_t* put(uint8_t* out, T value) {
    std::memcpy(out, &value, sizeof(T));  // little-endian hosts only (x86-64, arm64)
    return out + sizeof(T);
}

template <typename Length>
uint8_t* put_bytes(uint8_t* out, std::string_view bytes) {
    out = put(out, Length(bytes.size()));
    if (!bytes.empty()) std::memcpy(out, bytes.data(), bytes.size());
    return out + bytes.size();
}

struct Reader {
    std::span<const uint8_t> bytes;
    size_t at = 0;
    bool ok = true;

    template <typename T>
    T get() {
        T value{};
        if (bytes.size() - at < sizeof(T)) {
            ok = false;
            return value;
        }
        std::memcpy(&value, bytes.data() + at, sizeof(T));
        at += sizeof(T);
        return value;
    }
    template <typename Length>
    std::string_view get_bytes() {
        const size_t n = get<Length>();
        if (!ok || bytes.size() - at < n) {
            ok = false;
            return {};
        }
        std::string_view view(reinterpret_cast<const char*>(bytes.data() + at), n);
        at += n;
        return view;
    }
};

uint32_t crc32_of(std::string_view text) {
    return uint32_t(::crc32(0L, reinterpret_cast<const Bytef*>(text.data()), uInt(text.size())));
}

bool has_extras(const MessageView& m) { return m.expire || !m.topic.empty(); }

}  // namespace

size_t encoded_size(const MessageView& m) {
    return kFixed + 2 + m.client_msg_no.size() + 2 + m.from_uid.size() + 2 + m.channel_id.size() + 4 +
           m.payload.size() + (has_extras(m) ? 4 + 2 + m.topic.size() : 0);
}

void encode(const MessageView& m, std::span<uint8_t> out) {
    uint8_t* p = out.data();
    p = put(p, has_extras(m) ? kFormatWithExtras : kFormat);
    p = put(p, uint8_t(m.header_flags & kKeptHeaderFlags));
    p = put(p, m.setting);
    p = put(p, m.channel_type);
    p = put(p, m.message_id);
    p = put(p, m.message_seq);
    p = put(p, m.timestamp);
    p = put_bytes<uint16_t>(p, m.client_msg_no);
    p = put_bytes<uint16_t>(p, m.from_uid);
    p = put_bytes<uint16_t>(p, m.channel_id);
    p = put_bytes<uint32_t>(p, m.payload);
    if (has_extras(m)) {
        p = put(p, m.expire);
        put_bytes<uint16_t>(p, m.topic);
    }
}

std::vector<uint8_t> encode(const MessageView& m) {
    std::vector<uint8_t> out(encoded_size(m));
    encode(m, out);
    return out;
}

MessageView decode_checked(std::span<const uint8_t> bytes) {
    std::optional<MessageView> m = decode(bytes);
    LIMAOIM_ASSERT(m);
    return *m;
}

std::optional<MessageView> decode(std::span<const uint8_t> bytes) {
    Reader r{bytes};
    const uint8_t format = r.get<uint8_t>();
    if (format != kFormat && format != kFormatWithExtras) return std::nullopt;
    MessageView m;
    m.header_flags = r.get<uint8_t>();
    m.setting = r.get<uint8_t>();
    m.channel_type = r.get<uint8_t>();
    m.message_id = r.get<int64_t>();
    m.message_seq = r.get<uint32_t>();
    m.timestamp = r.get<int32_t>();
    m.client_msg_no = r.get_bytes<uint16_t>();
    m.from_uid = r.get_bytes<uint16_t>();
    m.channel_id = r.get_bytes<uint16_t>();
    m.payload = r.get_bytes<uint32_t>();
    if (format == kFormatWithExtras) {
        m.expire = r.get<uint32_t>();
        m.topic = r.get_bytes<uint16_t>();
    }
    if (!r.ok || r.at != bytes.size()) return std::nullopt;
    return m;
}

void patch_id(std::span<uint8_t> encoded, int64_t id) { std::memcpy(encoded.data() + kIdOffset, &id, 8); }
void patch_seq(std::span<uint8_t> encoded, uint32_t seq) { std::memcpy(encoded.data() + kSeqOffset, &seq, 4); }

int64_t encoded_id(std::span<const uint8_t> encoded) {
    int64_t id;
    std::memcpy(&id, encoded.data() + kIdOffset, 8);
    return id;
}

uint32_t encoded_seq(std::span<const uint8_t> encoded) {
    uint32_t seq;
    std::memcpy(&seq, encoded.data() + kSeqOffset, 4);
    return seq;
}

std::string fake_channel_id(std::string_view from, std::string_view to) {
    std::string id;
    id.reserve(from.size() + 1 + to.size());
    const bool from_first = crc32_of(from) > crc32_of(to);
    id.append(from_first ? from : to).append(1, '@').append(from_first ? to : from);
    return id;
}

std::string log_channel_id(const MessageView& m) {
    if (m.channel_type != kPersonChannel || m.from_uid.empty()) return std::string(m.channel_id);
    return fake_channel_id(m.from_uid, m.channel_id);
}

void person_receivers(const MessageView& message, std::vector<std::string>& out) {
    if (!message.from_uid.empty()) out.emplace_back(message.from_uid);
    if (message.channel_id != message.from_uid) out.emplace_back(message.channel_id);
}

}  // namespace limaoim::im
