#include "limaoim/redis/pool.h"

namespace limaoim::redis {

Pool::Lease Pool::take() {
    std::unique_ptr<Client> client;
    {
        std::lock_guard lock(mutex_);
        if (!idle_.empty()) {
            client = std::move(idle_.back());
            idle_.pop_back();
        }
    }
    // Made outside the lock: a Client's constructor does not connect, but
    // other callers need not wait for it either.
    if (!client) client = std::make_unique<Client>(url_, timeout_ms_);
    return Lease(*this, std::move(client));
}

void Pool::give_back(std::unique_ptr<Client> client) {
    std::lock_guard lock(mutex_);
    idle_.push_back(std::move(client));
}

}  // namespace limaoim::redis
