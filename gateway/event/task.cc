#include "gateway/event/task.h"

#include <array>
#include <cstdlib>
#include <new>

namespace sluice::gateway::event {
namespace internal {
namespace {

struct FreeNode {
  FreeNode* next;
};

// One free list per size class; what is left is released when the thread ends.
class FramePool {
 public:
  FramePool() = default;
  FramePool(const FramePool&) = delete;
  FramePool& operator=(const FramePool&) = delete;
  ~FramePool() {
    for (Bucket& bucket : buckets_) {
      while (bucket.head != nullptr) {
        FreeNode* next = bucket.head->next;
        ::operator delete(bucket.head);
        bucket.head = next;
      }
    }
  }

  void* Allocate(size_t size) {
    if (size > kMaxPooledFrame) {
      ++stats_.fresh;
      return ::operator new(size);
    }
    Bucket& bucket = buckets_[ClassOf(size)];
    if (bucket.head != nullptr) {
      FreeNode* frame = bucket.head;
      bucket.head = frame->next;
      --bucket.count;
      ++stats_.reused;
      return frame;
    }
    ++stats_.fresh;
    return ::operator new(SizeOfClass(ClassOf(size)));
  }

  void Free(void* frame, size_t size) noexcept {
    if (size > kMaxPooledFrame) {
      ::operator delete(frame);
      return;
    }
    Bucket& bucket = buckets_[ClassOf(size)];
    if (bucket.count >= kMaxPooledPerClass) {
      ::operator delete(frame);
      return;
    }
    bucket.head = new (frame) FreeNode{bucket.head};
    ++bucket.count;
  }

  FramePoolStats stats() const { return stats_; }

 private:
  struct Bucket {
    FreeNode* head = nullptr;
    size_t count = 0;
  };
  static size_t ClassOf(size_t size) { return (size + kFrameClass - 1) / kFrameClass; }
  static size_t SizeOfClass(size_t size_class) { return size_class * kFrameClass; }

  std::array<Bucket, kMaxPooledFrame / kFrameClass + 1> buckets_{};
  FramePoolStats stats_;
};

FramePool& ThisThreadPool() {
  thread_local FramePool pool;
  return pool;
}

}  // namespace

void* AllocateFrame(size_t size) { return ThisThreadPool().Allocate(size); }

void FreeFrame(void* frame, size_t size) noexcept { ThisThreadPool().Free(frame, size); }

}  // namespace internal

FramePoolStats ThisThreadFramePoolStats() { return internal::ThisThreadPool().stats(); }

namespace internal {
void ForgetInGroup(TaskGroup& group, PromiseBase& promise) noexcept {
  if (promise.group_prev_ != nullptr) {
    promise.group_prev_->group_next_ = promise.group_next_;
  } else {
    group.first_ = promise.group_next_;
  }
  if (promise.group_next_ != nullptr) promise.group_next_->group_prev_ = promise.group_prev_;
  promise.group_prev_ = promise.group_next_ = nullptr;
  promise.group_ = nullptr;
  --group.size_;
}
}  // namespace internal

void TaskGroup::Start(Task<void> task) {
  std::coroutine_handle<internal::VoidPromise> handle = std::exchange(task.handle_, {});
  internal::VoidPromise& promise = handle.promise();
  promise.group_ = this;
  promise.group_next_ = first_;
  if (first_ != nullptr) first_->group_prev_ = &promise;
  first_ = &promise;
  ++size_;
  handle.resume();
}

void TaskGroup::DestroyAll() {
  // A frame's destruction may end others' (a parent holds its children), never start one.
  while (first_ != nullptr) {
    auto& promise = static_cast<internal::VoidPromise&>(*first_);
    internal::ForgetInGroup(*this, promise);
    std::coroutine_handle<internal::VoidPromise>::from_promise(promise).destroy();
  }
}

void Spawn(Task<void> task) {
  std::coroutine_handle<internal::VoidPromise> handle = std::exchange(task.handle_, {});
  handle.promise().detached_ = true;
  handle.resume();
}

}  // namespace sluice::gateway::event
