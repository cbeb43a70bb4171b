#include "limaoim/apijson/message_json.h"
#include "limaoim/base64/base64.h"

namespace limaoim::apijson {

nlohmann::ordered_json message_resp(const im::MessageView& m) {
    nlohmann::ordered_json header;
    header["no_persist"] = m.no_persist() ? 1 : 0;
    header["red_dot"] = m.red_dot() ? 1 : 0;
    header["sync_once"] = m.sync_once() ? 1 : 0;
    nlohmann::ordered_json out;
    out["header"] = std::move(header);
    out["setting"] = m.setting;
    out["message_id"] = m.message_id;
    out["message_idstr"] = std::to_string(m.message_id);
    out["client_msg_no"] = m.client_msg_no;
    out["message_seq"] = m.message_seq;
    out["from_uid"] = m.from_uid;
    out["channel_id"] = m.channel_id;
    out["channel_type"] = m.channel_type;
    out["timestamp"] = m.timestamp;
    out["payload"] = base64::encode(m.payload);
    // WuKongIM's MessageResp fields, present when set (a LiMaoIM message has neither).
    if (m.expire) out["expire"] = m.expire;
    if (!m.topic.empty()) out["topic"] = m.topic;
    return out;
}

std::string dump(const nlohmann::ordered_json& value) {
    return value.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace limaoim::apijson
