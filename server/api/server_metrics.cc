#include "server/api/server_metrics.h"

#include <algorithm>

namespace sluice::api {
namespace {

constexpr int kFaultKinds = 4;  // none, delay, abort, delay+abort
constexpr int kFlagKinds = 3;   // "", NC, UH
constexpr int kSlotsPerDestination = kFaultKinds * kFlagKinds;
constexpr const char* kFaultNames[kFaultKinds] = {"none", "delay", "abort", "delay_abort"};
constexpr const char* kFlagNames[kFlagKinds] = {"-", "NC", "UH"};

int FaultIndex(const routing::Decision& d) {
  const bool delay = d.delay > absl::ZeroDuration();
  const bool abort = d.abort_http_status != 0 || !d.abort_grpc_status.empty();
  return (delay ? 1 : 0) + (abort ? 2 : 0);
}

int FlagIndex(const routing::Decision& d) {
  if (d.response_flags[0] == 'N' && d.response_flags[1] == 'C') return 1;
  if (d.response_flags[0] == 'U' && d.response_flags[1] == 'H') return 2;
  return 0;
}

std::vector<double> LatencyBounds() {
  // 1 µs to ~16 ms, doubling: in-process decisions live at the low end.
  std::vector<double> bounds;
  for (double b = 1e-6; b < 0.02; b *= 2) bounds.push_back(b);
  return bounds;
}

}  // namespace

struct ServerMetrics::CounterTable {
  uint64_t version = 0;
  std::vector<size_t> route_base;  // first slot of each route
  size_t no_route_base = 0;        // one NR slot per virtual host, then one for unknown hosts
  std::vector<std::atomic<prometheus::Counter*>> slots;
  // Labels for lazily created slots.
  struct Labels {
    std::string host, route, subset, fault, flag;
  };
  std::vector<Labels> labels;
};

ServerMetrics::ServerMetrics(prometheus::Registry& registry)
    : applies_ok(prometheus::BuildCounter()
                     .Name("sluice_config_applies_total")
                     .Help("Configuration changes that were applied")
                     .Register(registry)
                     .Add({})),
      apply_errors_api(prometheus::BuildCounter()
                           .Name("sluice_config_apply_errors_total")
                           .Help("Configuration changes rejected as invalid, by source")
                           .Register(registry)
                           .Add({{"source", "api"}})),
      apply_errors_file(prometheus::BuildCounter()
                            .Name("sluice_config_apply_errors_total")
                            .Help("Configuration changes rejected as invalid, by source")
                            .Register(registry)
                            .Add({{"source", "file"}})),
      config_version(prometheus::BuildGauge()
                         .Name("sluice_config_version")
                         .Help("Version of the configuration snapshot serving decisions")
                         .Register(registry)
                         .Add({})),
      streams_open(prometheus::BuildGauge()
                       .Name("sluice_streams_open")
                       .Help("Decision streams currently open (one per gateway worker)")
                       .Register(registry)
                       .Add({})),
      decide_invalid(prometheus::BuildCounter()
                         .Name("sluice_decide_invalid_requests_total")
                         .Help("Decide requests rejected as malformed")
                         .Register(registry)
                         .Add({})),
      decide_resend(prometheus::BuildCounter()
                        .Name("sluice_decide_resend_total")
                        .Help("Decide requests answered RESEND: described with the header "
                              "names of an older version that lack one the current rules read")
                        .Register(registry)
                        .Add({})),
      decisions_(prometheus::BuildCounter()
                     .Name("sluice_decisions_total")
                     .Help("Decisions by virtual host, route, destination subset, sampled fault "
                           "and response flag of a local reply")
                     .Register(registry)),
      decision_seconds_(prometheus::BuildHistogram()
                            .Name("sluice_decision_duration_seconds")
                            .Help("Time the server spent computing one decision")
                            .Register(registry)
                            .Add({}, LatencyBounds())),
      bucket_bounds_(LatencyBounds()) {
  auto& reports = prometheus::BuildCounter()
                      .Name("sluice_attempt_reports_total")
                      .Help("Upstream attempts reported by gateways, by outcome")
                      .Register(registry);
  for (const char* outcome : {"unspecified", "response", "connect_failure", "reset", "timeout",
                              "overflow", "not_sent", "no_healthy_upstream"}) {
    attempt_reports.push_back(&reports.Add({{"outcome", outcome}}));
  }
}

void ServerMetrics::OnSnapshot(const routing::Snapshot& snapshot) {
  auto table = std::make_shared<CounterTable>();
  table->version = snapshot.version();
  size_t next = 0;
  for (const routing::Route* route : snapshot.routes()) {
    table->route_base.push_back(next);
    next += std::max<size_t>(1, route->weights.destinations().size()) * kSlotsPerDestination;
  }
  table->no_route_base = next;
  next += snapshot.virtual_hosts().size() + 1;
  table->slots = std::vector<std::atomic<prometheus::Counter*>>(next);
  table->labels.resize(next);
  // Labels of every slot, computed now so the request path never formats strings.
  for (const routing::VirtualHost& host : snapshot.virtual_hosts()) {
    for (const routing::Route& route : host.routes) {
      const auto& dests = route.weights.destinations();
      for (size_t d = 0; d < std::max<size_t>(1, dests.size()); ++d) {
        for (int f = 0; f < kFaultKinds; ++f) {
          for (int g = 0; g < kFlagKinds; ++g) {
            const size_t i =
                table->route_base[route.id] + d * kSlotsPerDestination + f * kFlagKinds + g;
            table->labels[i] = {host.name, route.display_name,
                                d < dests.size() ? dests[d].subset : "", kFaultNames[f],
                                kFlagNames[g]};
          }
        }
      }
    }
  }
  for (size_t h = 0; h < snapshot.virtual_hosts().size(); ++h) {
    table->labels[table->no_route_base + h] = {snapshot.virtual_hosts()[h].name, "", "", "none",
                                               "NR"};
  }
  table->labels[table->no_route_base + snapshot.virtual_hosts().size()] = {"unknown", "", "",
                                                                           "none", "NR"};
  std::atomic_store(&table_, std::move(table));
  config_version.Set(static_cast<double>(snapshot.version()));
}

prometheus::Counter* ServerMetrics::Slot(CounterTable& table, size_t index) {
  auto& slot = table.slots[index];
  prometheus::Counter* counter = slot.load(std::memory_order_acquire);
  if (counter == nullptr) {
    const CounterTable::Labels& l = table.labels[index];
    // Family::Add is thread-safe and returns the same counter for the same labels.
    counter = &decisions_.Add({{"host", l.host},
                               {"route", l.route},
                               {"subset", l.subset},
                               {"fault", l.fault},
                               {"response_flags", l.flag}});
    slot.store(counter, std::memory_order_release);
  }
  return counter;
}

void ServerMetrics::CountDecision(const routing::Snapshot& snapshot, const routing::Decision& d) {
  std::shared_ptr<CounterTable> table = std::atomic_load(&table_);
  // A decision racing a configuration swap is not counted rather than mislabelled.
  if (table == nullptr || table->version != snapshot.version()) return;
  size_t index;
  if (d.route == nullptr) {
    const auto& hosts = snapshot.virtual_hosts();
    const size_t host = d.virtual_host != nullptr
                            ? static_cast<size_t>(d.virtual_host - hosts.data())
                            : hosts.size();  // the "unknown" slot
    index = table->no_route_base + host;
  } else {
    const auto& dests = d.route->weights.destinations();
    const size_t dest = d.destination != nullptr && !dests.empty()
                            ? static_cast<size_t>(d.destination - dests.data())
                            : 0;
    index = table->route_base[d.route->id] + dest * kSlotsPerDestination +
            FaultIndex(d) * kFlagKinds + FlagIndex(d);
  }
  Slot(*table, index)->Increment();
}

ServerMetrics::LatencyBatch::LatencyBatch(ServerMetrics& metrics)
    : metrics_(metrics), counts_(metrics.bucket_bounds_.size() + 1, 0.0) {}

void ServerMetrics::LatencyBatch::Record(double seconds) {
  const auto& bounds = metrics_.bucket_bounds_;
  const size_t bucket = std::lower_bound(bounds.begin(), bounds.end(), seconds) - bounds.begin();
  counts_[bucket] += 1;
  sum_ += seconds;
  any_ = true;
}

ServerMetrics::LatencyBatch::~LatencyBatch() {
  if (any_) metrics_.decision_seconds_.ObserveMultiple(counts_, sum_);
}

}  // namespace sluice::api
