#include "limaoim/im/channel_order.h"

#include <limits>

namespace limaoim::im {

void ChannelOrder::admit(FanoutItem&& item, const MessageView& m, int64_t now_ms, std::vector<FanoutItem>& ready) {
    key_ = log_channel_id(m);
    key_.push_back(char(m.channel_type));
    auto found = channels_.find(key_);
    if (found == channels_.end()) {
        if (channels_.size() >= limits_.max_channels)
            std::erase_if(channels_, [](const auto& entry) { return entry.second.held.empty(); });
        found = channels_.emplace(key_, Channel{.released = m.message_seq - 1}).first;
    }
    Channel& channel = found->second;
    const uint32_t seq = m.message_seq;
    if (seq > channel.released + 1) {
        // A gap: an earlier message is still on its way from another node.
        // (The same seq twice would be a bug elsewhere: delivered, not lost.)
        if (!channel.held.try_emplace(seq, std::move(item)).second) {
            ready.push_back(std::move(item));
            return;
        }
        holds_.push_back(Hold{now_ms, key_, seq});
        ++held_count_;
        ++counts_.held;
        while (held_count_ > limits_.max_held) end_oldest_hold(ready);
        return;
    }
    // Next in order, or older than what went already (its hold ended): at once.
    ready.push_back(std::move(item));
    if (seq == channel.released + 1) {
        channel.released = seq;
        release_in_order(channel, ready);
        drop_released_holds();
    }
}

bool ChannelOrder::still_held(const Hold& hold) const {
    auto found = channels_.find(hold.key);
    return found != channels_.end() && found->second.held.contains(hold.seq);
}

void ChannelOrder::drop_released_holds() {
    while (!holds_.empty() && !still_held(holds_.front())) holds_.pop_front();
}

void ChannelOrder::expire(int64_t now_ms, std::vector<FanoutItem>& ready) {
    while (!holds_.empty() && holds_.front().since_ms + limits_.hold_limit.count() <= now_ms) end_oldest_hold(ready);
    drop_released_holds();
}

int64_t ChannelOrder::next_expiry_ms() const {
    return holds_.empty() ? std::numeric_limits<int64_t>::max() : holds_.front().since_ms + limits_.hold_limit.count();
}

void ChannelOrder::end_oldest_hold(std::vector<FanoutItem>& ready) {
    const Hold hold = std::move(holds_.front());
    holds_.pop_front();
    if (!still_held(hold)) return;  // released already
    ++counts_.expired;
    release_through(channels_.find(hold.key)->second, hold.seq, ready);
}

void ChannelOrder::release_through(Channel& channel, uint32_t seq, std::vector<FanoutItem>& ready) {
    auto it = channel.held.begin();
    for (; it != channel.held.end() && it->first <= seq; ++it) {
        ready.push_back(std::move(it->second));
        --held_count_;
    }
    channel.held.erase(channel.held.begin(), it);
    channel.released = std::max(channel.released, seq);
    release_in_order(channel, ready);
}

void ChannelOrder::release_in_order(Channel& channel, std::vector<FanoutItem>& ready) {
    for (auto it = channel.held.begin(); it != channel.held.end() && it->first == channel.released + 1;
         it = channel.held.erase(it)) {
        ready.push_back(std::move(it->second));
        --held_count_;
        ++channel.released;
    }
}

}  // namespace limaoim::im
