// The Prometheus text exposition format (version 0.0.4) of a snapshot: what
// the server's GET /metrics answers and `limaoim-stat --prometheus` prints.
// Every family is prefixed limaoim_; counters end in _total, gauges do not;
// latencies are histograms in seconds. (Its content type, text/plain;
// version=0.0.4, is the HTTP layer's: http/api.h.)
#pragma once

#include <string>

#include "limaoim/stats/snapshot.h"

namespace limaoim::stats {

std::string render_prometheus(const Snapshot& snapshot);

}  // namespace limaoim::stats
