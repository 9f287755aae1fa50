// This host's physical memory (see device_memory.h), for the training-memory floor on CPU runs.
#include <unistd.h>

#include "device/device_memory.h"

namespace keel {

int64_t host_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page_size = ::sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page_size > 0 ? static_cast<int64_t>(pages) * page_size : 0;
}

}  // namespace keel
