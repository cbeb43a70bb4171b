// fuzz_http: the HTTP API's whole ring-side and pool-side path. Arbitrary
// bytes are cut into reads and framed by http::RequestParser the way
// http::Server does it (the unconsumed tail of a read is fed again with the
// next read); every complete request goes through Api::handle against a
// fake im::Service and is serialized. Must never crash, leak, or throw; every
// response body must be JSON with a known status, and a request's bytes are
// never consumed twice or skipped.
//
// Input: [flags][n][n read sizes, each byte + 1][stream...]
//   flags bit 0: the Api has a bearer secret ("k"); bits 1-2: the core's
//   outcome (ok, bad request, unavailable); bit 3: the parser screens each
//   request at its headers (Api::screen), as the server does; bits 4-7: body
//   limit selector.
#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "fuzz_support.h"
#include "limaoim/http/api.h"
#include "limaoim/http/server.h"

namespace {

using namespace limaoim;

// Answers every call with one outcome; the message readers return messages
// whose strings are not all UTF-8 (the binary protocol allows any bytes).
struct FakeService final : im::Service {
    im::Outcome outcome;

    std::vector<im::Message> some_messages(uint32_t limit) const {
        std::vector<im::Message> out;
        for (uint32_t i = 0; i < limit && i < 3; ++i) {
            im::Message m;
            m.header_flags = uint8_t(i * 3);
            m.message_id = -int64_t(i) * 7919;
            m.message_seq = i + 1;
            m.from_uid = i == 1 ? "\xff\xfe" : "alice";
            m.channel_id = "bob";
            m.payload = std::string(i, '\0');
            out.push_back(std::move(m));
        }
        return out;
    }

