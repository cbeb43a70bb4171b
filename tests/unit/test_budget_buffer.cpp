// The buffer every layer holds a connection's waiting bytes in, and the
// budget that bounds them together (net/budget_buffer.h), without a worker:
// growth, refusal past the budget, who pays when it is full, release.
#include <doctest/doctest.h>

#include <string>

#include "limaoim/net/budget_buffer.h"

using namespace limaoim;
using namespace limaoim::net;

namespace {

std::span<const uint8_t> span_of(const std::string& s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

std::string text(const BudgetBuffer& buffer) {
    return {reinterpret_cast<const char*>(buffer.data()), buffer.size()};
}

}  // namespace

TEST_CASE("budget buffer: grows to the power of two that holds its bytes, never past the packet or the share") {
    stats::Counter gauge;
    ReassemblyBudget budget(1u << 20, 0, gauge);
    BudgetBuffer buffer;
    CHECK_FALSE(buffer);
    CHECK(budget.capacity_for(buffer, 10, 0) == 64);            // the smallest block
    CHECK(budget.capacity_for(buffer, 1000, 0) == 1024);
    CHECK(budget.capacity_for(buffer, 1000, 1500) == 1024);
    CHECK(budget.capacity_for(buffer, 1000, 1001) == 1001);     // the packet's size: no more
    CHECK(budget.capacity_for(buffer, 1000, 999) == 1024);      // a size it already passed says nothing
    ReassemblyBudget with_share(1u << 20, 800, gauge);
    CHECK(with_share.capacity_for(buffer, 700, 0) == 800);

    REQUIRE(budget.grow(buffer, 7, 64, 1000));
    ReassemblyBudget::append(buffer, span_of("hello, "));
    buffer.expect(300);
    CHECK(buffer.owner() == 7);
    CHECK(buffer.needed() == 300);
    CHECK(buffer.started_ms() == 1000);
    // Growing keeps the bytes, the packet's size and its time.
    REQUIRE(budget.grow(buffer, 7, budget.capacity_for(buffer, 100, 0), 2000));
    CHECK(buffer.capacity() == 128);
    ReassemblyBudget::append(buffer, span_of("world"));
    CHECK(text(buffer) == "hello, world");
    CHECK(buffer.needed() == 300);
    CHECK(buffer.started_ms() == 1000);
    CHECK(budget.used() == 128);
    CHECK(gauge.get() == 128);
    // Taking the front starts a new packet: unknown size, its own time.
    buffer.consume(7, 3000);
    CHECK(text(buffer) == "world");
    CHECK(buffer.needed() == 0);
    CHECK(buffer.started_ms() == 3000);
    budget.release(buffer);
}

TEST_CASE("budget buffer: the budget refuses what passes it, and release returns the bytes") {
    stats::Counter gauge;
    ReassemblyBudget budget(1024, 0, gauge);
    BudgetBuffer a, b, c;
    REQUIRE(budget.grow(a, 1, 512, 0));
    REQUIRE(budget.grow(b, 2, 256, 0));
    CHECK(budget.fits(256));
    CHECK_FALSE(budget.fits(257));
    REQUIRE(budget.grow(c, 3, 256, 0));
    CHECK(budget.used() == 1024);
    CHECK_FALSE(budget.fits(1));
    CHECK(budget.holders() == 3);

    // Released from the middle: the others stay known, each once.
    budget.release(a);
    CHECK_FALSE(a);
    CHECK(budget.used() == 512);
    CHECK(gauge.get() == 512);
    CHECK(budget.holders() == 2);
    CHECK(budget.fits(512));
    uint32_t owners = 0;
    for (size_t i = 0; i < budget.holders(); ++i) owners |= 1u << budget.holder(i).owner();
    CHECK(owners == ((1u << 2) | (1u << 3)));
    REQUIRE(budget.grow(b, 2, 512, 0));  // still found where its block moved
    budget.release(c);
    budget.release(b);
    budget.release(b);  // nothing held: nothing to return
    CHECK(budget.used() == 0);
    CHECK(gauge.get() == 0);
    CHECK(budget.holders() == 0);
}

TEST_CASE("budget buffer: when the budget is full the largest holder pays, the asker only when it is the largest") {
    stats::Counter gauge;
    ReassemblyBudget budget(4096, 0, gauge);
    BudgetBuffer small, big, asker;
    REQUIRE(budget.grow(small, 1, 512, 0));
    REQUIRE(budget.grow(big, 2, 2048, 0));
    REQUIRE(budget.grow(asker, 3, 1024, 0));
    CHECK(budget.largest_holder(asker, 3, 512) == 2);    // 1536 after growing: less than the big one
    CHECK(budget.largest_holder(asker, 3, 1024) == 3);   // 2048: as much, and it is the one asking
    CHECK(budget.largest_holder(asker, 3, 2048) == 3);   // 3072: it holds the most
    BudgetBuffer newcomer;
    CHECK(budget.largest_holder(newcomer, 4, 64) == 2);  // a connection holding nothing yet
    budget.release(small);
    budget.release(big);
    budget.release(asker);
}
