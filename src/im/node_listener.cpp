#include "limaoim/im/node_listener.h"
#include "limaoim/log/log.h"

namespace limaoim::im {

NodeListener::NodeListener(store::Store& store, TokenCache& tokens, Channels& channels, Conversations& conversations,
                           Fanout& fanout, const SessionKicker& kicker, std::mutex& channel_write)
    : store_(store), tokens_(tokens), channels_(channels), conversations_(conversations), fanout_(fanout),
      kicker_(kicker), channel_write_(channel_write) {}

bool NodeListener::load_cached(std::string& error) {
    std::lock_guard lock(channel_write_);
    store::Status s = store_.load_tokens([this](store::TokenRecord&& t) { tokens_.set_digest(t.uid, t.device_flag, t.digest); });
    std::vector<Channel> stored;
    if (s) s = store_.load_channels([&stored](store::ChannelRecord&& r) { stored.push_back(Channel::from(std::move(r))); });
    std::vector<std::string> system;
    if (s) s = store_.load_system_uids(system);
    if (!s) {
        error = "loading from the store: " + s.error;
        return false;
    }
    channels_.replace_stored(std::move(stored));
    channels_.set_system_uids(std::move(system));
    return true;
}

void NodeListener::on_remote_message(FanoutItem&& item) { fanout_.push_remote(std::move(item)); }

void NodeListener::on_remote_login(std::string_view uid, uint8_t device_flag, uint64_t login_ms) {
    kicker_.kick(uid, device_flag, kKickByOtherNode, uint32_t(login_ms & 0xffffff));
}

void NodeListener::on_token_changed(std::string_view uid, uint8_t device_flag, const std::array<uint8_t, 32>& digest) {
    tokens_.set_digest(uid, device_flag, digest);
    kicker_.kick(uid, device_flag, kKickByToken);
}

void NodeListener::on_channel_changed(uint8_t type, std::string_view id) {
    store::ChannelRecord record;
    bool found = false;
    if (store::Status s = store_.get_channel(type, id, record, found); !s) {
        log::write(log::Level::Warn, "core", "reloading a channel another node changed: %s", s.error.c_str());
        return;  // the next resync reads it
    }
    std::lock_guard lock(channel_write_);
    if (found)
        channels_.put(Channel::from(std::move(record)));
    else
        channels_.erase(type, id);
}

void NodeListener::on_system_uids_changed() {
    std::vector<std::string> system;
    if (store::Status s = store_.load_system_uids(system); !s) {
        log::write(log::Level::Warn, "core", "reloading the system uids: %s", s.error.c_str());
        return;
    }
    std::lock_guard lock(channel_write_);
    channels_.set_system_uids(std::move(system));
}

void NodeListener::on_conversation_unread_set(std::string_view uid, std::string_view channel_id, uint8_t type,
                                              uint32_t unread) {
    // The node that made the edit stored it: this one's memory follows.
    store::Status unused;
    conversations_.set_unread(uid, channel_id, type, unread, unused, false);
}

void NodeListener::on_conversation_removed(const std::vector<std::string>& uids, std::string_view channel_id,
                                           uint8_t type) {
    (void)conversations_.remove(uids, channel_id, type, false);  // memory only: cannot fail
}

bool NodeListener::on_resync() {
    std::string error;
    if (load_cached(error)) return true;
    log::write(log::Level::Warn, "core", "reading the cached tokens and channels again: %s (tried again in 1 s)",
               error.c_str());
    return false;
}

}  // namespace limaoim::im
