#include "limaoim/im/resolver.h"

#include <pthread.h>

#include <chrono>

#include "limaoim/log/log.h"

namespace limaoim::im {

namespace {

constexpr uint8_t kReasonError = 0;

int64_t steady_ms() {
    using namespace std::chrono;
    return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
}

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
    const std::optional<MessageView> m = decode(request.message.bytes());
    if (!m) return false;  // cannot happen: the requester encoded it
    std::string key = store::log_name(m->channel_type, m->channel_id);
    std::lock_guard lock(mutex_);
    if (stopping_ || parked_ >= options_.max_parked) return false;
    if (auto failed = failed_until_.find(key); failed != failed_until_.end()) {
        if (steady_ms() < failed->second) return false;  // failed lately: reason 0 without asking again
        failed_until_.erase(failed);
    }
    auto [it, fresh] = channels_.try_emplace(key);
    Channel& channel = it->second;
    if (fresh) {
        // Not asked about yet. (A channel a thread is asking about takes
        // what joins meanwhile with the rest, judged on the same answer.)
        channel.type = m->channel_type;
        channel.id = std::string(m->channel_id);
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
        {
            std::unique_lock lock(mutex_);
            wake_.wait(lock, [this] { return stopping_ || !to_fetch_.empty(); });
            if (to_fetch_.empty()) return;  // stopping, nothing left
            key = std::move(to_fetch_.front());
            to_fetch_.pop_front();
            const Channel& channel = channels_.at(key);
            type = channel.type;
            id = channel.id;
        }
        std::string error;
        const bool fetched = refresh_(type, id, error);
        if (!fetched) log::write(log::Level::Warn, "datasource", "%s (its SENDs get reason 0)", error.c_str());
        std::vector<CommitRequest> requests;
        {
            std::lock_guard lock(mutex_);
            auto it = channels_.find(key);
            requests = std::move(it->second.parked);
            channels_.erase(it);
            parked_ -= requests.size();
            if (!fetched) {
                if (failed_until_.size() >= options_.max_failed) {
                    const int64_t now = steady_ms();
                    std::erase_if(failed_until_, [now](const auto& entry) { return entry.second <= now; });
                }
                if (failed_until_.size() < options_.max_failed)
                    failed_until_[key] = steady_ms() + int64_t(options_.retry_ms);
            }
        }
        judge_all(requests, fetched);
    }
}

void Resolver::judge_all(std::vector<CommitRequest>& requests, bool fetched) {
    for (CommitRequest& request : requests) {
        const std::optional<MessageView> m = decode(request.message.bytes());
        request.judged = fetched && m ? judge_(*m) : kReasonError;
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
