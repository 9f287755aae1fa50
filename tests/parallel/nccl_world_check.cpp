// nccl_world_check: the NCCL backend on one GPU, through the real coordinator (issue 12, "On one
// GPU"). Not a gtest binary and not a CTest test (it needs a GPU and a running keel-coordinator):
//
//   keel-coordinator --listen 127.0.0.1:0 --world-size 1 &      # prints "listening on HOST:PORT"
//   nccl_world_check --coordinator HOST:PORT [--device N]
//
// It registers as rank 0 of a world of one, proposing a fresh NCCL id for "world", takes the id from
// the registration's group("world"), builds an NcclCommunicator on that id, and runs every collective
// of parallel/communicator.h on device buffers. Each result is checked bit for bit against the MPI
// backend's result (a singleton MPI process, a world of one) on the same host data. One line per
// check; exit code 1 on any mismatch or error (also reported to the coordinator through shutdown).
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/check.h"
#include "rpc/coordinator_client.h"
#include "parallel/nccl_check.h"
#include "parallel/half_convert.h"
#include "parallel/mpi_communicator.h"
#include "parallel/nccl_communicator.h"

using namespace keel;
using namespace keel::parallel;

namespace {

int g_checks = 0;
int g_failures = 0;

void report(bool ok, const std::string& what, const std::string& detail = "") {
  ++g_checks;
  if (!ok) ++g_failures;
  std::printf("%s %s%s%s\n", ok ? "PASS" : "FAIL", what.c_str(), detail.empty() ? "" : ": ", detail.c_str());
  std::fflush(stdout);
}

// Raw bytes of `count` elements of `type`.
using Bytes = std::vector<unsigned char>;

// A device buffer of raw bytes (freed on scope exit).
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) { CUDA_CHECK(cudaMalloc(&ptr_, bytes == 0 ? 1 : bytes)); }
  ~DeviceBuffer() { cudaFree(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  unsigned char* data() const { return static_cast<unsigned char*>(ptr_); }
  void upload(const Bytes& host) {
    KEEL_CHECK(host.size() <= bytes_, "upload of " << host.size() << " bytes into " << bytes_);
    CUDA_CHECK(cudaMemcpy(ptr_, host.data(), host.size(), cudaMemcpyHostToDevice));
  }
  Bytes download(size_t bytes) const {
    Bytes host(bytes);
    CUDA_CHECK(cudaMemcpy(host.data(), ptr_, bytes, cudaMemcpyDeviceToHost));
    return host;
  }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// Host data of `count` elements of `type`: varied signs and magnitudes, seeded per call.
Bytes make_data(DataType type, size_t count, uint32_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> real(-100.0f, 100.0f);
  Bytes out(count * element_size(type));
  if (type == DataType::kFloat32) {
    std::vector<float> v(count);
    for (auto& x : v) x = real(rng);
    std::memcpy(out.data(), v.data(), out.size());
  } else if (type == DataType::kBFloat16) {
    std::vector<float> v(count);
    for (auto& x : v) x = real(rng);
    float_to_half(v.data(), out.data(), count, DataType::kBFloat16);
  } else if (type == DataType::kInt64) {
    std::uniform_int_distribution<int64_t> ints(-4000000000000LL, 4000000000000LL);
    std::vector<int64_t> v(count);
    for (auto& x : v) x = ints(rng);
    std::memcpy(out.data(), v.data(), out.size());
  } else {
    KEEL_CHECK(false, "make_data: unsupported type " << to_string(type));
  }
  return out;
}

// Bit-for-bit comparison; the detail names the first differing element and how many differ.
std::string compare(const Bytes& nccl, const Bytes& mpi, DataType type) {
  if (nccl.size() != mpi.size()) return "sizes differ";
  const size_t es = element_size(type), n = nccl.size() / es;
  size_t differ = 0, first = n;
  for (size_t i = 0; i < n; ++i) {
    if (std::memcmp(nccl.data() + i * es, mpi.data() + i * es, es) != 0) {
      if (first == n) first = i;
      ++differ;
    }
  }
  if (differ == 0) return "";
  return std::to_string(differ) + " of " + std::to_string(n) + " elements differ, first at " + std::to_string(first);
}

std::string summary(const Bytes& data, DataType type, size_t count) {
  char buf[160];
  if (count == 0) return "empty";
  if (type == DataType::kFloat32) {
    float a, b;
    std::memcpy(&a, data.data(), 4);
    std::memcpy(&b, data.data() + (count - 1) * 4, 4);
    std::snprintf(buf, sizeof(buf), "[0]=%.6g [%zu]=%.6g", a, count - 1, b);
  } else if (type == DataType::kBFloat16) {
    float ab[2];
    half_to_float(data.data(), &ab[0], 1, type);
    half_to_float(data.data() + (count - 1) * 2, &ab[1], 1, type);
    std::snprintf(buf, sizeof(buf), "[0]=%.4g [%zu]=%.4g", ab[0], count - 1, ab[1]);
  } else if (type == DataType::kInt64) {
    int64_t a, b;
    std::memcpy(&a, data.data(), 8);
    std::memcpy(&b, data.data() + (count - 1) * 8, 8);
    std::snprintf(buf, sizeof(buf), "[0]=%" PRId64 " [%zu]=%" PRId64, a, count - 1, b);
  } else {
    return "";
  }
  return buf;
}

// Runs `what` and reports it: a thrown error counts as a failed check.
void guarded(const std::string& what, const std::function<void()>& body) {
  try {
    body();
  } catch (const std::exception& e) {
    report(false, what, std::string("threw: ") + e.what());
  }
}

void check_same(const std::string& what, const Bytes& nccl, const Bytes& mpi, DataType type, size_t count) {
  const std::string diff = compare(nccl, mpi, type);
  report(diff.empty(), what, diff.empty() ? "equal to mpi, " + std::to_string(count) + " elements, " + summary(nccl, type, count) : diff);
}

void check_all_reduce(NcclCommunicator& nccl, MpiCommunicator& mpi, DataType type, ReduceOp op, size_t count,
                      uint32_t seed) {
  const std::string what = std::string("all_reduce ") + to_string(op) + " " + to_string(type);
  guarded(what, [&] {
    const Bytes host = make_data(type, count, seed);
    DeviceBuffer dev(host.size());
    dev.upload(host);
    nccl.all_reduce(dev.data(), count, type, op);
    const Bytes got = dev.download(host.size());
    Bytes expected = host;
    mpi.all_reduce(expected.data(), count, type, op);
    check_same(what, got, expected, type, count);
  });
}

void check_all_gather(NcclCommunicator& nccl, MpiCommunicator& mpi, DataType type, size_t count, bool in_place,
                      uint32_t seed) {
  const std::string what = std::string("all_gather ") + to_string(type) + (in_place ? " in place" : "");
  guarded(what, [&] {
    const int size = nccl.size(), rank = nccl.rank();
    const size_t es = element_size(type);
    const Bytes send = make_data(type, count, seed);
    Bytes expected(send.size() * size, 0xAB);
    DeviceBuffer recv(expected.size());
    recv.upload(expected);  // fill pattern, so unwritten blocks show
    if (in_place) {
      std::vector<unsigned char> staged = expected;
      std::memcpy(staged.data() + rank * count * es, send.data(), send.size());
      recv.upload(staged);
      nccl.all_gather(recv.data() + rank * count * es, recv.data(), count, type);
      std::memcpy(expected.data() + rank * count * es, send.data(), send.size());
      mpi.all_gather(expected.data() + rank * count * es, expected.data(), count, type);
    } else {
      DeviceBuffer dsend(send.size());
      dsend.upload(send);
      nccl.all_gather(dsend.data(), recv.data(), count, type);
      mpi.all_gather(send.data(), expected.data(), count, type);
    }
    check_same(what, recv.download(expected.size()), expected, type, count * size);
  });
}

void check_reduce_scatter(NcclCommunicator& nccl, MpiCommunicator& mpi, DataType type, ReduceOp op, size_t count,
                          bool in_place, uint32_t seed) {
  const std::string what =
      std::string("reduce_scatter ") + to_string(op) + " " + to_string(type) + (in_place ? " in place" : "");
  guarded(what, [&] {
    const int size = nccl.size(), rank = nccl.rank();
    const size_t es = element_size(type);
    const Bytes send = make_data(type, count * size, seed);
    Bytes got, expected;
    if (in_place) {
      DeviceBuffer dsend(send.size());
      dsend.upload(send);
      nccl.reduce_scatter(dsend.data(), dsend.data() + rank * count * es, count, type, op);
      const Bytes all = dsend.download(send.size());
      got.assign(all.begin() + rank * count * es, all.begin() + (rank + 1) * count * es);
      Bytes host = send;
      mpi.reduce_scatter(host.data(), host.data() + rank * count * es, count, type, op);
      expected.assign(host.begin() + rank * count * es, host.begin() + (rank + 1) * count * es);
    } else {
      DeviceBuffer dsend(send.size()), drecv(count * es);
      dsend.upload(send);
      nccl.reduce_scatter(dsend.data(), drecv.data(), count, type, op);
      got = drecv.download(count * es);
      expected.assign(count * es, 0);
      mpi.reduce_scatter(send.data(), expected.data(), count, type, op);
    }
    check_same(what, got, expected, type, count);
  });
}

void check_broadcast(NcclCommunicator& nccl, MpiCommunicator& mpi, DataType type, size_t count, uint32_t seed) {
  const std::string what = std::string("broadcast root 0 ") + to_string(type);
  guarded(what, [&] {
    const Bytes host = make_data(type, count, seed);
    DeviceBuffer dev(host.size());
    dev.upload(host);
    nccl.broadcast(dev.data(), count, type, 0);
    Bytes expected = host;
    mpi.broadcast(expected.data(), count, type, 0);
    check_same(what, dev.download(host.size()), expected, type, count);
  });
}

// The ordering contract of nccl_communicator.h on a non-blocking compute stream of our own: the
// upload, the collective and the download are all queued without a host wait in between.
void check_compute_stream(NcclCommunicator& nccl, MpiCommunicator& mpi, size_t count, uint32_t seed) {
  const std::string what = "all_reduce sum float32 ordered on a non-blocking compute stream";
  guarded(what, [&] {
    cudaStream_t stream = nullptr;
    CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    const cudaStream_t previous = nccl.compute_stream();
    nccl.set_compute_stream(stream);
    const Bytes host = make_data(DataType::kFloat32, count, seed);
    Bytes got(host.size());
    DeviceBuffer dev(host.size());
    CUDA_CHECK(cudaMemcpyAsync(dev.data(), host.data(), host.size(), cudaMemcpyHostToDevice, stream));
    nccl.all_reduce(dev.data(), count, DataType::kFloat32, ReduceOp::kSum);
    nccl.all_reduce(dev.data(), count, DataType::kFloat32, ReduceOp::kMax);
    CUDA_CHECK(cudaMemcpyAsync(got.data(), dev.data(), host.size(), cudaMemcpyDeviceToHost, stream));
    CUDA_CHECK(cudaStreamSynchronize(stream));
    nccl.set_compute_stream(previous);
    CUDA_CHECK(cudaStreamDestroy(stream));
    Bytes expected = host;
    mpi.all_reduce(expected.data(), count, DataType::kFloat32, ReduceOp::kSum);
    mpi.all_reduce(expected.data(), count, DataType::kFloat32, ReduceOp::kMax);
    check_same(what, got, expected, DataType::kFloat32, count);
  });
}

struct Args {
  std::string coordinator;
  std::string job_id = "default";
  int device = 0;
};

Args parse_args(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](const char* name) -> std::string {
      KEEL_CHECK(i + 1 < argc, name << " needs a value");
      return argv[++i];
    };
    if (a == "--coordinator") {
      args.coordinator = value("--coordinator");
    } else if (a == "--job-id") {
      args.job_id = value("--job-id");
    } else if (a == "--device") {
      args.device = std::stoi(value("--device"));
    } else if (a == "-h" || a == "--help") {
      std::printf("usage: %s --coordinator HOST:PORT [--job-id ID] [--device N]\n", argv[0]);
      std::exit(0);
    } else {
      KEEL_CHECK(false, "unknown argument '" << a << "'");
    }
  }
  KEEL_CHECK(!args.coordinator.empty(), "--coordinator HOST:PORT is required");
  return args;
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

int run(int argc, char** argv) {
  const Args args = parse_args(argc, argv);
  MpiEnvironment mpi_env(&argc, &argv);
  auto mpi = MpiCommunicator::world();
  KEEL_CHECK(mpi->size() == 1 && mpi->rank() == 0,
             "run as a singleton MPI process (no mpirun): MPI sees rank " << mpi->rank() << " of " << mpi->size());

  int nccl_version = 0, runtime = 0, driver = 0, devices = 0;
  NCCL_CHECK(ncclGetVersion(&nccl_version));
  CUDA_CHECK(cudaRuntimeGetVersion(&runtime));
  CUDA_CHECK(cudaDriverGetVersion(&driver));
  CUDA_CHECK(cudaGetDeviceCount(&devices));
  KEEL_CHECK(args.device >= 0 && args.device < devices, "--device " << args.device << " but " << devices << " GPUs");
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, args.device));
  CUDA_CHECK(cudaSetDevice(args.device));
  std::printf("INFO NCCL %d, CUDA runtime %d, driver %d, %d GPU(s); device %d: %s (sm_%d%d)\n", nccl_version,
              runtime, driver, devices, args.device, prop.name, prop.major, prop.minor);

  // Rendezvous through the real coordinator, proposing a fresh NCCL id for the world group.
  coord::ClientOptions client_options;
  client_options.job_id = args.job_id;
  coord::CoordinatorClient client(args.coordinator, "", client_options);
  const std::string proposed = NcclCommunicator::unique_id();
  coord::RegisterOptions registration_options;
  registration_options.device = "cuda:" + std::to_string(args.device);
  registration_options.requested_world_size = 1;
  registration_options.requested_rank = 0;
  registration_options.nccl_id_proposals["world"] = proposed;
  registration_options.timeout_seconds = 60;
  const coord::Registration registration = client.register_worker(registration_options);
  client.start_heartbeats(std::chrono::milliseconds(500));
  const coord::GroupInfo& world_group = registration.group("world");
  std::printf("INFO registered with %s: rank %d of %d, dp %d x tp %d, generation %" PRId64 ", %zu groups\n",
              args.coordinator.c_str(), registration.rank, registration.world_size, registration.dp_size,
              registration.tp_size, registration.generation, registration.groups.size());
  report(registration.rank == 0 && registration.world_size == 1, "coordinator assigned rank 0 of world 1");
  report(world_group.nccl_unique_id.size() == NCCL_UNIQUE_ID_BYTES && world_group.ranks == std::vector<int>{0},
         "group(\"world\") carries a 128-byte NCCL id over ranks {0}");
  report(world_group.nccl_unique_id == proposed, "group(\"world\") id is the one this rank proposed");

  try {
    const auto t0 = std::chrono::steady_clock::now();
    NcclCommunicator nccl(registration.rank, registration.world_size, world_group.nccl_unique_id, args.device);
    std::printf("INFO ncclCommInitRank on the coordinator's id: %.3f s\n", seconds_since(t0));
    report(nccl.rank() == 0 && nccl.size() == 1 && nccl.backend() == "nccl" && nccl.memory_kind() == MemoryKind::kCuda,
           "NcclCommunicator rank 0 of 1, backend nccl, device memory");
    report(mpi->backend() == "mpi" && mpi->memory_kind() == MemoryKind::kHost, "MpiCommunicator world of 1 (singleton)");

    uint32_t seed = 1;
    const ReduceOp ops[] = {ReduceOp::kSum, ReduceOp::kMax, ReduceOp::kMin, ReduceOp::kAvg};
    const DataType types[] = {DataType::kFloat32, DataType::kBFloat16, DataType::kInt64};
    const size_t big = (1u << 20) + 3;  // crosses NCCL's chunking; odd, so no vector-width tail is hidden
    for (DataType type : types)
      for (ReduceOp op : ops) check_all_reduce(nccl, *mpi, type, op, type == DataType::kFloat32 ? big : 4099, seed++);
    for (DataType type : types) {
      check_all_gather(nccl, *mpi, type, 1027, /*in_place=*/false, seed++);
      check_all_gather(nccl, *mpi, type, 1027, /*in_place=*/true, seed++);
    }
    for (DataType type : types)
      for (ReduceOp op : ops) check_reduce_scatter(nccl, *mpi, type, op, 2051, /*in_place=*/false, seed++);
    check_reduce_scatter(nccl, *mpi, DataType::kFloat32, ReduceOp::kSum, 2051, /*in_place=*/true, seed++);
    check_reduce_scatter(nccl, *mpi, DataType::kBFloat16, ReduceOp::kAvg, 2051, /*in_place=*/true, seed++);
    for (DataType type : types) check_broadcast(nccl, *mpi, type, 777, seed++);
    check_compute_stream(nccl, *mpi, big, seed++);

    guarded("barrier", [&] {
      const auto tb = std::chrono::steady_clock::now();
      nccl.barrier();
      mpi->barrier();
      char buf[64];
      std::snprintf(buf, sizeof(buf), "nccl and mpi barriers returned (%.3f ms)", seconds_since(tb) * 1e3);
      report(true, "barrier", buf);
    });

    guarded("split(0, 0) + all_reduce on the sub-communicator", [&] {
      auto nccl_sub = nccl.split(0, 0);
      auto mpi_sub = mpi->split(0, 0);
      KEEL_CHECK(nccl_sub && mpi_sub, "split(0, 0) returned nullptr");
      report(nccl_sub->rank() == mpi_sub->rank() && nccl_sub->size() == mpi_sub->size() && nccl_sub->size() == 1 &&
                 nccl_sub->backend() == "nccl",
             "split(0, 0)", "nccl sub rank " + std::to_string(nccl_sub->rank()) + " of " +
                                std::to_string(nccl_sub->size()) + ", mpi sub rank " + std::to_string(mpi_sub->rank()) +
                                " of " + std::to_string(mpi_sub->size()));
      for (DataType type : {DataType::kFloat32, DataType::kBFloat16}) {
        const std::string what = std::string("split sub-communicator all_reduce avg ") + to_string(type);
        const size_t count = 4097;
        const Bytes host = make_data(type, count, seed++);
        DeviceBuffer dev(host.size());
        dev.upload(host);
        nccl_sub->all_reduce(dev.data(), count, type, ReduceOp::kAvg);
        Bytes expected = host;
        mpi_sub->all_reduce(expected.data(), count, type, ReduceOp::kAvg);
        check_same(what, dev.download(host.size()), expected, type, count);
      }
      nccl_sub->barrier();
    });

    guarded("split(-1, 0)", [&] {
      auto nccl_none = nccl.split(-1, 0);
      auto mpi_none = mpi->split(-1, 0);
      report(nccl_none == nullptr && mpi_none == nullptr, "split(-1, 0) returns nullptr on both backends");
    });

    // The world communicator still works after the splits.
    check_all_reduce(nccl, *mpi, DataType::kFloat32, ReduceOp::kSum, 4099, seed++);
    CUDA_CHECK(cudaDeviceSynchronize());
  } catch (const std::exception& e) {
    report(false, "error", e.what());  // still tell the coordinator below
  }

  const int exit_code = g_failures == 0 ? 0 : 1;
  std::printf("SUMMARY %d checks, %d failed\n", g_checks, g_failures);
  std::fflush(stdout);
  client.shutdown(g_failures == 0 ? "nccl_world_check: all checks passed"
                                  : "nccl_world_check: " + std::to_string(g_failures) + " checks failed",
                  exit_code);
  std::printf("INFO client.shutdown(%d) sent\n", exit_code);
  return exit_code;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::printf("FAIL error: %s\n", e.what());
    std::printf("SUMMARY %d checks, %d failed (aborted)\n", g_checks, g_failures + 1);
    return 1;
  }
}
