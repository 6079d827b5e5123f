// Linked into every test binary of a ThreadSanitizer build (see sluice_test in
// tests/CMakeLists.txt), so that `ctest` needs no TSAN_OPTIONS to find tests/tsan.supp: the
// runtime reads these defaults first, and TSAN_OPTIONS (log_path, say) is applied on top.
extern "C" const char* __tsan_default_options() { return "suppressions=" SLUICE_TSAN_SUPPRESSIONS; }
