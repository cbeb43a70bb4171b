// A bounded queue drained by one thread of its own (the committer's, the
// fan-out's): any thread pushes, the queue's thread waits for items and
// takes them, oldest first, in batches; stop() wakes everyone, and the
// thread, which sees stopping() and takes what is still queued, is joined.
//
// A push past the capacity is the caller's choice: try_push() refuses it
// (the caller answers an error at once), push_all() waits for room (back-
// pressure). The thread is woken only when it waits for as many items as
// are now queued: one notification per batch, not per push.
#pragma once

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <limits>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace limaoim::util {

template <typename T>
class WorkQueue {
public:
    explicit WorkQueue(size_t capacity) : capacity_(capacity) {}
    ~WorkQueue() { stop(); }
    WorkQueue(const WorkQueue&) = delete;
    WorkQueue& operator=(const WorkQueue&) = delete;

    // Runs `body` on the queue's thread, named `name` (at most 15 characters).
    template <typename Body>
    void start(const char* name, Body&& body) {
        // The thread names itself its queue's owner before it runs `body`
        // (thread_ may not be assigned yet when it starts).
        thread_ = std::thread([this, body = std::forward<Body>(body)]() mutable {
            owner_.store(std::this_thread::get_id(), std::memory_order_relaxed);
            body();
        });
        pthread_setname_np(thread_.native_handle(), name);
    }
    // Stops taking pushes that refuse (try_push), ends every wait and joins
    // the thread. Not from the thread itself; a second call does nothing.
    void stop() {
        {
            std::lock_guard lock(mutex_);
            stopping_ = true;
        }
        wake_.notify_all();
        room_.notify_all();
        if (thread_.joinable()) thread_.join();
    }
    bool stopping() {
        std::lock_guard lock(mutex_);
        return stopping_;
    }
    size_t capacity() const { return capacity_; }
    // The queue's thread is the caller: for the state only that thread may
    // touch (LIMAOIM_ASSERT it where that state is used).
    bool on_own_thread() const { return owner_.load(std::memory_order_relaxed) == std::this_thread::get_id(); }
    size_t size() {
        std::lock_guard lock(mutex_);
        return items_.size();
    }

    // Any thread. Queues `item` unless stopping or `limit` (the capacity at
    // most) items are queued: then false, and `item` is untouched.
    bool try_push(T&& item, size_t limit) {
        std::unique_lock lock(mutex_);
        if (stopping_ || items_.size() >= std::min(limit, capacity_)) return false;
        items_.push_back(std::move(item));
        notify_taker(lock);
        return true;
    }
    bool try_push(T&& item) { return try_push(std::move(item), capacity_); }
    // Any thread. Waits while the capacity is reached (not once stopping),
    // then queues all of `items`, which may go past it, and clears them.
    void push_all(std::vector<T>& items) {
        std::unique_lock lock(mutex_);
        room_.wait(lock, [this] { return stopping_ || items_.size() < capacity_; });
        for (T& item : items) items_.push_back(std::move(item));
        items.clear();
        notify_taker(lock);
    }

    // The queue's thread. Until `count` items are queued, or stopping;
    // returns how many are queued.
    size_t wait(size_t count) {
        std::unique_lock lock(mutex_);
        waiting_for_ = count;
        wake_.wait(lock, [&] { return stopping_ || items_.size() >= count; });
        waiting_for_ = 0;
        return items_.size();
    }
    // The same, or until `deadline`.
    template <typename Clock, typename Duration>
    size_t wait_until(size_t count, std::chrono::time_point<Clock, Duration> deadline) {
        std::unique_lock lock(mutex_);
        waiting_for_ = count;
        wake_.wait_until(lock, deadline, [&] { return stopping_ || items_.size() >= count; });
        waiting_for_ = 0;
        return items_.size();
    }
    // The queue's thread: sleeps for `pause` unless stop() comes first;
    // true when stopping.
    template <typename Rep, typename Period>
    bool sleep_unless_stopped(std::chrono::duration<Rep, Period> pause) {
        std::unique_lock lock(mutex_);
        return wake_.wait_for(lock, pause, [this] { return stopping_; });
    }
    // The queue's thread: moves up to `max` items, oldest first, to the end
    // of `out` (a vector or a deque of T); returns how many are left queued.
    // An empty vector takes the whole queue by a swap, and the queue its buffer.
    template <typename Out>
    size_t take(Out& out, size_t max = std::numeric_limits<size_t>::max()) {
        std::unique_lock lock(mutex_);
        if (items_.empty()) return 0;
        if constexpr (std::is_same_v<Out, std::vector<T>>) {
            if (out.empty() && items_.size() <= max) {
                out.swap(items_);
                lock.unlock();
                room_.notify_all();
                return 0;
            }
        }
        const size_t n = std::min(max, items_.size());
        out.insert(out.end(), std::make_move_iterator(items_.begin()), std::make_move_iterator(items_.begin() + n));
        items_.erase(items_.begin(), items_.begin() + n);
        const size_t left = items_.size();
        lock.unlock();
        room_.notify_all();
        return left;
    }

private:
    // After a push, with the lock held: wakes the thread if what it waits
    // for is queued now (it checks under the lock before waiting: no wake-up is lost).
    void notify_taker(std::unique_lock<std::mutex>& lock) {
        const bool wake = waiting_for_ != 0 && items_.size() >= waiting_for_;
        lock.unlock();
        if (wake) wake_.notify_one();
    }

    const size_t capacity_;
    std::mutex mutex_;
    std::condition_variable wake_;  // the queue's thread: items, or stopping
    std::condition_variable room_;  // push_all(): room, or stopping
    std::vector<T> items_;
    size_t waiting_for_ = 0;  // how many items the thread waits for (0: it does not)
    bool stopping_ = false;
    std::thread thread_;
    std::atomic<std::thread::id> owner_{};  // set by the thread itself (on_own_thread)
};

}  // namespace limaoim::util
