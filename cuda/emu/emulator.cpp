// The emulator's launch loop and barriers (see emulator.h).
#include "emulator.h"

#include <cstdio>
#include <thread>

// The linker brackets the section holding every __shared__ variable with these
// symbols; weak, so a module without __shared__ variables still links.
extern "C" unsigned char __start_pydl_emu_shared[] __attribute__((weak, visibility("hidden")));
extern "C" unsigned char __stop_pydl_emu_shared[] __attribute__((weak, visibility("hidden")));

namespace pydl_emu {

namespace {

constexpr unsigned char kPoisonByte = 0xFF;  // 0xFFFFFFFF is a float NaN
constexpr unsigned kMaxThreadsPerBlock = 1024;
constexpr std::size_t kMaxDynamicSmem = 227 * 1024;  // sm_90's opt-in limit

std::string coords(uint3 v) {
  return "(" + std::to_string(v.x) + ", " + std::to_string(v.y) + ", " + std::to_string(v.z) + ")";
}

// Launches share the static __shared__ storage, so they run one at a time.
std::mutex& launch_mutex() {
  static std::mutex m;
  return m;
}

}  // namespace

// ---- Barrier -----------------------------------------------------------------

std::string Barrier::deadlock_message() const {
  return name_ + " waits for " + std::to_string(exited_) + " of its " + std::to_string(expected_) +
         " threads that already returned from the kernel";
}

void Barrier::arrive_and_wait() {
  std::unique_lock lock(mutex_);
  if (aborted_) throw Aborted{};
  if (arrived_ + 1 + exited_ == expected_) {
    if (exited_ > 0) {
      std::string message = deadlock_message();
      lock.unlock();
      throw std::runtime_error(message);
    }
    release_locked();
    return;
  }
  ++arrived_;
  const std::uint64_t generation = generation_;
  cv_.wait(lock, [&] { return generation_ != generation || aborted_; });
  if (generation_ == generation) throw Aborted{};
}

void Barrier::exit(Launch& launch) {
  std::unique_lock lock(mutex_);
  ++exited_;
  if (arrived_ > 0 && arrived_ + exited_ == expected_) {
    std::string message = deadlock_message();
    lock.unlock();
    launch.fail(std::make_exception_ptr(std::runtime_error(message)), "");
  }
}

void Barrier::abort() {
  std::lock_guard lock(mutex_);
  aborted_ = true;
  cv_.notify_all();
}

// ---- Launch ------------------------------------------------------------------

Launch::Launch(dim3 grid, dim3 block, std::size_t dynamic_smem_bytes, const char* file, int line)
    : grid_(grid), block_(block), origin_(std::string(file) + ":" + std::to_string(line)) {
  const auto bad = [&](const std::string& why) {
    throw std::runtime_error("CUDA error at " + origin_ + ": invalid launch configuration: " + why);
  };
  const std::uint64_t threads = std::uint64_t(block.x) * block.y * block.z;
  if (threads == 0 || threads > kMaxThreadsPerBlock || block.z > 64)
    bad("block " + coords({block.x, block.y, block.z}) + " has " + std::to_string(threads) +
        " threads; 1 to 1024 are allowed (z at most 64)");
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535)
    bad("grid " + coords({grid.x, grid.y, grid.z}) + " is empty or too large");
  if (dynamic_smem_bytes > kMaxDynamicSmem)
    bad(std::to_string(dynamic_smem_bytes) + " bytes of dynamic shared memory");
  threads_ = static_cast<unsigned>(threads);
  block_barrier.reset(threads_, "__syncthreads");
  boundary_.reset(threads_, "end of block");
  warps = std::vector<Warp>((threads_ + 31) / 32);
  for (std::size_t w = 0; w < warps.size(); ++w) {
    warps[w].lanes = std::min(32u, threads_ - unsigned(w) * 32);
    warps[w].barrier.reset(warps[w].lanes, "warp " + std::to_string(w) + " barrier");
  }
  dynamic_smem_.resize(dynamic_smem_bytes + 16);
  auto base = reinterpret_cast<std::uintptr_t>(dynamic_smem_.data());
  dynamic_smem_base_ = dynamic_smem_.data() + ((16 - base % 16) % 16);
}

