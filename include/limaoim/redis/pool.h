// Clients for threads that call Redis concurrently (the store's callers,
// the API and fan-out threads asking the cluster for presence): each call
// leases a client for its duration, so calls do not queue on one socket.
// A client is made when none is idle; every client leased comes back when
// its Lease ends, a broken one too: it is disconnected (Client drops the
// connection after an I/O error) and connects again on its next use, its
// backoff (client.h) still in force. The pool holds at most as many clients
// as calls were ever in flight at once.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "limaoim/redis/client.h"

namespace limaoim::redis {

class Pool {
public:
    Pool(Url url, uint32_t timeout_ms) : url_(std::move(url)), timeout_ms_(timeout_ms) {}
    Pool(const Pool&) = delete;
    Pool& operator=(const Pool&) = delete;

    // One client, the caller's alone until the Lease ends.
    class Lease {
    public:
        Lease(Pool& pool, std::unique_ptr<Client> client) : pool_(pool), client_(std::move(client)) {}
        ~Lease() { pool_.give_back(std::move(client_)); }
        Lease(const Lease&) = delete;
        Lease& operator=(const Lease&) = delete;
        Client* operator->() { return client_.get(); }
        Client& operator*() { return *client_; }

    private:
        Pool& pool_;
        std::unique_ptr<Client> client_;
    };

    // Any thread. An idle client (the one returned last), or a new one: it
    // connects on its first call.
    Lease take();

private:
    void give_back(std::unique_ptr<Client> client);

    const Url url_;
    const uint32_t timeout_ms_;
    std::mutex mutex_;
    std::vector<std::unique_ptr<Client>> idle_;
};

}  // namespace limaoim::redis
