// Threads for work that blocks: fsync, a store engine's calls, a DNS lookup.
// Nothing of that kind may run on a worker ring, so a worker hands the job
// here and goes on serving its connections; the job's result comes back to
// that worker as an Envelope in its inbox (envelope.h), handled on its own
// thread like any other.
//
// The queue is bounded: submit() refuses when it is full, and the caller
// answers its client with an error instead of waiting. Jobs run in
// submission order per pool; with several threads, in parallel.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "limaoim/net/envelope.h"

namespace limaoim::net {

class Worker;

class BlockingPool {
public:
    // The job runs on a pool thread; the Envelope it returns is posted to
    // the worker that submitted it.
    using Job = std::function<Envelope()>;

    BlockingPool(std::string name, unsigned threads, size_t max_queued);
    ~BlockingPool();  // stop()
    BlockingPool(const BlockingPool&) = delete;
    BlockingPool& operator=(const BlockingPool&) = delete;

    // Any thread. False when the queue is full or the pool is stopping.
    bool submit(Worker& owner, Job job);
    // Runs what is queued, then joins the threads. Stop the pool before the
    // workers it posts to: a result for a worker that has exited and whose
    // inbox is full would be retried forever.
    void stop();
    size_t queued() const;

private:
    struct Task {
        Worker* owner;
        Job job;
    };
    void run();

    std::string name_;
    size_t max_queued_;
    mutable std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<Task> tasks_;
    bool stopping_ = false;
    std::vector<std::thread> threads_;
};

}  // namespace limaoim::net
