// A minimal test harness for the C++ tests run by ctest: EXPECT records a failure and goes on;
// main returns the number of failures.
#pragma once
#include <cstdio>
#include <functional>
#include <string>

#include <c10/util/Exception.h>

#include "expect.h"

// Runs f, which must throw a c10::Error whose message contains `needle`.
inline bool throws_with(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
  } catch (const c10::Error& e) {
    return std::string(e.what()).find(needle) != std::string::npos;
  }
  return false;
}