void Launch::fail(std::exception_ptr error, const std::string& where) {
  {
    std::lock_guard lock(error_mutex_);
    if (!error_) {
      error_ = error;
      error_where_ = where;
    }
  }
  failed_ = true;
  block_barrier.abort();
  boundary_.abort();
  for (Warp& w : warps) w.barrier.abort();
}

// Runs before every block while all threads wait at the boundary: restarts
// the barriers and poisons all shared memory.
void Launch::begin_block() {
  block_barrier.restart();
  for (Warp& w : warps) w.barrier.restart();
  // The section is empty (and its start null) when no kernel declares __shared__.
  const auto static_smem = static_cast<std::size_t>(__stop_pydl_emu_shared - __start_pydl_emu_shared);
  if (static_smem) std::memset(__start_pydl_emu_shared, kPoisonByte, static_smem);
  std::memset(dynamic_smem_base_, kPoisonByte, dynamic_smem_.size() - 16);
}

void Launch::thread_main(unsigned linear, const std::function<void()>& body) {
  threadIdx = {linear % block_.x, linear / block_.x % block_.y, linear / (block_.x * block_.y)};
  blockDim = block_;
  gridDim = grid_;
  current = {this, linear / 32, linear % 32};
  const std::uint64_t blocks = std::uint64_t(grid_.x) * grid_.y * grid_.z;
  try {
    for (std::uint64_t b = 0; b < blocks; ++b) {
      blockIdx = {unsigned(b % grid_.x), unsigned(b / grid_.x % grid_.y),
                  unsigned(b / (std::uint64_t(grid_.x) * grid_.y))};
      if (linear == 0) begin_block();
      boundary_.arrive_and_wait();  // the block starts with fresh barriers and poisoned memory
      try {
        body();
      } catch (const Aborted&) {
        throw;
      } catch (...) {
        fail(std::current_exception(),
             " in block " + coords(blockIdx) + ", thread " + coords(threadIdx));
        throw Aborted{};
      }
      block_barrier.exit(*this);
      warps[current.warp].barrier.exit(*this);
      if (failed_) throw Aborted{};
      boundary_.arrive_and_wait();  // nobody starts the next block while one still runs
    }
  } catch (const Aborted&) {
  }
  current = {};
}

void Launch::run(const std::function<void()>& body) {
  std::vector<std::thread> threads;
  threads.reserve(threads_);
  try {
    for (unsigned t = 0; t < threads_; ++t)
      threads.emplace_back([this, t, &body] { thread_main(t, body); });
  } catch (...) {
    fail(std::current_exception(), " while starting its threads");
  }
  for (std::thread& t : threads) t.join();
  if (!error_) return;
  try {
    std::rethrow_exception(error_);
  } catch (const std::exception& e) {
    throw std::runtime_error("CUDA kernel launched at " + origin_ + " failed" + error_where_ +
                             ": " + e.what());
  }
}

void launch(dim3 grid, dim3 block, std::size_t dynamic_smem_bytes, const char* file, int line,
            const std::function<void()>& body) {
  std::lock_guard lock(launch_mutex());
  Launch(grid, block, dynamic_smem_bytes, file, line).run(body);
}

// ---- warps -------------------------------------------------------------------

void check_warp_mask(unsigned mask, const Warp& warp, const char* op) {
  const unsigned all = warp.lanes == 32 ? 0xffffffffu : (1u << warp.lanes) - 1;
  if (mask != all) {
    char hex[16];
    std::snprintf(hex, sizeof hex, "0x%08x", mask);
    throw std::runtime_error(std::string(op) + ": mask " + hex + " does not name exactly the " +
                             std::to_string(warp.lanes) +
                             " lanes of the warp (partial-warp masks are not emulated)");
  }
}

unsigned ballot(unsigned mask, int predicate, const char* op) {
  ThreadState& t = current;
  Warp& warp = t.launch->warps[t.warp];
  check_warp_mask(mask, warp, op);
  warp.slots[t.lane] = predicate != 0;
  warp.barrier.arrive_and_wait();
  unsigned bits = 0;
  for (unsigned lane = 0; lane < warp.lanes; ++lane) bits |= unsigned(warp.slots[lane]) << lane;
  warp.barrier.arrive_and_wait();
  return bits;
}

}  // namespace pydl_emu
