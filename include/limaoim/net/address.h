// Facts about addresses that every layer asks the same way.
#pragma once

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <string_view>

namespace limaoim::net {

// A host (a name or an address, without a port or brackets) that only this
// machine reaches: localhost (any case), 127.0.0.0/8, ::1. A name such as
// "127.example.com" is not one.
inline bool is_loopback_host(std::string_view host) {
    constexpr std::string_view kLocalhost = "localhost";
    if (std::equal(host.begin(), host.end(), kLocalhost.begin(), kLocalhost.end(),
                   [](char a, char b) { return (a | 0x20) == b; }))
        return true;
    const std::string text(host);
    in_addr v4{};
    if (inet_pton(AF_INET, text.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
    in6_addr v6{};
    return inet_pton(AF_INET6, text.c_str(), &v6) == 1 && std::memcmp(&v6, &in6addr_loopback, sizeof v6) == 0;
}

}  // namespace limaoim::net
