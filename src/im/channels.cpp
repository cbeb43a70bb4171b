#include "limaoim/im/channels.h"

#include <mutex>

namespace limaoim::im {

store::ChannelRecord Channel::record() const {
    store::ChannelRecord r;
    r.id = id;
    r.type = type;
    r.parent = parent;
    r.subscribers = subscribers;
    r.allowlist.assign(allowlist.begin(), allowlist.end());
    r.denylist.assign(denylist.begin(), denylist.end());
    return r;
}

Channel Channel::from(store::ChannelRecord&& r) {
    Channel c;
    c.id = std::move(r.id);
    c.type = r.type;
    c.parent = std::move(r.parent);
    for (std::string& uid : r.subscribers)
        if (c.subscriber_set.insert(uid).second) c.subscribers.push_back(std::move(uid));
    c.allowlist.insert(r.allowlist.begin(), r.allowlist.end());
    c.denylist.insert(r.denylist.begin(), r.denylist.end());
    return c;
}

void Channel::set_subscribers(const std::vector<std::string>& uids) {
    subscribers.clear();
    subscriber_set.clear();
    for (const std::string& uid : uids)
        if (subscriber_set.insert(uid).second) subscribers.push_back(uid);
}

std::shared_ptr<const Channel> Channels::find(uint8_t type, std::string_view id) const {
    // A lookup key without an allocation for ids that fit the small-string buffer.
    std::string k = key(type, id);
    std::lock_guard lock(mutex_);
    auto it = channels_.find(k);
    return it == channels_.end() ? nullptr : it->second;
}

void Channels::put(Channel&& channel) {
    auto snapshot = std::make_shared<const Channel>(std::move(channel));
    std::string k = key(snapshot->type, snapshot->id);
    std::lock_guard lock(mutex_);
    channels_[std::move(k)] = std::move(snapshot);
}

Channel Channels::copy_or_new(uint8_t type, std::string_view id) const {
    if (std::shared_ptr<const Channel> existing = find(type, id)) return *existing;
    Channel fresh;
    fresh.id = std::string(id);
    fresh.type = type;
    return fresh;
}

void Channels::erase(uint8_t type, std::string_view id) {
    std::string k = key(type, id);
    std::lock_guard lock(mutex_);
    channels_.erase(k);
}

void Channels::replace_stored(std::vector<Channel>&& stored) {
    decltype(channels_) fresh;
    for (Channel& channel : stored) {
        std::string k = key(channel.type, channel.id);
        fresh[std::move(k)] = std::make_shared<const Channel>(std::move(channel));
    }
    std::lock_guard lock(mutex_);
    for (auto& [k, channel] : channels_)
        if (channel->temporary) fresh.emplace(k, channel);
    channels_.swap(fresh);
}

size_t Channels::size() const {
    std::lock_guard lock(mutex_);
    return channels_.size();
}

bool Channels::is_system(std::string_view uid) const {
    std::lock_guard lock(mutex_);
    return system_uids_.contains(uid);
}

void Channels::set_system_uids(std::vector<std::string> uids) {
    UidSet set(uids.begin(), uids.end());
    std::lock_guard lock(mutex_);
    system_uids_.swap(set);
}

std::vector<std::string> Channels::system_uids() const {
    std::lock_guard lock(mutex_);
    return {system_uids_.begin(), system_uids_.end()};
}

bool Channels::allowed(const Channel& channel, std::string_view uid) const {
    if (is_system(uid)) return true;
    if (!channel.allowlist.empty()) return channel.allowlist.contains(uid);
    return !channel.denylist.contains(uid);
}

}  // namespace limaoim::im
