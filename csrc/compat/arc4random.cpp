// Linked into wheels only (csrc/CMakeLists.txt, SKBUILD). Wheels carry libstdc++ statically so that
// glibc is their only requirement; GCC 12's libstdc++.a refers to arc4random (glibc 2.36) from its
// std::random_device code, which pipeinfer never runs, and that one reference would raise the wheel's
// glibc floor from 2.34 to 2.36 (Ubuntu 22.04 has 2.35). This hidden definition satisfies it inside
// _core with getrandom (glibc 2.25); nothing outside the extension sees it.
#include <sys/random.h>

#include <cerrno>
#include <cstdint>

extern "C" __attribute__((visibility("hidden"))) uint32_t arc4random(void) {
    uint32_t v = 0;
    for (;;) {
        const ssize_t n = getrandom(&v, sizeof(v), 0);
        if (n == static_cast<ssize_t>(sizeof(v))) return v;
        if (n < 0 && errno != EINTR) return v;  // cannot happen for 4 bytes once the pool is ready
    }
}
