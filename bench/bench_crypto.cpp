// bench_crypto: the crypto work of one v3/v4 CONNECT on the server
// (PROTOCOL.md §5.1-§5.2: fresh key pair, shared secret, salt, session key,
// base64 of the public key), timed single-threaded, as a whole and step by
// step, plus the per-SEND MsgKey check and payload decryption.
//
//     bench_crypto [iterations]     (default 20000, at most 10000000)
//
// Each measurement stops after `iterations` rounds or 20 s, whichever comes
// first, and prints ops/s and µs/op twice: by wall-clock time, and by the
// thread's CPU time, which is what a worker core spends and which stays
// meaningful when other processes share the machine.
#include <time.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "limaoim/base64/base64.h"
#include "limaoim/proto/crypto.h"

namespace {

using namespace limaoim::proto;
namespace base64 = limaoim::base64;

constexpr long kDefaultIterations = 20000;
constexpr long kMaxIterations = 10'000'000;
constexpr double kTimeLimitSeconds = 20;

double seconds(clockid_t clock) {
    timespec ts{};
    clock_gettime(clock, &ts);
    return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

// Runs `round` up to `iterations` times (or until the time limit) and prints
// the rate; false when a round failed.
template <typename Round>
bool measure(const char* name, long iterations, Round&& round) {
    const double wall_start = seconds(CLOCK_MONOTONIC);
    const double cpu_start = seconds(CLOCK_THREAD_CPUTIME_ID);
    long done = 0;
    double wall = 0;
    while (done < iterations && wall < kTimeLimitSeconds) {
        if (!round()) {
            std::fprintf(stderr, "%s: round %ld failed\n", name, done);
            return false;
        }
        ++done;
        if (done % 256 == 0) wall = seconds(CLOCK_MONOTONIC) - wall_start;
    }
    wall = seconds(CLOCK_MONOTONIC) - wall_start;
    const double cpu = seconds(CLOCK_THREAD_CPUTIME_ID) - cpu_start;
    std::printf("%-28s %8ld ops | wall %9.0f ops/s %8.2f us/op | cpu %9.0f ops/s %8.2f us/op\n", name, done,
                double(done) / wall, wall * 1e6 / double(done), double(done) / cpu, cpu * 1e6 / double(done));
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    long iterations = kDefaultIterations;
    if (argc == 2) iterations = std::strtol(argv[1], nullptr, 10);
    if (argc > 2 || iterations < 1 || iterations > kMaxIterations) {
        std::fprintf(stderr, "usage: %s [iterations 1..%ld]\n", argv[0], kMaxIterations);
        return 2;
    }

    crypto::KeyPair client;
    if (!crypto::generate_keypair(client)) return 1;
    const std::string client_key_base64 = base64::encode(client.public_key);

    crypto::KeyPair server;
    crypto::Key32 secret{};
    std::array<char, base64::encoded_size(32)> server_key_base64{};
    std::array<char, crypto::kSaltLength> salt{};
    crypto::SessionKey session;

    bool ok = measure("handshake (server side)", iterations, [&] {
        std::optional<crypto::Key32> peer = crypto::parse_client_key(client_key_base64);
        if (!peer || !crypto::generate_keypair(server)) return false;
        if (!crypto::shared_secret(server.private_key, *peer, secret)) return false;
        base64::encode(server.public_key, server_key_base64.data());
        crypto::make_salt(salt.data());
        session = crypto::derive_session_key(secret, {salt.data(), salt.size()});
        return true;
    });
    ok = ok && measure("  generate_keypair", iterations, [&] { return crypto::generate_keypair(server); });
    ok = ok && measure("  shared_secret (after gen)", iterations, [&] {
        return crypto::generate_keypair(server) &&
               crypto::shared_secret(server.private_key, client.public_key, secret);
    });
    ok = ok && measure("  shared_secret (imported)", iterations, [&] {
        return crypto::shared_secret(server.private_key, client.public_key, secret);
    });
    ok = ok && measure("  make_salt", iterations, [&] {
        crypto::make_salt(salt.data());
        return true;
    });
    ok = ok && measure("  derive_session_key", iterations, [&] {
        session = crypto::derive_session_key(secret, {salt.data(), salt.size()});
        return true;
    });

    // One SEND as the gateway checks it: MsgKey, then the payload.
    crypto::Cipher cipher;
    std::string payload;
    cipher.seal_payload(session, R"({"type":1,"content":"hello, a message of typical length"})", payload);
    SendPacket send;
    send.client_seq = 7;
    send.client_msg_no = "c0ffee00c0ffee00c0ffee00c0ffee00";
    send.channel_id = "bob";
    send.channel_type = 1;
    send.payload = payload;
    std::string sign;
    crypto::append_send_sign(send, sign);
    std::array<char, 32> msg_key{};
    cipher.msg_key(session, sign, msg_key.data());
    send.msg_key = {msg_key.data(), msg_key.size()};
    std::string plain;
    ok = ok && measure("SEND verify + open", iterations, [&] {
        plain.clear();
        return cipher.verify_send(session, send) && cipher.open_payload(session, send.payload, plain);
    });
    return ok ? 0 : 1;
}
