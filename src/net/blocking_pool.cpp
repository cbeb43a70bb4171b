#include "limaoim/net/blocking_pool.h"

#include <pthread.h>

#include <chrono>

#include "limaoim/net/worker.h"

namespace limaoim::net {

BlockingPool::BlockingPool(std::string name, unsigned threads, size_t max_queued)
    : name_(std::move(name)), max_queued_(max_queued) {
    for (unsigned i = 0; i < threads; ++i) {
        threads_.emplace_back([this] { run(); });
        // Named for top -H and perf: "<name>" truncated to the kernel's 15 bytes.
        pthread_setname_np(threads_.back().native_handle(), name_.substr(0, 15).c_str());
    }
}

BlockingPool::~BlockingPool() { stop(); }

bool BlockingPool::submit(Worker& owner, Job job) {
    {
        std::lock_guard lock(mutex_);
        if (stopping_ || tasks_.size() >= max_queued_) return false;
        tasks_.push_back(Task{&owner, std::move(job)});
    }
    wake_.notify_one();
    return true;
}

size_t BlockingPool::queued() const {
    std::lock_guard lock(mutex_);
    return tasks_.size();
}

void BlockingPool::stop() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
    for (std::thread& t : threads_)
        if (t.joinable()) t.join();
}

void BlockingPool::run() {
    for (;;) {
        Task task;
        {
            std::unique_lock lock(mutex_);
            wake_.wait(lock, [this] { return stopping_ || !tasks_.empty(); });
            if (tasks_.empty()) return;  // stopping, and everything queued has run
            task = std::move(tasks_.front());
            tasks_.pop_front();
        }
        Envelope result = task.job();
        // The result must arrive: a full inbox is waited out here, on a thread
        // that may block, never on the worker's.
        while (!task.owner->post(std::move(result))) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
}

}  // namespace limaoim::net