    im::Outcome set_token(std::string_view, std::string_view, uint8_t, uint8_t) override { return outcome; }
    std::vector<std::string> online_uids(const std::vector<std::string>& uids) override { return uids; }
    im::Outcome add_system_uids(const std::vector<std::string>&) override { return outcome; }
    im::Outcome remove_system_uids(const std::vector<std::string>&) override { return outcome; }
    im::Outcome put_channel(std::string_view, uint8_t, std::string_view, const std::vector<std::string>&) override {
        return outcome;
    }
    im::Outcome add_subscribers(std::string_view, uint8_t, const std::vector<std::string>&, bool) override {
        return outcome;
    }
    im::Outcome remove_subscribers(std::string_view, uint8_t, const std::vector<std::string>&) override {
        return outcome;
    }
    im::Outcome delete_channel(std::string_view, uint8_t) override { return outcome; }
    im::Outcome edit_list(std::string_view, uint8_t, im::ListKind, im::ListEdit, const std::vector<std::string>&) override {
        return outcome;
    }
    im::Outcome send(const im::ApiSend& message, im::ApiSent&) override {
        FUZZ_CHECK(!message.payload.empty());
        FUZZ_CHECK(!message.channel_id.empty() || !message.subscribers.empty());
        FUZZ_CHECK((message.header_flags & ~0x07) == 0);
        return outcome;
    }
    im::Outcome sync(std::string_view, uint32_t, im::PageLimit limit, std::vector<im::Message>& out) override {
        FUZZ_CHECK(limit.count > 0 && limit.bytes > 0);
        if (outcome) out = some_messages(limit.count);
        return outcome;
    }
    im::Outcome sync_ack(std::string_view, uint32_t seq) override {
        FUZZ_CHECK(seq != 0);
        return outcome;
    }
    im::Outcome channel_messages(std::string_view, std::string_view, uint8_t, uint32_t from_seq, uint32_t to_seq,
                                 im::PageLimit limit, bool, std::vector<im::Message>& out, bool&) override {
        FUZZ_CHECK(limit.count > 0 && limit.bytes > 0);
        FUZZ_CHECK(to_seq == 0 || from_seq < to_seq);
        if (outcome) out = some_messages(limit.count);
        return outcome;
    }
    im::Outcome conversations(std::string_view uid, std::vector<im::ConversationView>& out) override {
        FUZZ_CHECK(!uid.empty());
        if (outcome) {
            im::ConversationView view;
            view.conversation = {"peer", 1, 2, 1700000000, 3, "no", 42, 1700000000000};
            out.push_back(view);
            view.last_message = some_messages(1).front();
            out.push_back(view);
        }
        return outcome;
    }
    im::Outcome set_unread(std::string_view uid, std::string_view channel_id, uint8_t type, uint32_t) override {
        FUZZ_CHECK(!uid.empty() && !channel_id.empty() && type != 0);
        return outcome;
    }
    im::Outcome delete_conversation(const std::vector<std::string>& uids, std::string_view channel_id,
                                    uint8_t type) override {
        FUZZ_CHECK(!uids.empty() && !channel_id.empty() && type != 0);
        return outcome;
    }
    im::Outcome sync_conversations(std::string_view uid, int64_t, std::vector<im::Conversation>& out) override {
        FUZZ_CHECK(!uid.empty());
        if (outcome) out.push_back({"g", 2, 0, 1, 1, "", 1, 2});
        return outcome;
    }
    im::Outcome recent_messages(std::string_view uid, std::string_view channel_id, uint8_t type, uint32_t,
                                im::PageLimit limit, std::vector<im::Message>& out) override {
        FUZZ_CHECK(!uid.empty() && !channel_id.empty() && type != 0);
        FUZZ_CHECK(limit.count > 0 && limit.count <= 1000 && limit.bytes > 0);
        if (outcome) out = some_messages(limit.count);
        return outcome;
    }
};

void check_response(const http::Response& response) {
    switch (response.status) {
    case 200: case 400: case 401: case 403: case 404: case 405: case 500:
        break;
    default:
        FUZZ_CHECK(false);
    }
    FUZZ_CHECK(nlohmann::json::accept(response.body));
    FUZZ_CHECK((response.status == 405) == (response.allow != nullptr));
    const std::string wire = http::serialize_response(response, true);
    FUZZ_CHECK(wire.size() > response.body.size());
    FUZZ_CHECK(wire.compare(wire.size() - response.body.size(), response.body.size(), response.body) == 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    limaoim::fuzz::InputReader input(data, size);
    const uint8_t flags = input.u8();
    std::span<const uint8_t> read_sizes = input.bytes(input.u8() % 16);
    std::span<const uint8_t> stream = input.rest();

    FakeService service;
    const im::Outcome::Code codes[] = {im::Outcome::Code::Ok, im::Outcome::Code::BadRequest,
                                        im::Outcome::Code::Unavailable, im::Outcome::Code::Ok};
    service.outcome = {codes[(flags >> 1) & 3], "core says no"};
    const http::Api api(service, {.bearer_secret = flags & 1 ? "k" : ""});
    const size_t body_limit = flags >> 4 == 0 ? size_t(1) << 20 : size_t(flags >> 4) * 16;
    http::RequestParser parser(body_limit, flags & 8 ? &api : nullptr);

    // The loop's reassembly buffer: what the parser did not consume yet.
    std::vector<uint8_t> pending;
    size_t fed = 0;
    for (size_t read_index = 0; fed < stream.size(); ++read_index) {
        const size_t wanted = read_sizes.empty() ? stream.size() : size_t(read_sizes[read_index % read_sizes.size()]) + 1;
        const size_t n = std::min(wanted, stream.size() - fed);
        pending.insert(pending.end(), stream.begin() + ptrdiff_t(fed), stream.begin() + ptrdiff_t(fed + n));
        fed += n;

        size_t offset = 0;
        bool closed = false;
        while (offset < pending.size() && !closed) {
            const std::span<const uint8_t> available(pending.data() + offset, pending.size() - offset);
            const http::RequestParser::Result r = parser.feed(available);
            FUZZ_CHECK(r.consumed <= available.size());
            parser.take_continue_expected();
            if (r.status == http::RequestParser::Status::NeedMore) {
                FUZZ_CHECK(r.consumed == available.size());
                offset = pending.size();
                break;
            }
            if (r.status != http::RequestParser::Status::Complete) return 0;  // the server answers and closes
            FUZZ_CHECK(r.consumed > 0);
            offset += r.consumed;
            FUZZ_CHECK(parser.request().body.size() <= body_limit);
            FUZZ_CHECK(!parser.request().path.empty());
            // Taken as the server takes it, so the parser reuses moved-from strings.
            const http::Request request = std::move(parser.request());
            check_response(api.handle(request));
            closed = !parser.keep_alive();
            parser.next();
        }
        if (closed) return 0;
        pending.erase(pending.begin(), pending.begin() + ptrdiff_t(offset));
    }
    return 0;
}
