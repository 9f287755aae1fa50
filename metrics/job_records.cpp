// Names of the job phases (see job_records.h).
#include "metrics/job_records.h"

namespace keel::coord {

const char* phase_name(JobPhase phase) {
  switch (phase) {
    case JobPhase::kWaiting: return "WAITING";
    case JobPhase::kRunning: return "RUNNING";
    case JobPhase::kStopping: return "STOPPING";
    case JobPhase::kFailed: return "FAILED";
    case JobPhase::kCompleted: return "COMPLETED";
  }
  return "UNKNOWN";
}

}  // namespace keel::coord
