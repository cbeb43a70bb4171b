// The SENDs a worker could not judge (their channel is not cached from the
// datasource yet, SERVER.md §13) wait here, off the committer thread, while
// threads of their own ask the business server: a slow or hanging datasource
// holds up only the SENDs that need its answer, never the pipeline.
//
//   worker ── CommitRequest{resolve} ──► Committer::submit ──► Resolver::park
//                                                               │ per channel: one fetch for
//                                                               │ every SEND parked on it
//   committer queue ◄── the same requests, `judged`, in order ◄─┘
//
// A SEND to a channel with SENDs parked (pending()) is parked behind them even
// when the worker could judge it, and a channel stays parked until all of
// its SENDs are handed back, so one sender's SENDs reach the committer in
// the order they were sent. A channel whose fetch failed answers its SENDs
// reason 0 without asking again for ResolverOptions::retry_ms (a dead datasource costs one timeout
// per channel per retry period). Memory: at most max_parked requests (each
// session has at most --max-sends-in-flight of them) and max_failed
// remembered failures; past max_parked a SEND is refused (reason 0) at once.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "limaoim/im/committer.h"
#include "limaoim/im/message.h"

namespace limaoim::im {

struct ResolverOptions {
    uint32_t threads = 4;         // channels asked about at once
    size_t max_parked = 16384;    // SENDs waiting for an answer, all channels
    uint32_t retry_ms = 1000;     // a failed channel is not asked again for this long
    size_t max_failed = 100000;   // failed channels remembered at most
};

class Resolver final : public ChannelResolver {
public:
    // Brings the channel (type, id) into the cache if it needs it; false with
    // `error` when the datasource failed. Called on the resolver's threads,
    // several at once.
    using Refresh = std::function<bool(uint8_t type, std::string_view id, std::string& error)>;
    // The SENDACK reason for a message whose channel was just refreshed.
    using Judge = std::function<uint8_t(const MessageView& message)>;
    // Takes a judged request back (the committer's queue); may wait for room.
    using HandBack = std::function<void(CommitRequest&& request)>;

    Resolver(const ResolverOptions& options, Refresh refresh, Judge judge, HandBack hand_back);
    ~Resolver() override;  // stop()
    Resolver(const Resolver&) = delete;
    Resolver& operator=(const Resolver&) = delete;

    void start();
    // Any thread, never waits: parks a request marked `resolve`. False when
    // max_parked are waiting, when its channel failed within retry_ms, or
    // when stopping: the caller answers it reason 0.
    bool park(CommitRequest&& request) override;
    // Judges what is parked (asking the datasource still), hands it back,
    // and joins the threads: before the committer stops.
    void stop();

    size_t parked() const;
    // Any thread: SENDs to (type, id) are parked or being handed back. A
    // SEND to it that the worker could judge itself is parked all the same,
    // behind them (the same sender's SENDs stay in order). No lock while
    // nothing is parked anywhere.
    bool pending(uint8_t type, std::string_view id) const;

private:
    struct Channel {
        uint8_t type = 0;
        std::string id;
        std::vector<CommitRequest> parked;  // in arrival order
    };

    void run();
    void remember_failure(const std::string& key);  // under mutex_
    // Hands `requests` back judged: `fetched` false means reason 0 for all.
    void judge_all(std::vector<CommitRequest>& requests, bool fetched);

    const ResolverOptions options_;
    const Refresh refresh_;
    const Judge judge_;
    const HandBack hand_back_;

    mutable std::mutex mutex_;
    std::condition_variable wake_;
    std::unordered_map<std::string, Channel> channels_;  // by log name: queued or being asked about
    std::deque<std::string> to_fetch_;                   // keys of channels_ no thread has taken yet
    std::unordered_map<std::string, int64_t> failed_until_;  // by log name, steady ms
    size_t parked_ = 0;
    std::atomic<size_t> pending_channels_{0};  // channels_.size(), read without the lock
    bool stopping_ = false;
    std::vector<std::thread> threads_;
};

}  // namespace limaoim::im
