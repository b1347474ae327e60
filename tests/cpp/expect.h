// The plain-C++ part of the C++ tests' harness (no torch, so the emulated-kernel tests can use
// it): EXPECT records a failure and goes on; main returns failures().
#pragma once
#include <cstdio>

inline int& failures() {
  static int n = 0;
  return n;
}

#define EXPECT(cond)                                                              \
  do {                                                                           \
    if (!(cond)) {                                                               \
      std::fprintf(stderr, "%s:%d: EXPECT failed: %s\n", __FILE__, __LINE__, #cond); \
      ++failures();                                                              \
    }                                                                            \
  } while (0)
