// What the business server sees as JSON (SERVER.md §16.0): a message as
// MessageResp, for the HTTP API's answers (http/api.h) and the webhooks'
// bodies (webhook/webhook.h) alike. Above the IM core, which knows nothing
// of JSON; below both of its users, which may not include each other
// (tests/layering.sh).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "limaoim/im/message.h"

namespace limaoim::apijson {

// MessageResp, keys in the spec's order: header {no_persist, red_dot,
// sync_once} as 0/1, setting, message_id, message_idstr (the decimal id, our
// compatible rule for msg.offline too), client_msg_no, message_seq, from_uid,
// channel_id (as the message holds it: the recipient uid for person
// messages), channel_type, timestamp, payload (base64 of the plaintext).
nlohmann::ordered_json message_resp(const im::MessageView& message);

// Serialized without failing on strings that are not UTF-8 (uids of the
// binary protocol): such bytes are replaced by U+FFFD.
std::string dump(const nlohmann::ordered_json& value);

}  // namespace limaoim::apijson
