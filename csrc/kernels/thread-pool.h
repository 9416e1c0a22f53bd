// Persistent worker threads for one pipeline stage. parallel_for runs fn(ith, nth) on nth threads
// (the caller is thread 0) and returns when all are done; no threads are created per call. Workers
// spin briefly then sleep, so an idle pool costs no CPU. Must not know about models or tensors.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace pipeinfer {

class thread_pool {
public:
    // n_threads >= 1 (the caller counts as one).
    explicit thread_pool(int n_threads);
    ~thread_pool();
    thread_pool(const thread_pool&) = delete;
    thread_pool& operator=(const thread_pool&) = delete;

    int n_threads() const { return n_threads_; }
    // Runs fn(ith, nth) for ith in [0, nth) with nth = n_threads(); blocks until all return.
    // An exception thrown by any ith is rethrown here (the first one).
    void parallel_for(const std::function<void(int, int)>& fn);

private:
    void worker_main(int ith);

    int n_threads_;
    std::vector<std::thread> workers_;
    std::mutex mu_;
    std::condition_variable cv_;
    const std::function<void(int, int)>* job_ = nullptr;
    std::atomic<uint64_t> generation_{0};
    std::atomic<int> pending_{0};
    std::atomic<bool> stop_{false};
    std::exception_ptr error_;
    std::mutex error_mu_;
};

} // namespace pipeinfer
