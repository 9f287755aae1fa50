// Worker code that includes Torch must not see protobuf or gRPC headers (the PyTorch wheel ships
// conflicting protobuf headers), so this translation unit includes only the client header and
// fails to compile if that header ever pulls them in.
#include <gtest/gtest.h>

#include "rpc/coordinator_client.h"

#if defined(GOOGLE_PROTOBUF_VERSION) || defined(GRPCPP_GRPCPP_H) || defined(GRPCPP_IMPL_CODEGEN_CONFIG_H)
#error "coordinator_client.h must stay free of protobuf and gRPC headers"
#endif

namespace keel::coord {
namespace {

TEST(CoordinatorClientHeader, UsesPlainTypesOnly) {
  Registration r;
  r.groups.push_back({"world", std::string(128, '\0'), {0}});
  EXPECT_EQ(r.group("world").ranks, std::vector<int>{0});
  EXPECT_THROW(r.group("tp_0"), KeelError);
}

}  // namespace
}  // namespace keel::coord
