/*
 * Internal: whether this is a sanitizer build.  Sanitizer runtimes make
 * calls of their own (LeakSanitizer at exit stops the world with a
 * ptrace'ing clone; reports start a symbolizer), which the seccomp filter
 * then allows; a release build never does.  The tests read it to know
 * what the filter forbids.
 */
#ifndef NTSNTP_SANITIZER_H
#define NTSNTP_SANITIZER_H

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__) ||           \
    defined(NTSNTP_SANITIZER_BUILD)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) ||     \
    __has_feature(memory_sanitizer) || __has_feature(leak_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

#endif
