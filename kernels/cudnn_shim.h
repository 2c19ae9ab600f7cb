// What each cuDNN shim (cudnn_sdpa.cpp, cudnn_conv.cpp) keeps besides its graph cache: a lock,
// one handle created on first use, and the text of the last error for the Rust side.
#pragma once

#include <cudnn.h>

#include <cstdio>
#include <mutex>
#include <string>

struct ShimCore {
    std::mutex lock;
    cudnnHandle_t handle = nullptr;
    char last_error[512] = {0};

    void set_error(const char* what, const std::string& detail) {
        std::snprintf(last_error, sizeof(last_error), "%s: %s", what, detail.c_str());
    }

    // Creates the handle on first use; false (the error kept) when cuDNN cannot start.
    bool ensure_handle() {
        if (handle) return true;
        cudnnStatus_t st = cudnnCreate(&handle);
        if (st != CUDNN_STATUS_SUCCESS) {
            set_error("cudnnCreate", cudnnGetErrorString(st));
            handle = nullptr;
            return false;
        }
        return true;
    }

    // Runs the next calls on the caller's stream (candle's).
    bool use_stream(void* stream) {
        cudnnStatus_t st = cudnnSetStream(handle, static_cast<cudaStream_t>(stream));
        if (st != CUDNN_STATUS_SUCCESS) {
            set_error("cudnnSetStream", cudnnGetErrorString(st));
            return false;
        }
        return true;
    }
};
