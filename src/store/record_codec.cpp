// The records both store engines keep (store/record_codec.h).
#include "limaoim/store/record_codec.h"

namespace limaoim::store {

std::string encode_channel(const ChannelRecord& channel) {
    std::string out;
    put_bytes(out, channel.parent);
    for (const auto* list : {&channel.subscribers, &channel.allowlist, &channel.denylist}) {
        put_varint(out, list->size());
        for (const auto& uid : *list) put_bytes(out, uid);
    }
    return out;
}

bool decode_channel(std::string_view value, ChannelRecord& channel) {
    RecordReader in{value};
    channel.parent = in.bytes();
    for (auto* list : {&channel.subscribers, &channel.allowlist, &channel.denylist}) {
        // Each entry takes at least one byte: a count larger than what is left is corrupt.
        uint64_t count = in.varint();
        if (count > in.rest.size()) return false;
        for (uint64_t i = 0; i < count && in.ok; ++i) list->push_back(in.bytes());
    }
    return in.finished();
}

std::string encode_conversations(const std::vector<ConversationRecord>& list) {
    std::string out;
    put_varint(out, list.size());
    for (const ConversationRecord& c : list) {
        put_bytes(out, c.channel_id);
        out.push_back(char(c.channel_type));
        put_varint(out, c.unread);
        put_be(out, uint64_t(c.timestamp), 8);
        put_varint(out, c.last_msg_seq);
        put_bytes(out, c.last_client_msg_no);
        put_be(out, uint64_t(c.last_msg_id), 8);
        put_be(out, uint64_t(c.version), 8);
    }
    return out;
}

bool decode_conversations(std::string_view value, std::vector<ConversationRecord>& list) {
    RecordReader in{value};
    uint64_t count = in.varint();
    if (count > in.rest.size()) return false;  // as in decode_channel
    for (uint64_t i = 0; i < count && in.ok; ++i) {
        ConversationRecord c;
        c.channel_id = in.bytes();
        c.channel_type = uint8_t(in.be(1));
        c.unread = uint32_t(in.varint());
        c.timestamp = int64_t(in.be(8));
        c.last_msg_seq = uint32_t(in.varint());
        c.last_client_msg_no = in.bytes();
        c.last_msg_id = int64_t(in.be(8));
        c.version = int64_t(in.be(8));
        list.push_back(std::move(c));
    }
    return in.finished();
}

}  // namespace limaoim::store
