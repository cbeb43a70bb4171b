// The JSON shape of a message for the business server: MessageResp
// (SERVER.md §16.0), shared by the HTTP API (http/api.h) and the webhooks
// (webhook/webhook.h).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "limaoim/im/message.h"

namespace limaoim::im {

// MessageResp, keys in the spec's order: header {no_persist, red_dot,
// sync_once} as 0/1, setting, message_id, message_idstr (the decimal id, our
// compatible rule for msg.offline too), client_msg_no, message_seq, from_uid,
// channel_id (as the message holds it: the recipient uid for person
// messages), channel_type, timestamp, payload (base64 of the plaintext).
nlohmann::ordered_json message_resp(const MessageView& message);

// Serialized without failing on strings that are not UTF-8 (uids of the
// binary protocol): such bytes are replaced by U+FFFD.
std::string dump_json(const nlohmann::ordered_json& value);

}  // namespace limaoim::im
