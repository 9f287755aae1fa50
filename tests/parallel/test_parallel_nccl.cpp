// NCCL build check that runs without a GPU: the library links and ncclGetUniqueId works.
#include <gtest/gtest.h>

#include <nccl.h>

#include "common/check.h"
#include "parallel/nccl_communicator.h"

namespace keel::parallel {
namespace {

TEST(NcclCommunicator, UniqueIdIs128Bytes) {
  const std::string id = NcclCommunicator::unique_id();
  EXPECT_EQ(id.size(), 128u);
  EXPECT_EQ(id.size(), static_cast<size_t>(NCCL_UNIQUE_ID_BYTES));
  EXPECT_NE(NcclCommunicator::unique_id(), id);  // fresh each call
}

TEST(NcclCommunicator, LibraryLinks) {
  int version = 0;
  ASSERT_EQ(ncclGetVersion(&version), ncclSuccess);
  EXPECT_GE(version, 21800);  // ncclCommSplit needs >= 2.18
}

TEST(NcclCommunicator, RejectsABadUniqueId) {
  EXPECT_THROW(NcclCommunicator(0, 1, "short", 0), KeelError);
}

}  // namespace
}  // namespace keel::parallel
