// Persistent worker threads for one pipeline stage. parallel_for runs fn(ith, nth) for every ith in
// [0, nth) and returns when all are done; no threads are created per call. The ith values are slots
// taken from a shared counter by the caller and the woken workers alike, so on a loaded machine a
// worker that is not scheduled in time does not hold up the call: the caller runs its slot instead
// (fn must therefore not assume which OS thread runs which ith; two slots never run at once on one
// thread, and each runs exactly once). Workers spin briefly on a generation counter (low dispatch
// latency between the matmuls of one token), then sleep on a condition variable, so an idle pool
// costs no CPU. Must not know about models or tensors.
//
// One parallel_for at a time per pool: a pool belongs to one stage and is driven by one thread.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace pipeinfer {

class thread_pool {
public:
    // n_threads >= 1 (the caller counts as one); throws std::invalid_argument otherwise.
    explicit thread_pool(int n_threads);
    ~thread_pool();
    thread_pool(const thread_pool&) = delete;
    thread_pool& operator=(const thread_pool&) = delete;

    int n_threads() const { return n_threads_; }
    // Runs fn(ith, nth) for ith in [0, nth) with nth = n_threads(); blocks until all return.
    // An exception thrown by any ith is rethrown here (the first one; the others are dropped).
    // Precondition: not called concurrently or re-entrantly on the same pool (asserted).
    void parallel_for(const std::function<void(int, int)>& fn);

private:
    void worker_main(int ith);
    void run_one(int ith);  // runs *job_ for ith, recording an exception instead of propagating it
    void run_slots();       // takes and runs slots of the current call until none is left

    int n_threads_;
    std::vector<std::thread> workers_;  // (n_threads - 1,) threads for ith = 1 .. n_threads-1

    // Dispatch: the caller publishes job_, then bumps generation_; workers wait for a new generation.
    const std::function<void(int, int)>* job_ = nullptr;
    std::atomic<uint64_t> generation_{0};
    std::atomic<bool> stop_{false};
    std::atomic<int> n_sleeping_{0};    // workers blocked on cv_ (the caller notifies only if > 0)
    std::mutex mu_;
    std::condition_variable cv_;

    // Slots: next_slot_ hands out ith values (reset to 0 per call); slots_done_ counts finished ones.
    // The caller spins until slots_done_ == n_threads, then sleeps on done_cv_.
    std::atomic<int> next_slot_{1 << 30};
    std::atomic<int> slots_done_{0};
    std::atomic<bool> caller_sleeping_{false};
    std::mutex done_mu_;
    std::condition_variable done_cv_;

    std::atomic<bool> busy_{false};     // guards the one-call-at-a-time precondition
    std::exception_ptr error_;          // first exception of the current call
    std::mutex error_mu_;
};

} // namespace pipeinfer
