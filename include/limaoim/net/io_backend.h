// Which kernel interface the workers' loops use (WorkerOptions::io_backend).
// The loop's API is the same on both (src/net/io_backend.h is the seam).
#pragma once

#include <cstdint>
#include <string>

namespace limaoim::net {

// Auto: io_uring, or epoll when a ring cannot be created because io_uring
// is forbidden or absent (a container's seccomp profile, sysctl
// kernel.io_uring_disabled, an old kernel). IoUring refuses to start
// there, with the cause and the fix.
enum class IoBackendKind : uint8_t { Auto, IoUring, Epoll };

const char* io_backend_name(IoBackendKind kind);
// "auto", "io_uring", "epoll"; false for anything else.
bool parse_io_backend(const std::string& name, IoBackendKind& kind);

// What Auto comes to on this host, by creating (and closing) a small ring;
// `why` says why epoll, or is empty. Other kinds are returned as they are.
IoBackendKind resolve_io_backend(IoBackendKind requested, std::string& why);

}  // namespace limaoim::net
