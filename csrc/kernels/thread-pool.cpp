#include "kernels/thread-pool.h"

#include <chrono>
#include <stdexcept>
#include <string>

#include "common/assert.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace pipeinfer {

namespace {

// How long a thread busy-waits before blocking. Long enough to bridge the gap between two matmuls of
// one token (norms, rope and attention run on the caller in between), short enough that a pool idle
// between tokens or stages goes to sleep quickly.
constexpr auto SPIN_BUDGET = std::chrono::microseconds(200);
constexpr auto PAUSE_BUDGET = std::chrono::microseconds(20);  // of which pause-spinning, then yield

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#else
    std::this_thread::yield();
#endif
}

// Waits until done() is true or the budget is spent; returns done(). Pure pause-spinning first (the
// fast path when every thread has its own core), then yielding, so that on an oversubscribed machine
// a waiting thread hands its core to the thread it waits for.
template <class Pred>
bool spin_until(Pred done) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int round = 0;; ++round) {
        for (int i = 0; i < 64; ++i) {
            if (done()) return true;
            cpu_relax();
        }
        const auto dt = std::chrono::steady_clock::now() - t0;
        if (dt > SPIN_BUDGET) return done();
        if (dt > PAUSE_BUDGET) std::this_thread::yield();
    }
}

} // namespace

thread_pool::thread_pool(int n_threads) : n_threads_(n_threads) {
    if (n_threads < 1) {
        throw std::invalid_argument("thread_pool: n_threads must be >= 1, got " + std::to_string(n_threads));
    }
    workers_.reserve(static_cast<size_t>(n_threads - 1));
    for (int ith = 1; ith < n_threads; ++ith) {
        workers_.emplace_back([this, ith] { worker_main(ith); });
    }
}

thread_pool::~thread_pool() {
    stop_.store(true);
    generation_.fetch_add(1);
    {
        std::lock_guard<std::mutex> lock(mu_);  // orders the store with sleepers' predicate checks
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
}

void thread_pool::run_one(int ith) {
    try {
        (*job_)(ith, n_threads_);
    } catch (...) {
        std::lock_guard<std::mutex> lock(error_mu_);
        if (!error_) error_ = std::current_exception();
    }
}

void thread_pool::run_slots() {
    for (;;) {
        // acq_rel: a slot taken from the caller's reset (release) sees job_ of that call
        const int ith = next_slot_.fetch_add(1, std::memory_order_acq_rel);
        if (ith >= n_threads_) return;
        run_one(ith);
        if (slots_done_.fetch_add(1) + 1 == n_threads_ && caller_sleeping_.load()) {
            std::lock_guard<std::mutex> lock(done_mu_);
            done_cv_.notify_one();
        }
    }
}

void thread_pool::worker_main(int) {
    uint64_t seen = 0;
    for (;;) {
        // Wait for a generation newer than the last one seen (or for stop_).
        auto fresh = [&] { return generation_.load() != seen; };  // seq_cst: see the wait below
        if (!spin_until(fresh)) {
            std::unique_lock<std::mutex> lock(mu_);
            // seq_cst increment + the caller's seq_cst load of n_sleeping_ after its generation bump:
            // either the caller sees us sleeping and notifies, or we see the new generation here.
            n_sleeping_.fetch_add(1);
            cv_.wait(lock, fresh);
            n_sleeping_.fetch_sub(1);
        }
        seen = generation_.load(std::memory_order_acquire);
        if (stop_.load()) return;
        run_slots();
    }
}

void thread_pool::parallel_for(const std::function<void(int, int)>& fn) {
    PI_ASSERT(!busy_.exchange(true, std::memory_order_acquire));
    struct release_busy {
        std::atomic<bool>& b;
        ~release_busy() { b.store(false, std::memory_order_release); }
    } guard{busy_};

    if (n_threads_ == 1) {
        fn(0, 1);
        return;
    }

    job_ = &fn;
    error_ = nullptr;
    slots_done_.store(0);
    next_slot_.store(0, std::memory_order_release);  // opens the slots (publishes job_)
    generation_.fetch_add(1);                          // wakes the workers (seq_cst)
    if (n_sleeping_.load() > 0) {
        { std::lock_guard<std::mutex> lock(mu_); }
        cv_.notify_all();
    }

    run_slots();  // the caller takes slots too, including those of workers not yet running

    auto all_done = [&] { return slots_done_.load() == n_threads_; };  // seq_cst, pairs with caller_sleeping_
    if (!spin_until(all_done)) {
        std::unique_lock<std::mutex> lock(done_mu_);
        caller_sleeping_.store(true);
        done_cv_.wait(lock, all_done);
        caller_sleeping_.store(false);
    }
    job_ = nullptr;
    if (error_) {
        std::exception_ptr e = error_;
        error_ = nullptr;
        std::rethrow_exception(e);
    }
}

} // namespace pipeinfer
