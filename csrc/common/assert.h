// PI_ASSERT: internal invariants only (states that no input can produce). Input validation throws the
// typed errors of common/error.h instead. A failed assertion throws std::logic_error (never aborts the
// process: a Python host must survive our bugs long enough to report them).
#pragma once
#include <stdexcept>
#include <string>

#define PI_ASSERT(cond)                                                                         \
    do {                                                                                        \
        if (!(cond))                                                                            \
            throw std::logic_error(std::string("pipeinfer internal error: ") + #cond + " at " + \
                                   __FILE__ + ":" + std::to_string(__LINE__));                  \
    } while (0)
