// Coordinator security with the real keel-coordinator program: loopback by default; beyond loopback
// it refuses to start without a shared token; TLS with a CA and a server certificate made here with
// the openssl CLI (a real coordinator and a real client over TLS: the right token works, a wrong
// token is refused, a plaintext client and a client trusting another CA cannot talk to it); shard
// names in checkpoint commits cannot be paths; the loopback check itself. Issue 28: on loopback a
// coordinator with a (per-job) token refuses a tokenless local client, even a forged commit sent
// straight on the wire; with --checkpoint-dir a forged commit of a step nobody wrote is refused and
// never reaches the state file, and a step is recorded only once sealed on disk.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "checkpoint/checkpoint_store.h"
#include "common/fs.h"
#include "rpc/coordinator_client.h"
#include "coordinator/coordinator_service.h"
#include "tests/coordinator/coordinator_process.h"
#include "tests/coordinator/test_util.h"

namespace keel::coord {
namespace {

using testing::address_after;
using testing::TempDir;
using Ms = std::chrono::milliseconds;

// Runs a shell command; returns (exit code, stdout + stderr).
std::pair<int, std::string> shell(const std::string& command) {
  std::string out;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return {-1, ""};
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) out.append(buffer, n);
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), out};
}

// A CA, and a server certificate for 127.0.0.1 / localhost signed by it, made with the openssl CLI.
struct Pki {
  explicit Pki(const std::string& dir, const std::string& name = "ca") : dir(dir) {
    const std::string d = "'" + dir + "'";
    const auto r = shell(
        "set -e; cd " + d + "; "
        "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj '/CN=keel test " + name + "' "
        "  -keyout " + name + ".key -out " + name + ".pem; "
        "openssl req -newkey rsa:2048 -nodes -subj '/CN=localhost' -keyout server.key -out server.csr; "
        "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > san.ext; "
        "openssl x509 -req -in server.csr -CA " + name + ".pem -CAkey " + name + ".key -CAcreateserial "
        "  -days 2 -extfile san.ext -out server.pem");
    ok = r.first == 0;
    output = r.second;
    ca = dir + "/" + name + ".pem";
    cert = dir + "/server.pem";
    key = dir + "/server.key";
  }
  std::string dir, ca, cert, key, output;
  bool ok = false;
};

testing::CoordinatorProcess coordinator(std::vector<std::string> args) {
  return testing::CoordinatorProcess(KEEL_COORDINATOR_BIN, std::move(args));
}

TEST(CoordinatorSecurity, LoopbackCheck) {
  EXPECT_TRUE(is_loopback_listen_address("127.0.0.1:0"));
  EXPECT_TRUE(is_loopback_listen_address("127.3.2.1:5000"));
  EXPECT_TRUE(is_loopback_listen_address("localhost:0"));
  EXPECT_TRUE(is_loopback_listen_address("[::1]:0"));
  EXPECT_FALSE(is_loopback_listen_address("0.0.0.0:0"));
  EXPECT_FALSE(is_loopback_listen_address("[::]:0"));
  EXPECT_FALSE(is_loopback_listen_address(":5000"));
  EXPECT_FALSE(is_loopback_listen_address("10.1.2.3:5000"));
  EXPECT_FALSE(is_loopback_listen_address("no-such-host.invalid:5000"));
}

TEST(CoordinatorSecurity, DefaultsToLoopback) {
  auto c = coordinator({"--world-size", "1", "--metrics-port", "0"});
  const std::string grpc_address = address_after("listening on ", c.next_line(Ms(10000)));
  const std::string metrics_address = address_after("metrics on ", c.next_line(Ms(10000)));
  EXPECT_EQ(grpc_address.rfind("127.0.0.1:", 0), 0u) << grpc_address;
  EXPECT_EQ(metrics_address.rfind("127.0.0.1:", 0), 0u) << metrics_address;
}

