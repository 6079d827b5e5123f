#include "lib/config/resources.h"

#include <iterator>

namespace sluice::config {
namespace {

template <typename T>
void MoveAppend(std::vector<T>& into, std::vector<T>& from) {
  into.insert(into.end(), std::make_move_iterator(from.begin()),
              std::make_move_iterator(from.end()));
}

}  // namespace

void ConfigSet::Append(ConfigSet other) {
  MoveAppend(virtual_services, other.virtual_services);
  MoveAppend(destination_rules, other.destination_rules);
  MoveAppend(service_entries, other.service_entries);
  MoveAppend(workload_entries, other.workload_entries);
  MoveAppend(canaries, other.canaries);
}

}  // namespace sluice::config
