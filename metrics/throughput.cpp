// Training throughput (see throughput.h).
#include "metrics/throughput.h"

#include <limits>

namespace keel::throughput {

double Meter::tokens_per_second() const {
  return timed_steps_ > 0 && seconds_ > 0 ? tokens_ / seconds_ : std::numeric_limits<double>::quiet_NaN();
}

}  // namespace keel::throughput
