#include "limaoim/im/core.h"

namespace limaoim::im {

Core::Core(store::Store& store, TokenCache& tokens, Directory& directory, stats::PipelineBlock& stats,
           const CoreOptions& options)
    : options_(options), ids_(options.node_id), conversations_(store, stats, options.conversations),
      fanout_(channels_, directory, conversations_, stats),
      committer_(store, channels_, ids_, fanout_, stats, options.committer), kicker_(directory),
      send_judge_(channels_, channel_write_, committer_, stats,
                  {.test_mode = options.test_mode, .datasource_cache_ms = options.datasource_cache_ms}),
      api_(store, tokens, directory, channels_, conversations_, committer_, kicker_, channel_write_,
           options.max_temporary_channels),
      node_listener_(store, tokens, channels_, conversations_, fanout_, kicker_, channel_write_),
      rate_limit_(options.max_messages_per_second) {}

bool Core::load(std::string& error) {
    return node_listener_.load_cached(error) && conversations_.load(channels_, error);
}

void Core::set_workers(std::span<net::EnvelopeSink* const> workers, const GatewayKinds& kinds) {
    kicker_.set_workers(workers, kinds.kick);
    fanout_.set_workers(workers, kinds.deliver);
}

void Core::set_events(Events* events) {
    events_ = events;
    fanout_.set_events(events);
    committer_.set_events(events);
}

void Core::set_datasource(Datasource* datasource) {
    send_judge_.set_datasource(datasource);
    committer_.set_resolver(datasource ? &send_judge_.resolver() : nullptr);
}

void Core::set_cluster(Cluster* cluster) {
    cluster_ = cluster;
    fanout_.set_cluster(cluster);
    api_.set_cluster(cluster);
}

bool Core::start(std::string& error) {
    conversations_.start();
    fanout_.start();
    if (committer_.start(error)) {
        send_judge_.start();
        return true;
    }
    fanout_.stop();
    conversations_.stop();
    return false;
}

void Core::stop() {
    send_judge_.stop();  // what its resolver holds goes to the committer, which commits it
    committer_.stop();
    fanout_.stop();
    conversations_.stop();  // after the fan-out's last updates
}

void Core::session_online(std::string_view uid, uint8_t device_flag, bool online, uint64_t login_ms) {
    if (events_) events_->online_status(uid, device_flag, online);
    if (cluster_) cluster_->session_online(uid, device_flag, online, login_ms);
}

}  // namespace limaoim::im
