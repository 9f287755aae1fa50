// PhaseClock (device/phase_clock.h) on the host clock: phases come back in order with the time spent
// between their marks, a new step starts a fresh list, and a CPU process has no device clock.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "device/phase_clock.h"

namespace keel {
namespace {

TEST(PhaseClock, HostPhasesAreTheTimeBetweenMarksInOrder) {
  PhaseClock clock(-1);
  clock.start(7);
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  clock.mark("slow");
  clock.mark("instant");
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  clock.mark("short");
  const auto& phases = clock.host_phases();
  ASSERT_EQ(phases.size(), 3u);
  EXPECT_EQ(phases[0].first, "slow");
  EXPECT_EQ(phases[1].first, "instant");
  EXPECT_EQ(phases[2].first, "short");
  EXPECT_GE(phases[0].second, 29.0);
  EXPECT_LT(phases[1].second, 5.0);
  EXPECT_GE(phases[2].second, 4.0);
  EXPECT_LT(phases[2].second, phases[0].second);

  clock.start(8);
  EXPECT_TRUE(clock.host_phases().empty());
  clock.mark("again");
  EXPECT_EQ(clock.host_phases().size(), 1u);
}

TEST(PhaseClock, CpuProcessHasNoDeviceClock) {
  PhaseClock clock(-1, "between_steps");
  clock.start(0);
  clock.mark("a");
  clock.start(1);
  EXPECT_TRUE(clock.host_phases().empty());  // the closing phase is a device phase only
  int64_t step = -1;
  PhaseTimes phases;
  EXPECT_FALSE(clock.take_device_phases(step, phases));
  EXPECT_EQ(step, -1);
  EXPECT_TRUE(phases.empty());
}

}  // namespace
}  // namespace keel