TEST(CoordinatorSecurity, RefusesToListenBeyondLoopbackWithoutAToken) {
  const auto refused = shell("env -u KEEL_COORDINATOR_TOKEN " + std::string(KEEL_COORDINATOR_BIN) +
                             " --world-size 1 --listen 0.0.0.0:0 --metrics-port -1");
  EXPECT_EQ(refused.first, 2) << refused.second;
  EXPECT_NE(refused.second.find("refusing to listen on 0.0.0.0:0 without a shared token"), std::string::npos)
      << refused.second;
  // In-process servers refuse too.
  ServerOptions options;
  options.listen_address = "0.0.0.0:0";
  CoordinatorServer server(options);
  EXPECT_THROW(server.start(), KeelError);

  // With a token (from the environment) it starts, and warns that there is no TLS.
  TempDir dir;
  const auto started = shell("KEEL_COORDINATOR_TOKEN=tok-123 timeout -s INT 2 " + std::string(KEEL_COORDINATOR_BIN) +
                             " --world-size 1 --listen 0.0.0.0:0 --metrics-port -1");
  EXPECT_NE(started.second.find("listening on 0.0.0.0:"), std::string::npos) << started.second;
  EXPECT_NE(started.second.find("without TLS"), std::string::npos) << started.second;
  EXPECT_EQ(started.second.find("tok-123"), std::string::npos) << "the token must never be printed";
}

TEST(CoordinatorSecurity, TlsWithTokenWorksAndEverythingElseIsRefused) {
  TempDir dir;
  Pki pki(dir.path());
  ASSERT_TRUE(pki.ok) << pki.output;
  fs::write_file_atomic(dir.path() + "/token", "s3cret-token\n");
  auto c = coordinator({"--world-size", "1", "--job-id", "job", "--metrics-port", "-1", "--listen", "127.0.0.1:0",
                        "--token-file", dir.path() + "/token", "--tls-cert", pki.cert, "--tls-key", pki.key});
  const std::string address = address_after("listening on ", c.next_line(Ms(10000)));
  ASSERT_FALSE(address.empty());

  ClientOptions tls;
  tls.job_id = "job";
  tls.rpc_timeout_seconds = 5;
  tls.tls_ca_file = pki.ca;
  CoordinatorClient good(address, "s3cret-token", tls);
  RegisterOptions reg;
  reg.host = "h";
  reg.timeout_seconds = 10;
  EXPECT_EQ(good.register_worker(reg).rank, 0);
  EXPECT_EQ(good.job_status().state, "RUNNING");

  CoordinatorClient wrong_token(address, "guess", tls);
  try {
    wrong_token.latest_committed();
    FAIL() << "a wrong token was accepted";
  } catch (const CoordinatorError& e) {
    EXPECT_EQ(e.grpc_code(), 16) << e.what();  // UNAUTHENTICATED
  }

  ClientOptions plain;
  plain.job_id = "job";
  plain.rpc_timeout_seconds = 3;
  CoordinatorClient plaintext(address, "s3cret-token", plain);
  try {
    plaintext.latest_committed();
    FAIL() << "a plaintext client got through to a TLS coordinator";
  } catch (const CoordinatorError& e) {
    EXPECT_EQ(e.grpc_code(), 14) << e.what();  // UNAVAILABLE: no TLS handshake, no connection
  }

  TempDir other_dir;
  Pki other(other_dir.path(), "otherca");
  ASSERT_TRUE(other.ok) << other.output;
  ClientOptions untrusted = tls;
  untrusted.tls_ca_file = other.ca;
  untrusted.rpc_timeout_seconds = 3;
  CoordinatorClient impostor_check(address, "s3cret-token", untrusted);
  try {
    impostor_check.latest_committed();
    FAIL() << "a client accepted a certificate its CA did not sign";
  } catch (const CoordinatorError& e) {
    EXPECT_EQ(e.grpc_code(), 14) << e.what();
  }

  good.shutdown("done", 0);
  EXPECT_EQ(c.wait_exit(Ms(15000)), 0);
}

