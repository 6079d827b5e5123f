#pragma once
// Coroutines on the event core: a request's code can read as a sequence (read the head, ask
// for a decision, connect, write, read the response) while running on the worker's
// Dispatcher, without Asio's costs per operation (a type-erased handler and an allocation for
// each asynchronous operation, a hand-off through the executor for each completion).
//
// - A Task is a lazily started coroutine that another coroutine awaits (`co_await Child()`);
//   the child resumes its parent directly when it ends (symmetric transfer: no stack growth,
//   no trip through the loop).
// - Leaf operations (a socket read, a timer) are awaiters, not coroutines: they live in the
//   awaiting coroutine's frame and allocate nothing (see async_socket.h).
// - Frames come from a per-thread pool of size classes, so a worker that has served a few
//   requests allocates no frame memory for the next ones.
// - No exceptions: a coroutine that lets one escape terminates the process (the request path
//   returns absl::Status instead, as everywhere in sluice).
//
// Everything here is for one thread: a Task runs on the thread of the dispatcher whose
// events resume it.
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <utility>

namespace sluice::gateway::event {

// This thread's frame pool: frames allocated fresh (malloc) and frames served from the pool.
struct FramePoolStats {
  uint64_t fresh = 0;
  uint64_t reused = 0;
};
FramePoolStats ThisThreadFramePoolStats();

class TaskGroup;

namespace internal {

// Frames up to kMaxPooledFrame bytes are kept for reuse by 64-byte size class (at most
// kMaxPooledPerClass of each); larger ones go to the heap and back.
inline constexpr size_t kFrameClass = 64;
inline constexpr size_t kMaxPooledFrame = 8 * 1024;
inline constexpr size_t kMaxPooledPerClass = 4096;
void* AllocateFrame(size_t size);
void FreeFrame(void* frame, size_t size) noexcept;
class PromiseBase;
// A task of `group` has ended (its frame is destroyed next).
void ForgetInGroup(TaskGroup& group, PromiseBase& promise) noexcept;

class PromiseBase {
 public:
  static void* operator new(size_t size) { return AllocateFrame(size); }
  static void operator delete(void* frame, size_t size) noexcept { FreeFrame(frame, size); }

  std::suspend_always initial_suspend() noexcept { return {}; }
  void unhandled_exception() noexcept { std::terminate(); }

  // At its end a task resumes whoever awaited it; a spawned one destroys itself.
  struct FinalAwaiter {
    bool await_ready() noexcept { return false; }
    template <typename Promise>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<Promise> self) noexcept {
      PromiseBase& promise = self.promise();
      if (promise.continuation_) return promise.continuation_;
      if (promise.group_ != nullptr) {
        ForgetInGroup(*promise.group_, promise);
        self.destroy();
      } else if (promise.detached_) {
        self.destroy();
      }
      return std::noop_coroutine();
    }
    void await_resume() noexcept {}
  };
  FinalAwaiter final_suspend() noexcept { return {}; }

  std::coroutine_handle<> continuation_;
  bool detached_ = false;
  // Started by TaskGroup::Start: the group owns the frame, and links it in its list.
  TaskGroup* group_ = nullptr;
  PromiseBase* group_prev_ = nullptr;
  PromiseBase* group_next_ = nullptr;
};

}  // namespace internal

template <typename T = void>
class [[nodiscard]] Task;

// Starts `task` at once; it runs until its first suspension, goes on as its events resume
// it, and frees itself when it ends. Nobody awaits it.
void Spawn(Task<void> task);

namespace internal {

// What Task<T> and Task<void> share: the owned handle, moves, and being awaited.
template <typename Promise>
class TaskBase {
 public:
  TaskBase(TaskBase&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
  TaskBase& operator=(TaskBase&& other) noexcept {
    if (this != &other) {
      if (handle_) handle_.destroy();
      handle_ = std::exchange(other.handle_, {});
    }
    return *this;
  }
  TaskBase(const TaskBase&) = delete;
  TaskBase& operator=(const TaskBase&) = delete;
  // A task never awaited is destroyed unstarted; one that is suspended is destroyed with
  // its frame (what it awaited must no longer resume it).
  ~TaskBase() {
    if (handle_) handle_.destroy();
  }

  bool await_ready() const noexcept { return false; }
  std::coroutine_handle<> await_suspend(std::coroutine_handle<> awaiting) noexcept {
    handle_.promise().continuation_ = awaiting;
    return handle_;
  }

 protected:
  explicit TaskBase(std::coroutine_handle<Promise> handle) : handle_(handle) {}
  std::coroutine_handle<Promise> handle_;
};

template <typename T>
struct ValuePromise;
struct VoidPromise;

}  // namespace internal

template <typename T>
class [[nodiscard]] Task : public internal::TaskBase<internal::ValuePromise<T>> {
 public:
  using promise_type = internal::ValuePromise<T>;
  T await_resume() { return std::move(*this->handle_.promise().value_); }

 private:
  friend promise_type;
  explicit Task(std::coroutine_handle<promise_type> handle)
      : internal::TaskBase<promise_type>(handle) {}
};

template <>
class [[nodiscard]] Task<void> : public internal::TaskBase<internal::VoidPromise> {
 public:
  using promise_type = internal::VoidPromise;
  void await_resume() noexcept {}

 private:
  friend promise_type;
  friend void Spawn(Task<void> task);
  friend class TaskGroup;
  explicit Task(std::coroutine_handle<promise_type> handle) : TaskBase(handle) {}
};

namespace internal {

template <typename T>
struct ValuePromise : PromiseBase {
  Task<T> get_return_object() {
    return Task<T>(std::coroutine_handle<ValuePromise>::from_promise(*this));
  }
  template <typename U>
  void return_value(U&& value) {
    value_.emplace(std::forward<U>(value));
  }
  std::optional<T> value_;
};

struct VoidPromise : PromiseBase {
  Task<void> get_return_object() {
    return Task<void>(std::coroutine_handle<VoidPromise>::from_promise(*this));
  }
  void return_void() noexcept {}
};

}  // namespace internal

// Root coroutines with an owner: a worker's connections and mirrored requests. Start()
// runs a task until its first suspension; a task that ends frees itself and leaves the
// group; the tasks still suspended when the group is destroyed are destroyed with it (their
// frames, and what those own, such as sockets and timers), so that a worker that stops with
// requests in flight leaks nothing. One thread, like everything here.
class TaskGroup {
 public:
  TaskGroup() = default;
  ~TaskGroup() { DestroyAll(); }
  TaskGroup(const TaskGroup&) = delete;
  TaskGroup& operator=(const TaskGroup&) = delete;

  void Start(Task<void> task);
  // Destroys every task still suspended.
  void DestroyAll();
  size_t size() const { return size_; }

 private:
  friend void internal::ForgetInGroup(TaskGroup& group, internal::PromiseBase& promise) noexcept;
  // The running tasks' promises, linked through themselves: starting one allocates nothing.
  internal::PromiseBase* first_ = nullptr;
  size_t size_ = 0;
};

}  // namespace sluice::gateway::event
