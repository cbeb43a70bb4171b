#include "limaoim/im/resolver.h"

#include <pthread.h>

#include "limaoim/log/clock.h"
#include "limaoim/log/log.h"

namespace limaoim::im {

namespace {

constexpr uint8_t kReasonError = 0;

using clock::steady_ms;

}  // namespace

Resolver::Resolver(const ResolverOptions& options, Refresh refresh, Judge judge, HandBack hand_back)
    : options_(options), refresh_(std::move(refresh)), judge_(std::move(judge)), hand_back_(std::move(hand_back)) {}

Resolver::~Resolver() { stop(); }

void Resolver::start() {
    for (uint32_t i = 0; i < options_.threads; ++i) {
        threads_.emplace_back([this] { run(); });
        pthread_setname_np(threads_.back().native_handle(), "resolver");
    }
}

bool Resolver::park(CommitRequest&& request) {
    const MessageView m = decode_checked(request.message.bytes());
    std::string key = store::log_name(m.channel_type, m.channel_id);
    std::lock_guard lock(mutex_);
    if (stopping_ || parked_ >= options_.max_parked) return false;
    if (auto failed = failed_until_.find(key); failed != failed_until_.end()) {
        if (steady_ms() < failed->second) return false;  // failed lately: reason 0 without asking again
        failed_until_.erase(failed);
    }
    auto [it, fresh] = channels_.try_emplace(key);
    Channel& channel = it->second;
    if (fresh) {
        pending_channels_.store(channels_.size(), std::memory_order_relaxed);
        // Not asked about yet. (A channel a thread is asking about takes
        // what joins meanwhile with the rest, judged on the same answer.)
        channel.type = m.channel_type;
        channel.id = std::string(m.channel_id);
        to_fetch_.push_back(std::move(key));
        wake_.notify_one();
    }
    channel.parked.push_back(std::move(request));
    ++parked_;
    return true;
}

void Resolver::run() {
    for (;;) {
        std::string key;
        uint8_t type = 0;
        std::string id;
        bool stopping = false;
        {
            std::unique_lock lock(mutex_);
            wake_.wait(lock, [this] { return stopping_ || !to_fetch_.empty(); });
            if (to_fetch_.empty()) return;  // stopping, nothing left
            key = std::move(to_fetch_.front());
            to_fetch_.pop_front();
            const Channel& channel = channels_.at(key);
            type = channel.type;
            id = channel.id;
            stopping = stopping_;
        }
        // Stopping: what was not asked yet is refused without asking (a dead
        // datasource would hold the stop one timeout per channel).
        std::string error = "the server is stopping";
        const bool fetched = !stopping && refresh_(type, id, error);
        if (!fetched && !stopping)
            log::write(log::Level::Warn, "datasource", "%s (its SENDs get reason 0)", error.c_str());
        // The channel stays here until every SEND parked on it is handed
        // back, those that come meanwhile too: a SEND the worker could judge
        // once the cache has the channel is parked behind them while
        // pending() says so, so a sender's SENDs reach the committer in order.
        for (bool first = true;; first = false) {
            std::vector<CommitRequest> requests;
            {
                std::lock_guard lock(mutex_);
                auto it = channels_.find(key);
                requests.swap(it->second.parked);
                parked_ -= requests.size();
                if (requests.empty()) {
                    channels_.erase(it);
                    pending_channels_.store(channels_.size(), std::memory_order_relaxed);
                    break;
                }
                if (first && !fetched && !stopping) remember_failure(key);
            }
            judge_all(requests, fetched);
        }
    }
}

void Resolver::remember_failure(const std::string& key) {
    const int64_t now = steady_ms();
    if (failed_until_.size() >= options_.max_failed)
        std::erase_if(failed_until_, [now](const auto& entry) { return entry.second <= now; });
    if (failed_until_.size() < options_.max_failed) failed_until_[key] = now + int64_t(options_.retry_ms);
}

bool Resolver::pending(uint8_t type, std::string_view id) const {
    if (pending_channels_.load(std::memory_order_relaxed) == 0) return false;
    const std::string key = store::log_name(type, id);
    std::lock_guard lock(mutex_);
    return channels_.contains(key);
}

void Resolver::judge_all(std::vector<CommitRequest>& requests, bool fetched) {
    for (CommitRequest& request : requests) {
        request.judged = fetched ? judge_(decode_checked(request.message.bytes())) : kReasonError;
        hand_back_(std::move(request));
    }
}

void Resolver::stop() {
    {
        std::lock_guard lock(mutex_);
        if (stopping_ && threads_.empty()) return;
        stopping_ = true;
    }
    wake_.notify_all();
    // The threads ask about what is queued before they return; without
    // threads (never started) what is parked is refused.
    for (std::thread& t : threads_) t.join();
    threads_.clear();
    std::vector<CommitRequest> left;
    {
        std::lock_guard lock(mutex_);
        for (auto& [key, channel] : channels_)
            for (CommitRequest& request : channel.parked) left.push_back(std::move(request));
        channels_.clear();
        pending_channels_.store(0, std::memory_order_relaxed);
        to_fetch_.clear();
        parked_ = 0;
    }
    judge_all(left, false);
}

size_t Resolver::parked() const {
    std::lock_guard lock(mutex_);
    return parked_;
}

}  // namespace limaoim::im
