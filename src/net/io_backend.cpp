// What both backends share: the receive buffers' memory and the way a
// failed system call ends the process.
#include "io_backend.h"

#include "limaoim/log/log.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace limaoim::net::detail {

void fatal(const char* what, int err) {
    log::write(log::Level::Error, "worker", "%s: %s", what, strerror(err));
    std::abort();
}

IoBackend::IoBackend(const WorkerOptions& options, std::vector<Completion>& completions)
    : options_(options), completions_(completions), buffer_size_(options.recv_buffer_size) {}

IoBackend::~IoBackend() {
    if (buffers_) munmap(buffers_, buffers_bytes_);
}

bool IoBackend::map_buffers(std::string& error) {
    buffers_bytes_ = size_t(options_.recv_buffers) * options_.recv_buffer_size;
    void* mem = mmap(nullptr, buffers_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE | MAP_POPULATE,
                     -1, 0);
    if (mem == MAP_FAILED) {
        error = std::string("cannot map receive buffers: ") + strerror(errno);
        return false;
    }
    buffers_ = static_cast<uint8_t*>(mem);
    return true;
}

}  // namespace limaoim::net::detail
