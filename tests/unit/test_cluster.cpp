// The cluster's event encoding (cluster/redis_cluster.h): what one node
// publishes, another decodes into the same fan-out item, and a cut or
// corrupt event is refused rather than read past its end.
#include <doctest/doctest.h>

#include <cstring>

#include "limaoim/cluster/redis_cluster.h"
#include "limaoim/im/message.h"

using namespace limaoim;

namespace {

im::FanoutItem item_with(const im::Message& m) {
    im::FanoutItem item;
    const std::vector<uint8_t> bytes = im::encode(m.view());
    item.message = net::Payload::copy_of(bytes);
    item.sender_device = 2;
    return item;
}

im::Message sample() {
    im::Message m;
    m.header_flags = 0x04;
    m.channel_type = im::kGroupChannel;
    m.message_id = 123456789012345;
    m.message_seq = 7;
    m.timestamp = 1700000000;
    m.client_msg_no = "cmn-1";
    m.from_uid = "alice";
    m.channel_id = "g1";
    m.payload = std::string("hello\0world", 11);
    return m;
}

}  // namespace

TEST_CASE("cluster: a message event decodes to the item it was made from") {
    im::FanoutItem item = item_with(sample());
    item.queue_seqs = {{"alice", 3}, {"bob", 9}};

    SUBCASE("the channel's subscribers (no receiver list)") {
        const std::string event = cluster::detail::encode_message(5, item);
        im::FanoutItem out;
        REQUIRE(cluster::detail::decode_message(event, out));
        CHECK(out.receivers == nullptr);
        CHECK(out.sender_device == 2);
        CHECK(out.queue_seqs == item.queue_seqs);
        const auto a = item.message.bytes(), b = out.message.bytes();
        CHECK(std::vector<uint8_t>(a.begin(), a.end()) == std::vector<uint8_t>(b.begin(), b.end()));
        CHECK_FALSE(out.remote);  // the receiving fan-out marks it (Fanout::push_remote)
    }
    SUBCASE("an explicit receiver list, binary uids included") {
        item.receivers = std::make_shared<const std::vector<std::string>>(
            std::vector<std::string>{"bob", std::string("c\0d", 3), ""});
        const std::string event = cluster::detail::encode_message(5, item);
        im::FanoutItem out;
        REQUIRE(cluster::detail::decode_message(event, out));
        REQUIRE(out.receivers != nullptr);
        CHECK(*out.receivers == *item.receivers);
    }
}

TEST_CASE("cluster: a cut or corrupt message event is refused") {
    im::FanoutItem item = item_with(sample());
    item.receivers = std::make_shared<const std::vector<std::string>>(std::vector<std::string>{"bob", "carol"});
    item.queue_seqs = {{"bob", 1}};
    const std::string event = cluster::detail::encode_message(5, item);
    // Every cut: the header, the lists, or the message's own encoding ends early.
    for (size_t n = 0; n < event.size(); ++n) {
        im::FanoutItem out;
        CHECK_MESSAGE(!cluster::detail::decode_message(std::string_view(event).substr(0, n), out), n);
    }
    // Another event kind is not a message.
    std::string other = event;
    other[0] = 'L';
    im::FanoutItem out;
    CHECK_FALSE(cluster::detail::decode_message(other, out));
    // A receiver count far past the event's end is refused, not allocated.
    std::string huge = event;
    const uint32_t count = 0x7fffffff;
    std::memcpy(huge.data() + 4, &count, 4);
    CHECK_FALSE(cluster::detail::decode_message(huge, out));
}

TEST_CASE("cluster: a sealed event opens with the secret, within the age window only") {
    const std::string secret = "0123456789abcdef-cluster";
    const std::string event = std::string("T\x01\x00\x01", 4) + "alice";
    const uint64_t now = 1'800'000'000'000;
    const std::string sealed = cluster::detail::seal(secret, event, now);
    CHECK(sealed.size() == event.size() + 8 + 32);
    std::string_view opened;
    using cluster::detail::Unsealed;

    SUBCASE("verified") {
        CHECK(cluster::detail::unseal(secret, sealed, now, 30000, opened) == Unsealed::Ok);
        CHECK(opened == event);
        CHECK(cluster::detail::unseal(secret, sealed, now + 30000, 30000, opened) == Unsealed::Ok);  // clocks a little apart
        CHECK(cluster::detail::unseal(secret, sealed, now - 30000, 30000, opened) == Unsealed::Ok);
    }
    SUBCASE("forged: another secret, an edited event, an edited time, a bare event") {
        CHECK(cluster::detail::unseal("another secret!!", sealed, now, 30000, opened) == Unsealed::Forged);
        for (size_t at : {size_t(0), size_t(4), event.size(), sealed.size() - 1}) {
            std::string edited = sealed;
            edited[at] ^= 0x01;  // a byte of the event, its time, its MAC
            CHECK_MESSAGE(cluster::detail::unseal(secret, edited, now, 30000, opened) == Unsealed::Forged, at);
        }
        // What an attacker without the secret publishes: the old, unsealed format.
        CHECK(cluster::detail::unseal(secret, event + std::string(40, '\0'), now, 30000, opened) == Unsealed::Forged);
        // Another uid with the original seal.
        std::string other = sealed;
        other.replace(4, 5, "mallo");
        CHECK(cluster::detail::unseal(secret, other, now, 30000, opened) == Unsealed::Forged);
    }
    SUBCASE("replayed: sealed longer ago than the window, or ahead of it") {
        CHECK(cluster::detail::unseal(secret, sealed, now + 30001, 30000, opened) == Unsealed::Stale);
        CHECK(cluster::detail::unseal(secret, sealed, now + 3'600'000, 30000, opened) == Unsealed::Stale);
        CHECK(cluster::detail::unseal(secret, sealed, now - 30001, 30000, opened) == Unsealed::Stale);
    }
    SUBCASE("truncated: any cut is refused, an empty one too") {
        for (size_t keep = 0; keep < sealed.size(); ++keep)
            CHECK_MESSAGE(cluster::detail::unseal(secret, std::string_view(sealed).substr(0, keep), now, 30000, opened) ==
                              Unsealed::Forged,
                          keep);
        // Sealed empty: too short to be an event even with a valid MAC.
        CHECK(cluster::detail::unseal(secret, cluster::detail::seal(secret, "", now), now, 30000, opened) ==
              Unsealed::Forged);
    }
}