TEST(CoordinatorSecurity, ShardNamesCannotBePaths) {
  ServerOptions options;
  options.job.job_id = "job";
  CoordinatorServer server(options);
  server.start();
  ClientOptions o;
  o.job_id = "job";
  CoordinatorClient client(server.address(), "", o);
  RegisterOptions reg;
  reg.host = "h";
  client.register_worker(reg);
  for (const std::string& name : std::vector<std::string>{"../../etc/passwd", "/abs", "a/b", ".hidden", std::string(65, 'x'), std::string("a\0b", 3)}) {
    try {
      client.commit_shard(10, name, 1, 1);
      FAIL() << "shard name accepted: " << name;
    } catch (const CoordinatorError& e) {
      EXPECT_EQ(e.grpc_code(), 3) << e.what();  // INVALID_ARGUMENT
    }
  }
  EXPECT_TRUE(client.commit_shard(10, "tp0", 1, 1));
  EXPECT_EQ(client.latest_committed(), 10);
}

TEST(CoordinatorSecurity, TokenComesFromAFileOrTheEnvironment) {
  TempDir dir;
  fs::write_file_atomic(dir.path() + "/t", "abc-123 \n");
  EXPECT_EQ(resolve_coordinator_token(dir.path() + "/t"), "abc-123");
  fs::write_file_atomic(dir.path() + "/empty", "\n");
  EXPECT_THROW(resolve_coordinator_token(dir.path() + "/empty"), KeelError);
  EXPECT_THROW(resolve_coordinator_token(dir.path() + "/missing"), KeelError);
  ::setenv(kTokenEnvironmentVariable, "from-env", 1);
  EXPECT_EQ(resolve_coordinator_token(""), "from-env");
  ::setenv(kTokenEnvironmentVariable, "has space", 1);
  EXPECT_THROW(resolve_coordinator_token(""), KeelError);
  ::unsetenv(kTokenEnvironmentVariable);
  EXPECT_EQ(resolve_coordinator_token(""), "");
}

// The committed steps a coordinator's state file names.
std::vector<int64_t> committed_in(const std::string& state_dir) {
  const auto state = nlohmann::json::parse(fs::read_file(state_dir + "/coordinator_state.json"));
  EXPECT_EQ(state["latest_committed_step"].get<int64_t>(),
            state["committed_steps"].empty() ? -1 : state["committed_steps"].back().get<int64_t>());
  return state["committed_steps"].get<std::vector<int64_t>>();
}

// A CommitCheckpoint sent straight on the wire, as any local process can: rank 0, generation 1.
grpc::Status forged_commit(const std::string& address, int64_t step, const std::string& token = "") {
  auto stub = keel::v1::Coordinator::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  keel::v1::ShardWritten request;
  request.set_job_id("job");
  request.set_rank(0);
  request.set_generation(1);
  request.set_step(step);
  request.set_shard_name("tp0");
  request.set_bytes(1);
  request.set_crc32(1);
  keel::v1::CommitReply reply;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
  return stub->CommitCheckpoint(&ctx, request, &reply);
}

TEST(CoordinatorSecurity, ATokenOnLoopbackShutsOutATokenlessLocalClient) {
  TempDir dir;
  const std::string token_file = dir.path() + "/token";
  const std::string token = new_coordinator_token();
  EXPECT_EQ(token.size(), 64u);
  EXPECT_NE(new_coordinator_token(), token);
  write_token_file(token_file, token);
  struct stat st {};
  ASSERT_EQ(::stat(token_file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "the token file must be readable by its owner only";
  EXPECT_EQ(resolve_coordinator_token(token_file), token);
  write_token_file(token_file, "next-job");  // a later job replaces it
  EXPECT_EQ(resolve_coordinator_token(token_file), "next-job");
  write_token_file(token_file, token);

  const std::string state = dir.path() + "/state";
  auto c = coordinator({"--world-size", "1", "--job-id", "job", "--metrics-port", "-1", "--state-dir", state,
                        "--token-file", token_file});
  const std::string address = address_after("listening on ", c.next_line(Ms(10000)));
  ASSERT_EQ(address.rfind("127.0.0.1:", 0), 0u) << address;
  ClientOptions o;
  o.job_id = "job";
  o.rpc_timeout_seconds = 5;
  RegisterOptions reg;
  reg.host = "h";
  reg.timeout_seconds = 5;

  CoordinatorClient intruder(address, "", o);
  try {
    intruder.register_worker(reg);
    FAIL() << "a tokenless client registered a rank";
  } catch (const CoordinatorError& e) {
    EXPECT_EQ(e.grpc_code(), 16) << e.what();  // UNAUTHENTICATED
  }
  CoordinatorClient worker(address, token, o);
  EXPECT_EQ(worker.register_worker(reg).rank, 0);
  // The rendezvous is complete, so rank 0 of generation 1 exists: without the token, a commit in
  // its name is still refused, and so is one with a guessed token.
  EXPECT_EQ(forged_commit(address, 123456).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(forged_commit(address, 123456, "guess").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  try {
    intruder.job_status();
    FAIL() << "a tokenless client read the job's status";
  } catch (const CoordinatorError& e) {
    EXPECT_EQ(e.grpc_code(), 16) << e.what();
  }
  EXPECT_EQ(worker.latest_committed(), -1);
  EXPECT_TRUE(committed_in(state).empty());
  worker.shutdown("done", 0);
  EXPECT_EQ(c.wait_exit(Ms(15000)), 0);
  EXPECT_TRUE(committed_in(state).empty());
}

TEST(CoordinatorSecurity, AForgedCommitOfAStepNobodyWroteIsRefusedAndOnlySealedStepsAreRecorded) {
  TempDir dir;
  const std::string state = dir.path() + "/state", checkpoints = dir.path() + "/checkpoints";
  // No token (keel train --no-token): the disk is the evidence.
  auto c = coordinator({"--world-size", "1", "--job-id", "job", "--metrics-port", "-1", "--state-dir", state,
                        "--checkpoint-dir", checkpoints});
  const std::string address = address_after("listening on ", c.next_line(Ms(10000)));
  ASSERT_FALSE(address.empty());
  ClientOptions o;
  o.job_id = "job";
  o.rpc_timeout_seconds = 5;
  CoordinatorClient client(address, "", o);
  RegisterOptions reg;
  reg.host = "h";
  reg.timeout_seconds = 5;
  client.register_worker(reg);

  // Step 123456: no shard writer wrote anything.
  const grpc::Status forged = forged_commit(address, 123456);
  EXPECT_EQ(forged.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << forged.error_message();
  EXPECT_NE(forged.error_message().find("no shard of that step was written"), std::string::npos)
      << forged.error_message();
  try {
    client.commit_shard(123456, "tp0", 1, 1);
    FAIL() << "a report of a step with no files on disk was taken";
  } catch (const CoordinatorError& e) {
    EXPECT_EQ(e.grpc_code(), 9) << e.what();  // FAILED_PRECONDITION
  }
  EXPECT_EQ(client.latest_committed(), -1);
  EXPECT_TRUE(committed_in(state).empty());

  // A real save of step 10: the shard written, reported (agreed: rank 0 may seal), then sealed.
  checkpoint::CheckpointStore store(checkpoints);
  auto pending = store.begin_shared(10, "job");
  fs::write_file_atomic(pending.file("model.safetensors"), "weights");
  EXPECT_TRUE(client.commit_shard(10, "tp0", 7, 1));
  EXPECT_EQ(client.latest_committed(), -1) << "agreed, but not sealed on disk yet";
  EXPECT_TRUE(committed_in(state).empty());
  store.commit(std::move(pending));
  EXPECT_EQ(client.latest_committed(), 10);
  EXPECT_EQ(committed_in(state), (std::vector<int64_t>{10}));

  // A folder named like a checkpoint but never sealed (no manifest) is never recorded.
  fs::make_dirs(checkpoints + "/step_00000020");
  fs::write_file_atomic(checkpoints + "/step_00000020/model.safetensors", "forged");
  EXPECT_TRUE(client.commit_shard(20, "tp0", 6, 1));
  EXPECT_EQ(client.latest_committed(), 10);
  EXPECT_EQ(client.job_status().latest_committed_step, 10);
  client.shutdown("done", 0);
  EXPECT_EQ(c.wait_exit(Ms(15000)), 0);
  EXPECT_EQ(committed_in(state), (std::vector<int64_t>{10}));
}

}  // namespace
}  // namespace keel::coord
